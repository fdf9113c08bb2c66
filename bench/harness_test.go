//go:build unix

package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/testserver"
	"github.com/tinysse/tinysse/internal/testserver/inproc"
	"github.com/tinysse/tinysse/transport"
)

// The sizes every benchmark runs at.
var (
	ringCaps     = []int{256, 65536}
	devnullSubs  = []int{1, 100, 1000, 10000}
	loopbackSubs = []int{1, 100, 1000} // two descriptors each: keep far below the open-file limit
	publishSubs  = []int{0, 100, 10000}
	streamSubs   = []int{100}
)

const (
	// idleStreams is how many idle streams BenchmarkStream opens to weigh one.
	idleStreams = 1000
	// stuckAfter fails a benchmark whose deliveries stop for this long.
	stuckAfter = 10 * time.Second
)

// bySize runs fn as one sub-benchmark per n, named key=n.
func bySize(b *testing.B, key string, ns []int, fn func(b *testing.B, n int)) {
	for _, n := range ns {
		b.Run(fmt.Sprintf("%s=%d", key, n), func(b *testing.B) { fn(b, n) })
	}
}

// payload is the 100-byte single-line message every fan-out sends.
var payload = strings.Repeat("x", 100)

// newMessage returns a fresh message (Publish takes ownership of it).
func newMessage() *engine.Message {
	return &engine.Message{Data: payload, HasData: true}
}

// frame is newMessage's wire form, what the baselines write.
var frame = engine.AppendFrame(nil, newMessage())

var discard = slog.New(slog.DiscardHandler)

// newEngine starts an engine without keep-alives (they would add writes the
// benchmarks do not count) and closes it, with all its subscribers, at the
// end of the benchmark.
func newEngine(b *testing.B, cfg engine.Config) *engine.Engine {
	b.Helper()
	cfg.KeepAlive = -1
	cfg.Logger = discard
	e, err := engine.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stuckAfter)
		defer cancel()
		if err := e.Close(ctx); err != nil {
			b.Errorf("engine close: %v", err)
		}
	})
	return e
}

// waitFor polls cond until it holds or stuckAfter passes.
func waitFor(b *testing.B, what string, cond func() bool) {
	b.Helper()
	testserver.Eventually(b, stuckAfter, what, cond)
}

// startServer runs tinysse's transport and engine (without keep-alives)
// on 127.0.0.1 until the benchmark ends; the transport's Shutdown closes
// the engine.
func startServer(b *testing.B, tcfg transport.Config) (addr string, e *engine.Engine) {
	b.Helper()
	s := inproc.Start(b, inproc.Config{Engine: engine.Config{KeepAlive: -1}, Transport: tcfg})
	return s.Addr, s.Engine
}

// openStreams opens n HTTP/1.1 event streams on e's server with dial,
// each read past its ": ok", and waits until e serves them all.
func openStreams(b *testing.B, e *engine.Engine, n int, dial func() (net.Conn, error)) []net.Conn {
	b.Helper()
	clients := dialN(b, n, dial, []byte("GET /sse HTTP/1.1\r\nHost: bench\r\n\r\n"), []byte(": ok\n\n"))
	waitFor(b, "streams to be served", func() bool { return e.Subscribers("") == n })
	return clients
}

// dialN opens n connections with dial, sends req on each and reads it
// past marker (readHead); they are closed at cleanup if not before.
func dialN(b *testing.B, n int, dial func() (net.Conn, error), req, marker []byte) []net.Conn {
	b.Helper()
	clients := make([]net.Conn, 0, n)
	b.Cleanup(func() {
		for _, c := range clients {
			_ = c.Close()
		}
	})
	for range n {
		c, err := dial()
		if err != nil {
			b.Fatal(err)
		}
		clients = append(clients, c)
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		readHead(b, c, marker)
	}
	return clients
}

// publishEach is the timed loop of a fan-out benchmark: an op publishes
// one message and waits until each of the n streams counted by t has it.
func publishEach(b *testing.B, e *engine.Engine, n int, t *tally) {
	b.Helper()
	deliverEach(b, n, t, func() {
		if _, err := e.Publish(newMessage()); err != nil {
			b.Fatal(err)
		}
	})
}

// deliverEach times rounds of send (one message out) each waiting until
// every one of the n streams counted by t has it, and reports the
// deliveries' rate and CPU cost.
func deliverEach(b *testing.B, n int, t *tally, send func()) {
	b.Helper()
	stuck, stopWatch := t.watch(stuckAfter)
	defer stopWatch()
	b.ReportAllocs()
	b.SetBytes(int64(n * len(frame)))
	cpu := processCPU()
	for b.Loop() {
		t.expect(1)
		send()
		if !t.wait(stuck) {
			b.Fatalf("no delivery for %v", stuckAfter)
		}
	}
	reportDeliveries(b, n, processCPU()-cpu)
}

// tally counts deliveries and wakes the benchmark goroutine once every
// subscriber has had what expect announced. Subscribers are spread over
// groups, each on its own cache line, so that the goroutines counting
// (shards, clients) seldom write to the same line.
type tally struct {
	groups  [tallyGroups]tallyGroup
	members [tallyGroups]int64 // subscribers per group; immutable after newTally
	open    atomic.Int64       // groups short of their target this round
	done    chan struct{}      // capacity 1; signalled when open reaches 0
	rounds  atomic.Uint64      // completed rounds, for the watchdog
}

const tallyGroups = 64

type tallyGroup struct {
	left atomic.Int64 // deliveries this group still waits for
	_    [56]byte
}

func newTally(n int) *tally {
	t := &tally{done: make(chan struct{}, 1)}
	for i := range n {
		t.members[i%tallyGroups]++
	}
	return t
}

// expect starts a round of k deliveries to every subscriber. Only the
// benchmark goroutine calls it, between rounds.
func (t *tally) expect(k int64) {
	open := int64(0)
	for g := range t.groups {
		if t.members[g] > 0 {
			t.groups[g].left.Store(t.members[g] * k)
			open++
		}
	}
	t.open.Store(open)
}

// add counts k deliveries to subscriber member. Safe from any goroutine.
func (t *tally) add(member int, k int64) {
	g := &t.groups[member%tallyGroups]
	if v := g.left.Add(-k); v <= 0 && v+k > 0 && t.open.Add(-1) == 0 {
		select {
		case t.done <- struct{}{}:
		default:
		}
	}
}

// wait blocks until the round is complete; false means stuck fired.
func (t *tally) wait(stuck <-chan struct{}) bool {
	select {
	case <-t.done:
		t.rounds.Add(1)
		return true
	case <-stuck:
		return false
	}
}

// watch returns a channel closed once no round has completed for d, so
// that a lost delivery fails the benchmark instead of hanging it; stop
// ends the watchdog.
func (t *tally) watch(d time.Duration) (stuck <-chan struct{}, stop func()) {
	ch, quit, exited := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		tick := time.NewTicker(d / 10)
		defer tick.Stop()
		last, since := t.rounds.Load(), time.Now()
		for {
			select {
			case <-quit:
				return
			case now := <-tick.C:
				if r := t.rounds.Load(); r != last {
					last, since = r, now
				} else if now.Sub(since) >= d {
					close(ch)
					return
				}
			}
		}
	}()
	return ch, func() { close(quit); <-exited }
}

// readHead reads c until marker (the end of the stream's head: the HTTP
// response head, ": ok") has gone by, and fails the benchmark otherwise.
// Nothing else is sent before the first publish, so nothing is lost.
func readHead(b *testing.B, c net.Conn, marker []byte) {
	b.Helper()
	_ = c.SetReadDeadline(time.Now().Add(stuckAfter))
	defer c.SetReadDeadline(time.Time{})
	var head []byte
	buf := make([]byte, 512)
	for !bytes.HasSuffix(head, marker) {
		n, err := c.Read(buf)
		head = append(head, buf[:n]...)
		if err != nil {
			b.Fatalf("reading the stream head: %v (got %q)", err, head)
		}
	}
}

// drains starts one goroutine per client conn that reads until the conn
// fails and counts every wire bytes as one delivery on t. The cleanup
// closes the clients and waits for the goroutines.
func drains(b *testing.B, clients []net.Conn, wire int, t *tally) {
	b.Helper()
	var running sync.WaitGroup
	for i, c := range clients {
		buf := make([]byte, 2048) // here, not in the goroutine: on the clock it would count as B/op
		running.Go(func() {
			carry := 0
			for {
				n, err := c.Read(buf)
				carry += n
				if k := carry / wire; k > 0 {
					carry -= k * wire
					t.add(i, int64(k))
				}
				if err != nil {
					return
				}
			}
		})
	}
	b.Cleanup(func() {
		for _, c := range clients {
			_ = c.Close()
		}
		waitGroup(b, &running, "drain clients to end")
	})
}

// waitGroup waits for wg, failing after stuckAfter.
func waitGroup(b *testing.B, wg *sync.WaitGroup, what string) {
	b.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(stuckAfter):
		b.Fatalf("timed out waiting for %s", what)
	}
}

// tcpPairs returns n connected TCP pairs on 127.0.0.1, closed at cleanup.
func tcpPairs(b *testing.B, n int) (clients, servers []net.Conn) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	b.Cleanup(func() {
		for _, c := range servers {
			_ = c.Close()
		}
		for _, c := range clients {
			_ = c.Close()
		}
	})
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		clients = append(clients, c)
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		servers = append(servers, s)
	}
	return clients, servers
}

// nullFiles is how many descriptors of /dev/null the devnull subscribers
// share, subscriber i using i%nullFiles. Several, because the kernel
// counts references on a file at every write from a multi-threaded
// process: shards writing to one file from two cores would bounce its
// cache line, where real subscribers have a socket each.
const nullFiles = 64

// devNulls opens /dev/null nullFiles times for writing and returns the
// descriptors, closed at cleanup (call it before starting anything that
// writes to them, so that they close last).
func devNulls(b *testing.B) []uintptr {
	b.Helper()
	fds := make([]uintptr, nullFiles)
	for i := range fds {
		f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = f.Close() })
		fds[i] = f.Fd()
	}
	return fds
}

// idleConn stands for the client side of a subscriber that never speaks,
// without a socket: Read blocks until Close or until a read deadline
// passes (the engine wakes a subscriber's goroutine by setting one in the
// past). Write discards, or with stall blocks every write after the first
// (the stream head) until Close or its deadline: a client that reads
// nothing.
type idleConn struct {
	stall bool // immutable after newIdleConn

	mu        sync.Mutex // guards the fields below
	rDeadline time.Time
	wDeadline time.Time
	closed    bool
	reads     int // Read calls so far
	writes    int // Write calls so far

	poke chan struct{} // capacity 1: the waiting goroutine re-checks
}

func newIdleConn(stall bool) *idleConn {
	return &idleConn{stall: stall, poke: make(chan struct{}, 1)}
}

func (c *idleConn) wake() {
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

// block waits until Close, or the deadline that *d holds passes, and
// returns the error to give. mu must not be held.
func (c *idleConn) block(d *time.Time) error {
	for {
		c.mu.Lock()
		closed, at := c.closed, *d
		c.mu.Unlock()
		switch {
		case closed:
			return net.ErrClosed
		case at.IsZero():
			<-c.poke
		case !time.Now().Before(at):
			return os.ErrDeadlineExceeded
		default:
			t := time.NewTimer(time.Until(at))
			select {
			case <-c.poke:
			case <-t.C:
			}
			t.Stop()
		}
	}
}

func (c *idleConn) Read([]byte) (int, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return 0, c.block(&c.rDeadline)
}

// reading reports whether the subscriber's goroutine has come to Read: its
// stream head is written and it has settled into waiting.
func (c *idleConn) reading() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads > 0
}

func (c *idleConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	closed, stall := c.closed, c.stall && c.writes > 1
	c.mu.Unlock()
	switch {
	case closed:
		return 0, net.ErrClosed
	case stall:
		return 0, c.block(&c.wDeadline)
	}
	return len(p), nil
}

// blocked reports whether a stalling conn has had a write after the head
// (one that blocks).
func (c *idleConn) blocked() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stall && c.writes > 1
}

// change runs set under c.mu, then wakes a blocked Read or Write to look
// again.
func (c *idleConn) change(set func()) error {
	c.mu.Lock()
	set()
	c.mu.Unlock()
	c.wake()
	return nil
}

func (c *idleConn) Close() error { return c.change(func() { c.closed = true }) }

func (c *idleConn) SetDeadline(t time.Time) error {
	_ = c.SetWriteDeadline(t)
	return c.SetReadDeadline(t)
}

func (c *idleConn) SetReadDeadline(t time.Time) error {
	return c.change(func() { c.rDeadline = t })
}

func (c *idleConn) SetWriteDeadline(t time.Time) error {
	return c.change(func() { c.wDeadline = t })
}

func (c *idleConn) LocalAddr() net.Addr  { return idleAddr{} }
func (c *idleConn) RemoteAddr() net.Addr { return idleAddr{} }

type idleAddr struct{}

func (idleAddr) Network() string { return "idle" }
func (idleAddr) String() string  { return "idle" }

// nullRaw is a subscriber's syscall.RawConn on a /dev/null descriptor;
// it counts each write as one delivery to member. The count is
// exact in the fan-out rounds: /dev/null takes every write whole and each
// round publishes one message, so a write carries one frame.
//
// It calls f on the descriptor directly instead of through the file's own
// RawConn, whose write lock the subscribers sharing the file would contend
// for (real subscribers have a socket, and a lock, each).
type nullRaw struct {
	fd     uintptr
	t      *tally
	member int
}

func (r *nullRaw) Control(f func(fd uintptr)) error { f(r.fd); return nil }

func (r *nullRaw) Read(func(fd uintptr) bool) error { return errWriteOnly }

func (r *nullRaw) Write(f func(fd uintptr) bool) error {
	for !f(r.fd) {
		// /dev/null is always writable: try again.
	}
	r.t.add(r.member, 1)
	return nil
}

var errWriteOnly = errors.New("bench: /dev/null is write-only")

// processCPU is the CPU time the process has used, all threads.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportDeliveries adds the per-delivery metrics of a fan-out run of b.N
// rounds to subs subscribers that used cpu of process CPU time.
func reportDeliveries(b *testing.B, subs int, cpu time.Duration) {
	if subs == 0 || b.N == 0 {
		return
	}
	d := float64(subs) * float64(b.N)
	b.ReportMetric(d/b.Elapsed().Seconds(), "deliveries/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/d, "ns/delivery")
	b.ReportMetric(float64(cpu.Nanoseconds())/d, "cpu-ns/delivery")
}
