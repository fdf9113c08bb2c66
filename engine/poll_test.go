//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package engine_test

import (
	"bufio"
	"errors"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/testserver"
)

// started is a subscriber begun with Engine.Start, whose goroutine is the
// test's own only until Start returns.
type started struct {
	sub    *engine.Subscriber
	client net.Conn
	br     *bufio.Reader
	ended  chan error
}

// forEachWatch runs f as a subtest twice: with opt nil (the stream's raw
// socket is written and watched) and as over TLS (no raw writes, the
// socket under Conn watched, what arrives read through Conn).
func forEachWatch(t *testing.T, f func(t *testing.T, opt func(*engine.Stream))) {
	t.Run("watch-only=false", func(t *testing.T) { f(t, nil) })
	t.Run("watch-only=true", func(t *testing.T) {
		f(t, func(st *engine.Stream) { st.Watch, st.Raw = st.Raw, nil })
	})
}

// publishAndRead publishes message i (id i, data "d") to topic and reads
// it from s's client, within the test wait (generous for a loaded machine).
func (s *started) publishAndRead(t *testing.T, eng *engine.Engine, i int, topic string) {
	t.Helper()
	publish(t, eng, msg(strconv.Itoa(i), "d", topic))
	_ = s.client.SetReadDeadline(time.Now().Add(wait))
	if f, err := readFrame(s.br); f != frame(strconv.Itoa(i), "d") {
		t.Fatalf("message %d: %q, %v", i, f, err)
	}
}

// startMany connects n subscribers of topic to eng through Start, each
// stream watched as st says (opt may change the Stream), and waits until
// every client has read ": ok" and Start has returned.
func startMany(t *testing.T, eng *engine.Engine, n int, topic string, opt func(*engine.Stream)) []*started {
	t.Helper()
	ln := listen(t)
	out := make([]*started, n)
	returned := make(chan struct{}, n)
	for i := range out {
		client, server := testserver.Pair(t, ln)
		s := &started{sub: &engine.Subscriber{Topics: []string{topic}}, client: client, br: bufio.NewReader(client), ended: make(chan error, 1)}
		st := engine.Stream{Conn: server, Raw: rawConnOf(server), Close: server.Close}
		if opt != nil {
			opt(&st)
		}
		go func() {
			eng.Start(s.sub, st, func(err error) { s.ended <- err })
			returned <- struct{}{}
		}()
		out[i] = s
		t.Cleanup(func() { client.Close() })
	}
	for _, s := range out {
		_ = s.client.SetReadDeadline(time.Now().Add(wait))
		if f, err := readFrame(s.br); f != okFrame {
			t.Fatalf("first frame %q, %v", f, err)
		}
	}
	waitSubscribers(t, eng, topic, n)
	return out
}

func readFrame(br *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		b.WriteString(line)
		if err != nil || line == "\n" {
			return b.String(), err
		}
	}
}

// goroutinesSettle waits until the goroutine count stops falling and
// returns it.
func goroutinesSettle() int {
	n := runtime.NumGoroutine()
	for range 100 {
		time.Sleep(10 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m >= n {
			return m
		}
		n = m
	}
	return n
}

// TestIdleSubscribersHoldNoGoroutine: with the poller, an idle subscriber
// holds no goroutine once Start has returned; with NoPoll each holds one.
// Both still get what is published, and a client that closes is noticed:
// the count goes down and Unsubscribe runs once each.
func TestIdleSubscribersHoldNoGoroutine(t *testing.T) {
	const n = 200
	for _, noPoll := range []bool{false, true} {
		t.Run("NoPoll="+strconv.FormatBool(noPoll), func(t *testing.T) {
			var u unsubscribes
			eng := newEngine(t, engine.Config{NoPoll: noPoll, KeepAlive: -1, Hooks: engine.Hooks{Unsubscribe: u.hook}})
			before := goroutinesSettle()
			subs := startMany(t, eng, n, "idle", nil)
			held := goroutinesSettle() - before
			t.Logf("%d idle subscribers hold %d goroutines (NoPoll %v)", n, held, noPoll)
			if noPoll && held < n {
				t.Errorf("NoPoll: %d goroutines for %d subscribers, want one each", held, n)
			}
			if !noPoll && held > n/10 {
				t.Errorf("polled: %d goroutines for %d idle subscribers, want none each (a few for the engine at most)", held, n)
			}

			publish(t, eng, msg("1", "hello", "idle"))
			for i, s := range subs {
				_ = s.client.SetReadDeadline(time.Now().Add(wait))
				if f, err := readFrame(s.br); f != frame("1", "hello") {
					t.Fatalf("subscriber %d: %q, %v", i, f, err)
				}
			}

			all := make([]*engine.Subscriber, n)
			for i, s := range subs {
				all[i] = s.sub
				s.client.Close()
			}
			waitSubscribers(t, eng, "idle", 0)
			for _, s := range subs {
				select {
				case <-s.ended:
				case <-time.After(wait):
					t.Fatal("a stream did not end after its client closed")
				}
			}
			u.check(t, all...)
			if got := eng.Stats().Closed.Left; got != n {
				t.Errorf("Closed.Left %d, want %d", got, n)
			}
		})
	}
}

// TestPolledClientSendsBytes: bytes a client sends on an idle stream are
// read and dropped (the poller reports them); the stream goes on, and
// the close that follows is still noticed.
func TestPolledClientSendsBytes(t *testing.T) {
	forEachWatch(t, func(t *testing.T, opt func(*engine.Stream)) {
		eng := newEngine(t, engine.Config{KeepAlive: -1})
		s := startMany(t, eng, 1, "b", opt)[0]
		junk := strings.Repeat("x", 3000)
		for i := range 20 {
			if _, err := s.client.Write([]byte(junk)); err != nil {
				t.Fatal(err)
			}
			s.publishAndRead(t, eng, i, "b")
		}
		if n := eng.Subscribers("b"); n != 1 {
			t.Fatalf("%d subscribers after the client wrote, want 1", n)
		}
		s.client.Close()
		waitSubscribers(t, eng, "b", 0)
		select {
		case <-s.ended:
		case <-time.After(wait):
			t.Fatal("the stream did not end")
		}
	})
}

// TestPolledClientFloods: a client that never stops sending on its idle
// stream does not keep its subscriber away from deliveries: the reads
// that drop its bytes stop after a bounded amount per event, the
// subscriber goes back to its shard (which writes what was published),
// and the poller reports the socket again.
func TestPolledClientFloods(t *testing.T) {
	forEachWatch(t, func(t *testing.T, opt func(*engine.Stream)) {
		eng := newEngine(t, engine.Config{KeepAlive: -1})
		s := startMany(t, eng, 1, "f", opt)[0]
		stop := make(chan struct{})
		flooding := make(chan struct{})
		go func() {
			defer close(flooding)
			junk := make([]byte, 64<<10)
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = s.client.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := s.client.Write(junk); err != nil && !isTimeout(err) {
					return
				}
			}
		}()
		defer func() { close(stop); <-flooding }()
		time.Sleep(100 * time.Millisecond) // the flood is under way
		for i := range 5 {
			// Without the bound the message waits for the flood to end,
			// which it never does.
			s.publishAndRead(t, eng, i, "f")
		}
		if n := eng.Subscribers("f"); n != 1 {
			t.Fatalf("%d subscribers during the flood, want 1", n)
		}
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestPolledHalfClose: a client that shuts down its sending side has left
// (EOF on read), as it had when a goroutine waited in Read.
func TestPolledHalfClose(t *testing.T) {
	eng := newEngine(t, engine.Config{KeepAlive: -1})
	s := startMany(t, eng, 1, "h", nil)[0]
	if err := s.client.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	waitSubscribers(t, eng, "h", 0)
	if got := eng.Stats().Closed.Left; got != 1 {
		t.Errorf("Closed.Left %d, want 1", got)
	}
}

// TestPolledExpires: a polled subscriber's token expiry ends its stream
// with ": expired" and the retry hint, without a goroutine waiting for it.
func TestPolledExpires(t *testing.T) {
	eng := newEngine(t, engine.Config{KeepAlive: -1, TimeoutRetry: 250 * time.Millisecond})
	ln := listen(t)
	sub := &engine.Subscriber{Topics: []string{"x"}, Expires: time.Now().Add(300 * time.Millisecond)}
	s := serve(t, eng, ln, sub)
	s.expect(okFrame)
	publish(t, eng, msg("1", "before", "x"))
	s.expect(frame("1", "before"), ": expired\nretry: 250\n\n")
	s.expectEOF()
	s.served()
	if got := eng.Stats().Closed.Expired; got != 1 {
		t.Errorf("Closed.Expired %d, want 1", got)
	}
}

// TestPolledCloseNoticedQuickly: many idle clients closing at once are
// all unsubscribed; the time from the last close to the last Unsubscribe
// is logged (the bound here is generous: the figure for the 1 s
// comes from the load tool).
func TestPolledCloseNoticedQuickly(t *testing.T) {
	const n = 500
	var last atomic.Int64
	var count atomic.Int64
	eng := newEngine(t, engine.Config{KeepAlive: -1, Hooks: engine.Hooks{Unsubscribe: func(*engine.Subscriber) {
		last.Store(time.Now().UnixNano())
		count.Add(1)
	}}})
	subs := startMany(t, eng, n, "q", nil)
	start := time.Now()
	for _, s := range subs {
		s.client.Close()
	}
	closed := time.Now()
	waitFor(t, "every Unsubscribe", func() bool { return count.Load() == n })
	t.Logf("%d closes in %v; last Unsubscribe %v after the last close", n, closed.Sub(start), time.Duration(last.Load()-closed.UnixNano()))
	if eng.Subscribers("q") != 0 {
		t.Errorf("%d subscribers left", eng.Subscribers("q"))
	}
}
