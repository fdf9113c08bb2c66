//go:build unix

package bench

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
)

// A fan-out design is set up for n subscribers whose deliveries count on t,
// and returns send, which hands one message to every subscriber. When
// synchronous, send returns only after every delivery and t is not used.
type design func(b *testing.B, n int, t *tally) (send func(), synchronous bool)

// runFanout measures rounds of one message to n subscribers: each op sends
// and waits until every subscriber has the message.
func runFanout(b *testing.B, n int, d design) {
	t := newTally(n)
	send, synchronous := d(b, n, t)
	stuck, stop := t.watch(stuckAfter)
	defer stop()
	b.ReportAllocs()
	b.SetBytes(int64(n * len(frame)))
	cpu := processCPU()
	for b.Loop() {
		if synchronous {
			send()
			continue
		}
		t.expect(1)
		send()
		if !t.wait(stuck) {
			b.Fatalf("no delivery for %v", stuckAfter)
		}
	}
	reportDeliveries(b, n, processCPU()-cpu)
}

// fanouts runs each design at its sizes, as sub-benchmarks devnull and
// loopback.
func fanouts(b *testing.B, devnull, loopback design) {
	b.Run("devnull", func(b *testing.B) {
		bySize(b, "subs", devnullSubs, func(b *testing.B, n int) { runFanout(b, n, devnull) })
	})
	b.Run("loopback", func(b *testing.B) {
		bySize(b, "subs", loopbackSubs, func(b *testing.B, n int) { runFanout(b, n, loopback) })
	})
}

// BenchmarkFanout is tinysse's engine: Publish encodes once and wakes the
// shards, which writev each subscriber's pending frames without blocking.
func BenchmarkFanout(b *testing.B) {
	fanouts(b, engineDevNull, engineLoopback)
}

// BenchmarkRawFanout is the "minimal raw-socket fan-out loop": one
// goroutine writes the pre-encoded frame to each subscriber in turn.
func BenchmarkRawFanout(b *testing.B) {
	fanouts(b, rawDevNull, rawLoopback)
}

// BenchmarkChanFanout is the naive design: a goroutine per subscriber,
// fed the frame through its own channel.
func BenchmarkChanFanout(b *testing.B) {
	fanouts(b, chanDevNull, chanLoopback)
}

func publish(b *testing.B, e *engine.Engine) func() {
	return func() {
		if _, err := e.Publish(newMessage()); err != nil {
			b.Fatal(err)
		}
	}
}

func engineDevNull(b *testing.B, n int, t *tally) (func(), bool) {
	fds := devNulls(b)
	e := newEngine(b, engine.Config{})
	nullSubscribers(b, e, fds, n, t)
	return publish(b, e), false
}

// nullSubscribers serves n subscribers on e that write to /dev/null
// (fds), each counting its writes on t, and returns once all are
// registered and waiting in Read (so that their start-up allocations are
// not counted against the first rounds).
func nullSubscribers(b *testing.B, e *engine.Engine, fds []uintptr, n int, t *tally) {
	b.Helper()
	conns := make([]*idleConn, n)
	for i := range conns {
		c := newIdleConn(false)
		conns[i] = c
		st := engine.Stream{Conn: c, Raw: &nullRaw{fd: fds[i%len(fds)], t: t, member: i}, Close: c.Close}
		go func() { _ = e.Serve(&engine.Subscriber{}, st) }()
	}
	waitIdle(b, e, conns)
}

// waitIdle returns once e has registered a subscriber for each of conns
// and every one of them waits in Read.
func waitIdle(b *testing.B, e *engine.Engine, conns []*idleConn) {
	b.Helper()
	waitFor(b, "subscribers to register", func() bool { return e.Subscribers("") == len(conns) })
	waitFor(b, "subscribers to wait in Read", func() bool {
		for _, c := range conns {
			if !c.reading() {
				return false
			}
		}
		return true
	})
}

func engineLoopback(b *testing.B, n int, t *tally) (func(), bool) {
	clients, servers := tcpPairs(b, n)
	e := newEngine(b, engine.Config{})
	watched := make([]*readWatch, n)
	for i, s := range servers {
		raw, err := s.(*net.TCPConn).SyscallConn()
		if err != nil {
			b.Fatal(err)
		}
		w := &readWatch{Conn: s}
		watched[i] = w
		st := engine.Stream{Conn: w, Raw: raw, Close: s.Close}
		// Start returns once the shard's poller watches the socket
		// (Linux, macOS, the BSDs); elsewhere its goroutine stays to Read.
		go func() { e.Start(&engine.Subscriber{}, st, nil); w.started.Store(true) }()
	}
	for _, c := range clients {
		readHead(b, c, []byte(": ok\n\n"))
	}
	waitFor(b, "subscribers to finish starting (handed to the poller, or waiting in Read)", func() bool {
		for _, w := range watched {
			if !w.reading.Load() && !w.started.Load() {
				return false
			}
		}
		return true
	})
	drains(b, clients, len(frame), t)
	return publish(b, e), false
}

// readWatch is a server conn that tells when its subscriber's goroutine
// has come to Read, its start-up done.
type readWatch struct {
	net.Conn
	reading atomic.Bool // its goroutine came to Read
	started atomic.Bool // Start returned: the poller watches it
}

func (w *readWatch) Read(p []byte) (int, error) {
	w.reading.Store(true)
	return w.Conn.Read(p)
}

func rawDevNull(b *testing.B, n int, _ *tally) (func(), bool) {
	fds := devNulls(b)
	return func() {
		for i := range n {
			if _, err := syscall.Write(int(fds[i%len(fds)]), frame); err != nil {
				b.Fatal(err)
			}
		}
	}, true
}

func rawLoopback(b *testing.B, n int, t *tally) (func(), bool) {
	clients, servers := tcpPairs(b, n)
	drains(b, clients, len(frame), t)
	return func() {
		for _, s := range servers {
			if _, err := s.Write(frame); err != nil {
				b.Fatal(err)
			}
		}
	}, false
}

// chans starts n goroutines, each writing what its channel brings with
// write(i, frame), and returns send, which feeds every channel. The
// goroutines end at cleanup.
func chans(b *testing.B, n int, write func(i int, f []byte)) func() {
	chs := make([]chan []byte, n)
	var wg sync.WaitGroup
	for i := range chs {
		ch := make(chan []byte, 16)
		chs[i] = ch
		wg.Go(func() {
			for f := range ch {
				write(i, f)
			}
		})
	}
	b.Cleanup(func() {
		for _, ch := range chs {
			close(ch)
		}
		waitGroup(b, &wg, "subscriber goroutines to end")
	})
	return func() {
		for _, ch := range chs {
			ch <- frame
		}
	}
}

func chanDevNull(b *testing.B, n int, t *tally) (func(), bool) {
	fds := devNulls(b)
	return chans(b, n, func(i int, f []byte) {
		if _, err := syscall.Write(int(fds[i%len(fds)]), f); err == nil {
			t.add(i, 1)
		}
	}), false
}

func chanLoopback(b *testing.B, n int, t *tally) (func(), bool) {
	clients, servers := tcpPairs(b, n)
	drains(b, clients, len(frame), t)
	return chans(b, n, func(i int, f []byte) {
		_, _ = servers[i].Write(f)
	}), false
}

// BenchmarkPublish times Publish alone, with n subscribers on its topic.
// Its cost must not grow with n.
//
// The subscribers are clients that read nothing: each is stuck in a
// blocking write since its first message, so the shards skip it and the
// run costs no delivery work (at 10,000 subscribers delivering everything
// a one-second run publishes would take minutes). Publish does just what
// it does for live subscribers: the topic has them, so every publish
// marks and wakes their shards, which then make a pass over them.
//
// cpu-ns/op is the publishing thread's own CPU time: on two cores the
// shards compete with the publisher for the CPUs, which ns/op sees and
// cpu-ns/op does not.
func BenchmarkPublish(b *testing.B) {
	bySize(b, "subs", publishSubs, func(b *testing.B, n int) {
		e := newEngine(b, engine.Config{WriteTimeout: time.Hour})
		stalledSubscribers(b, e, n)
		unlock := lockThread()
		defer unlock()
		b.ReportAllocs()
		b.SetBytes(int64(len(frame)))
		c0 := threadCPU()
		for b.Loop() {
			if _, err := e.Publish(newMessage()); err != nil {
				b.Fatal(err)
			}
		}
		if cpu := threadCPU() - c0; c0 > 0 {
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
		if got := e.Subscribers(""); got != n {
			b.Fatalf("%d subscribers left of %d", got, n)
		}
	})
}

// stalledSubscribers serves n subscribers on e whose clients read nothing
// and waits until each is blocked in its first write; cleanup unblocks
// them (before e closes).
func stalledSubscribers(b *testing.B, e *engine.Engine, n int) {
	b.Helper()
	conns := make([]*idleConn, n)
	for i := range conns {
		c := newIdleConn(true)
		conns[i] = c
		// No Raw: the shard hands every delivery to the subscriber's
		// goroutine, which writes it blocking (as for TLS).
		st := engine.Stream{Conn: c, Close: c.Close}
		go func() { _ = e.Serve(&engine.Subscriber{}, st) }()
	}
	b.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	waitFor(b, "subscribers to register", func() bool { return e.Subscribers("") == n })
	if _, err := e.Publish(newMessage()); err != nil {
		b.Fatal(err)
	}
	waitFor(b, "subscribers to block", func() bool {
		for _, c := range conns {
			if !c.blocked() {
				return false
			}
		}
		return true
	})
}
