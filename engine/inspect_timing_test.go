package engine

import (
	"net"
	"slices"
	"strconv"
	"testing"
	"time"
)

// idleConn is a connection that is never read or written: enough for a
// subscriber registered by hand, whom nothing but a kick touches.
type idleConn struct{ net.Conn }

func (idleConn) SetReadDeadline(time.Time) error { return nil }
func (idleConn) SetDeadline(time.Time) error     { return nil }
func (idleConn) RemoteAddr() net.Addr            { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// registered adds n subscribers of topic name to shard 0 of a still
// engine, as Serve would, without sockets, in shuffled id order (as
// removals leave a shard's list).
func registered(b testing.TB, n int, name string) *Engine {
	e := stillEngine(b, Config{Shards: 1})
	t := e.acquire(name)
	s := e.shards[0]
	for i := range n {
		id := uint64(i*7919%n + 1)
		sub := &Subscriber{ID: id, Topics: []string{name}, e: e, shard: s, conn: idleConn{}, Start: time.Now()}
		sub.cursors = []cursor{{t: t}}
		sub.state.Store(stIdle)
		s.add(sub)
	}
	b.Cleanup(func() {
		for len(s.subs) > 0 {
			s.remove(s.subs[len(s.subs)-1])
		}
	})
	return e
}

// BenchmarkPresence measures what a presence page costs with 100,000
// subscribers on one shard: the walk under shard.mu dominates. naive is
// the obvious way, every subscriber copied out and sorted.
func BenchmarkPresence(b *testing.B) {
	const n = 100_000
	e := registered(b, n, "t")
	for _, limit := range []int{100, 1000} {
		b.Run("heap/limit="+strconv.Itoa(limit), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				page, more, _ := e.Presence("t", false, 0, limit)
				if len(page) != limit || !more || page[0].ID != 1 {
					b.Fatalf("page of %d, more %v", len(page), more)
				}
			}
		})
		b.Run("naive/limit="+strconv.Itoa(limit), func(b *testing.B) {
			b.ReportAllocs()
			s := e.shards[0]
			for b.Loop() {
				s.mu.Lock()
				all := slices.Clone(s.subs)
				slices.SortFunc(all, func(x, y *Subscriber) int { return int(x.ID) - int(y.ID) })
				s.mu.Unlock()
				if all[0].ID != 1 || len(all[:limit]) != limit {
					b.Fatal("wrong page")
				}
			}
		})
	}
}

// TestPresenceLockHold: the presence walk lets go of the shard's lock
// between shards and a page never holds more than its limit; and a
// subscriber registered by hand is found (the helper above is sound).
func TestPresenceLockHold(t *testing.T) {
	e := registered(t, 5000, "t")
	page, more, total := e.Presence("t", false, 4990, 100)
	if len(page) != 10 || more || total != 5000 || page[0].ID != 4991 || page[9].ID != 5000 {
		t.Fatalf("page %d from %d, more %v, total %d", len(page), page[0].ID, more, total)
	}
	if !e.shards[0].mu.TryLock() {
		t.Fatal("Presence left the shard locked")
	}
	e.shards[0].mu.Unlock()
}
