package engine

import (
	"context"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tinysse/tinysse/internal/testserver"
)

// These tests prove the issue's "zero allocations per delivery in steady
// state" with testing.AllocsPerRun. They drive a shard by hand: the engine
// is built by New, and its shards are then replaced by fresh ones whose run
// goroutine is never started, so the test goroutine is the only one that
// delivers (it plays the shard goroutine: it calls deliverDirty, which
// takes shard.mu as run would). Subscribers are real: Serve over loopback
// TCP, with a client goroutine draining each socket.

// stillEngine returns an engine whose shards have no goroutine of their own.
// The replaced shards' goroutines idle until Close closes stopTick.
func stillEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range e.shards {
		e.shards[i] = newShard(e, i)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

// drained is a set of subscribers served over loopback whose clients read
// everything and count the bytes.
type drained struct {
	subs  []*Subscriber
	bytes []atomic.Int64 // per client
	wg    sync.WaitGroup
}

// subscribeDrained connects n subscribers (each on topics) to e.
func subscribeDrained(t testing.TB, e *Engine, n int, topics ...string) *drained {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := &drained{subs: make([]*Subscriber, n), bytes: make([]atomic.Int64, n)}
	var clients []net.Conn
	for i := range n {
		client, server := testserver.Pair(t, ln)
		raw, err := server.(syscall.Conn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, client)
		d.subs[i] = &Subscriber{Topics: topics}
		d.wg.Add(2)
		go func() {
			defer d.wg.Done()
			_ = e.Serve(d.subs[i], Stream{Conn: server, Raw: raw, Close: server.Close})
		}()
		go func() {
			defer d.wg.Done()
			buf := make([]byte, 32<<10)
			for {
				k, err := client.Read(buf)
				d.bytes[i].Add(int64(k))
				if err != nil {
					return
				}
			}
		}()
	}
	t.Cleanup(func() {
		for _, c := range clients {
			c.Close()
		}
		d.wg.Wait()
	})
	name := ""
	if len(topics) > 0 {
		name = topics[0]
	}
	waitUntil(t, "subscribers to register", func() bool { return e.Subscribers(name) == n })
	waitUntil(t, "the clients to read ': ok'", func() bool { return d.minBytes() >= int64(len(": ok\n\n")) })
	return d
}

func (d *drained) minBytes() int64 {
	least := int64(-1)
	for i := range d.bytes {
		if b := d.bytes[i].Load(); least < 0 || b < least {
			least = b
		}
	}
	return least
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// deliverRound plays one wake of the shard goroutine: what run does on
// <-s.wake.
func deliverRound(s *shard, dirty ...*topic) {
	for _, t := range dirty {
		s.markDirty(t)
	}
	select {
	case <-s.wake:
	default:
	}
	s.deliverDirty()
}

// appendLocked appends m to the rings of ts as Publish does, under pubMu.
func appendLocked(e *Engine, m *Message, ts ...*topic) {
	e.pubMu.Lock()
	e.seq++
	m.Seq = e.seq
	for _, t := range ts {
		t.ring.Append(m)
	}
	e.pubMu.Unlock()
}

// prebuilt returns n distinct encoded messages, so that the measured code
// allocates no message of its own.
func prebuilt(n int) []*Message {
	ms := make([]*Message, n)
	for i := range ms {
		m := &Message{ID: strconv.Itoa(i), Data: "steady state " + strconv.Itoa(i%10), HasData: true}
		m.Frame = AppendFrame(nil, m)
		ms[i] = m
	}
	return ms
}

func TestAllocsPerDelivery(t *testing.T) {
	const runs = 100
	cases := []struct {
		name   string
		subs   int
		topics []string // each subscriber's; the message goes to all of them
		hook   bool
	}{
		{"1 subscriber", 1, nil, false},
		{"100 subscribers", 100, nil, false},
		{"500 subscribers", 500, nil, false},
		{"100 subscribers of 2 topics", 100, []string{"a", "b"}, false},
		{"100 subscribers with a Message hook", 100, nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{Shards: 1, Capacity: 1024, KeepAlive: -1}
			if c.hook {
				cfg.Hooks.Message = func(_ any, m *Message, _ *Subscriber) []byte { return m.Frame }
			}
			e := stillEngine(t, cfg)
			d := subscribeDrained(t, e, c.subs, c.topics...)
			s := e.shards[0]
			names := c.topics
			if len(names) == 0 {
				names = defaultTopic
			}
			var ts []*topic
			for _, n := range names {
				ts = append(ts, e.acquire(n))
			}
			msgs := prebuilt(2*runs + 10)
			next := 0
			var sent int64
			publishAndDeliver := func() {
				m := msgs[next]
				next++
				sent += int64(len(m.Frame))
				appendLocked(e, m, ts...)
				deliverRound(s, ts...)
			}
			for range 3 { // grow the shard's dirty lists and scratch buffers
				publishAndDeliver()
			}

			// The ring's own cost (one immutable entry per append and topic)
			// belongs to the publish; measure it alone to take it out.
			spare := stillEngine(t, Config{Shards: 1, Capacity: 1024})
			spareTopics := make([]*topic, len(ts))
			for i := range ts {
				spareTopics[i] = spare.acquire(strconv.Itoa(i))
			}
			spareMsg := msgs[len(msgs)-1]
			appendOnly := testing.AllocsPerRun(runs, func() { appendLocked(spare, spareMsg, spareTopics...) })

			both := testing.AllocsPerRun(runs, publishAndDeliver)
			if perRound := both - appendOnly; perRound != 0 {
				t.Errorf("a delivery round to %d subscribers allocated %v times (append+deliver %v, append alone %v); want 0",
					c.subs, perRound, both, appendOnly)
			}
			t.Logf("append+deliver: %v allocs, append alone: %v", both, appendOnly)

			// Every round really was delivered, in place, to everyone.
			for _, sub := range d.subs {
				if st, k := sub.state.Load(), sub.kick.Load(); st != stIdle || k != 0 {
					t.Fatalf("subscriber %d: state %d kick %b after the rounds: it left the shard's path", sub.ID, st, k)
				}
			}
			want := int64(len(": ok\n\n")) + sent
			waitUntil(t, "every client to receive every round", func() bool { return d.minBytes() == want })
		})
	}
}

func TestAllocsPerDeliveryNoPublish(t *testing.T) {
	// The same without any append in the measured code: every subscriber's
	// cursor is stepped back over the newest message, which the round then
	// delivers again. Nothing at all may be allocated.
	const subs, runs = 100, 200
	e := stillEngine(t, Config{Shards: 1, KeepAlive: -1})
	d := subscribeDrained(t, e, subs)
	s := e.shards[0]
	tp := e.acquire("")
	m := prebuilt(1)[0]
	appendLocked(e, m, tp)
	redeliver := func() {
		head := tp.ring.Head()
		for _, sub := range d.subs {
			sub.cursors[0].next.Store(head - 1) // the subscriber is idle: nobody owns it
		}
		deliverRound(s, tp)
	}
	for range 3 {
		redeliver()
	}
	if n := testing.AllocsPerRun(runs, redeliver); n != 0 {
		t.Errorf("a delivery round to %d subscribers allocated %v times; want 0", subs, n)
	}
	want := int64(len(": ok\n\n")) + int64(3+runs+1)*int64(len(m.Frame))
	waitUntil(t, "every client to receive every round", func() bool { return d.minBytes() == want })
}

func TestPublishAllocsIndependentOfSubscribers(t *testing.T) {
	// Publish with 1 and with 1000 connected subscribers allocates the same:
	// its cost does not grow with the subscribers. The shards have no
	// goroutine here, so only Publish's own allocations are counted.
	const runs = 100
	measure := func(subs int) float64 {
		e := stillEngine(t, Config{Shards: 2})
		subscribeDrained(t, e, subs)
		msgs := make([]*Message, runs+1)
		for i := range msgs {
			msgs[i] = &Message{ID: strconv.Itoa(i), Data: "x", HasData: true}
		}
		next := 0
		n := testing.AllocsPerRun(runs, func() {
			res, err := e.Publish(msgs[next])
			next++
			if err != nil || res.Subscribers != subs {
				t.Fatalf("Publish: %+v, %v", res, err)
			}
		})
		return n
	}
	one := measure(1)
	many := measure(1000)
	t.Logf("allocations per Publish: %v with 1 subscriber, %v with 1000", one, many)
	if one != many {
		t.Errorf("Publish allocates %v times with 1 subscriber and %v with 1000", one, many)
	}
}
