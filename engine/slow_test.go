package engine_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/sseparse"
)

func TestEngineLagged(t *testing.T) {
	var u unsubscribes
	g := newGate()
	eng := newEngine(t, engine.Config{Shards: 1, Capacity: 8, TimeoutRetry: 700 * time.Millisecond,
		Hooks: engine.Hooks{Message: g.hook, Unsubscribe: u.hook}})
	ln := listen(t)
	laggard := &engine.Subscriber{Topics: []string{"slow"}}
	s := serve(t, eng, ln, laggard)
	s.expect(okFrame)
	other := &engine.Subscriber{}
	o := ready(t, eng, serve(t, eng, ln, other), "slow", 1)
	waitSubscribers(t, eng, "", 1)

	publish(t, eng, msg("gate", "", "slow"))
	g.wait(t)
	for i := range 20 {
		publish(t, eng, msg(strconv.Itoa(i), "", "slow"))
	}
	publish(t, eng, msg("live", "for the other"))
	close(g.release)
	s.expect(": lagged\nretry: 700\n\n")
	s.expectEOF()
	s.served()
	o.expect(frame("live", "for the other"))
	waitSubscribers(t, eng, "slow", 0)

	// Coming back with its Last-Event-ID, it learns of the gap.
	back := &engine.Subscriber{Topics: []string{"slow"}}
	b := serve(t, eng, ln, back, withLastEventID("gate"))
	b.expect(okFrame, ": replay-gap\n\n")
	u.check(t, laggard)
}

func TestEngineSlowSubscriber(t *testing.T) {
	// One client reads nothing: its socket fills, the rest goes to its
	// backlog and its own goroutine, and after WriteTimeout it is closed.
	// Another client on the same shard gets every message meanwhile.
	var u unsubscribes
	eng := newEngine(t, engine.Config{Shards: 1, WriteTimeout: 300 * time.Millisecond, Hooks: engine.Hooks{Unsubscribe: u.hook}})
	ln := listen(t)
	stuck := &engine.Subscriber{}
	st := serve(t, eng, ln, stuck, func(st *engine.Stream, server net.Conn) {
		_ = server.(*net.TCPConn).SetWriteBuffer(16 << 10)
	})
	_ = st.conn.(*net.TCPConn).SetReadBuffer(16 << 10)
	fast := ready(t, eng, serve(t, eng, ln, &engine.Subscriber{}), "", 2)

	const n = 60
	big := strings.Repeat("y", 32<<10)
	received := make(chan error, 1)
	go func() {
		for i := range n {
			if got, err := fast.next(); err != nil || got != frame(strconv.Itoa(i), big) {
				received <- fmt.Errorf("fast subscriber, message %d: %.40q, %v", i, got, err)
				return
			}
		}
		received <- nil
	}()
	for i := range n {
		publish(t, eng, msg(strconv.Itoa(i), big))
	}
	if err := <-received; err != nil {
		t.Fatal(err)
	}
	err := st.served()
	if !errors.Is(err, engine.ErrSlowWrite) {
		t.Logf("Serve of the stuck subscriber returned %v", err)
	}
	waitSubscribers(t, eng, "", 1)
	if c := eng.Stats().Closed; errors.Is(err, engine.ErrSlowWrite) && (c.Slow != 1 || c.Left != 0) {
		t.Errorf("closed %+v after a write timeout, want one slow", c)
	}
	u.check(t, stuck)
	// What the stuck client had received is whole frames and then a cut:
	// a reset, so that the kernel dropped what it still held for it.
	p := sseparse.New()
	b, rerr := io.ReadAll(st.br)
	if eng.Stats().Closed.Slow == 1 && !isReset(rerr) {
		t.Errorf("the stuck client's stream ended with %v, want a reset", rerr)
	}
	p.Feed(b)
	for i, e := range p.Events {
		if e.Data != big || e.LastEventID != strconv.Itoa(i) {
			t.Fatalf("stuck subscriber's event %d: id %q, %d bytes", i, e.LastEventID, len(e.Data))
		}
	}
}

func TestEngineSlowReaderCatchesUp(t *testing.T) {
	// A client that pauses while a burst bigger than its socket buffers is
	// published gets all of it, in order, once it reads again.
	eng := newEngine(t, engine.Config{Shards: 1, Capacity: 256, WriteTimeout: 2 * wait})
	ln := listen(t)
	s := serveSmallBuffers(t, eng, ln)
	const n = 100
	big := strings.Repeat("z", 16<<10)
	for i := range n {
		publish(t, eng, msg(strconv.Itoa(i), big+strconv.Itoa(i)))
	}
	time.Sleep(100 * time.Millisecond)
	for i := range n {
		s.expect(frame(strconv.Itoa(i), big+strconv.Itoa(i)))
	}
	publish(t, eng, msg("after", "burst"))
	s.expect(frame("after", "burst"))
}

func TestEngineKeepAliveDuringCatchUp(t *testing.T) {
	// Keep-alive sweeps run while a subscriber's own goroutine writes a
	// backlog: keep-alives only ever fall between frames, and every frame
	// arrives in order.
	eng := newEngine(t, engine.Config{Shards: 1, KeepAlive: 20 * time.Millisecond, WriteTimeout: 2 * wait})
	ln := listen(t)
	s := serveSmallBuffers(t, eng, ln)
	const n = 100
	big := strings.Repeat("k", 16<<10)
	for i := range n {
		publish(t, eng, msg(strconv.Itoa(i), big))
	}
	keepAlives := 0
	for i := 0; i < n; {
		if i%10 == 0 {
			time.Sleep(5 * time.Millisecond) // a slow reader
		}
		f, err := s.next()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if f == ": keep-alive\n\n" {
			keepAlives++
			continue
		}
		if f != frame(strconv.Itoa(i), big) {
			t.Fatalf("message %d: %.60q", i, f)
		}
		i++
	}
	t.Logf("%d keep-alives between frames", keepAlives)
}

// serveSmallBuffers serves a subscriber whose socket buffers are 64 KiB
// on both ends (so a burst fills them quickly; smaller ones stalled
// loopback TCP for seconds), and waits until it is registered.
func serveSmallBuffers(t *testing.T, eng *engine.Engine, ln net.Listener) *stream {
	t.Helper()
	s := serve(t, eng, ln, &engine.Subscriber{}, func(st *engine.Stream, server net.Conn) {
		_ = server.(*net.TCPConn).SetWriteBuffer(64 << 10)
	})
	_ = s.conn.(*net.TCPConn).SetReadBuffer(64 << 10)
	s.expect(okFrame)
	waitSubscribers(t, eng, "", 1)
	return s
}
