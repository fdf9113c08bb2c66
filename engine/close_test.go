package engine_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
)

func TestEngineClose(t *testing.T) {
	var u unsubscribes
	eng, err := engine.New(engine.Config{Hooks: engine.Hooks{Unsubscribe: u.hook}})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	var streams []*stream
	var subs []*engine.Subscriber
	for i := range 3 {
		sub := &engine.Subscriber{Topics: []string{strconv.Itoa(i)}}
		s := serve(t, eng, ln, sub)
		s.expect(okFrame)
		streams = append(streams, s)
		subs = append(subs, sub)
	}
	for i := range 3 {
		waitSubscribers(t, eng, strconv.Itoa(i), 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- eng.Close(ctx) }()
	for _, s := range streams {
		f, err := s.next()
		if err != nil {
			t.Fatalf("goodbye: %q, %v", f, err)
		}
		checkShutdownRetry(t, f)
		s.expectEOF()
		s.served()
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	u.check(t, subs...)
	if err := eng.Close(context.Background()); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if _, err := eng.Publish(msg("1", "late")); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Publish after Close: %v", err)
	}
}

// checkShutdownRetry checks a shutdown goodbye: the retry is the default 1s
// plus up to 2s of jitter.
func checkShutdownRetry(t testing.TB, f string) {
	t.Helper()
	rest, ok := strings.CutPrefix(f, ": shutdown\nretry: ")
	ms, err := strconv.Atoi(strings.TrimSuffix(rest, "\n\n"))
	if !ok || !strings.HasSuffix(rest, "\n\n") || err != nil || ms < 1000 || ms >= 3000 {
		t.Errorf("goodbye %q, want a shutdown retry in [1000, 3000)", f)
	}
}

func TestEngineServeAfterClose(t *testing.T) {
	var u unsubscribes
	eng, err := engine.New(engine.Config{Hooks: engine.Hooks{Unsubscribe: u.hook}})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	sub := &engine.Subscriber{}
	s := serve(t, eng, ln, sub, withHead("H\n"))
	if h, err := s.br.ReadString('\n'); h != "H\n" || err != nil {
		t.Fatalf("head %q, %v", h, err)
	}
	f, _ := s.next()
	checkShutdownRetry(t, f)
	s.expectEOF()
	if err := s.served(); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Serve after Close: %v", err)
	}
	if u.total.Load() != 1 {
		t.Fatal("BUG: engine/subscriber.go Serve: when the engine is closing it returns ErrClosed without running " +
			"Unsubscribe, though its comment says \"Unsubscribe has run when it returns\" and the transport ran Subscribe before")
	}
	u.check(t, sub)
}

func TestEngineCloseDuringCatchup(t *testing.T) {
	// A subscriber still in Serve's set-up (here: a slow Catchup hook) when
	// Close walks the shards must still get its goodbye, and Close must not
	// have to cut it off at its deadline.
	entered, release := make(chan struct{}), make(chan struct{})
	var u unsubscribes
	hooks := engine.Hooks{
		Unsubscribe: u.hook,
		Catchup: func(s *engine.Subscriber, id string, has bool) ([]*engine.Message, error) {
			close(entered)
			<-release
			return []*engine.Message{{ID: "c", Data: "caught up", HasData: true}, {}}, nil
		},
	}
	eng, err := engine.New(engine.Config{Hooks: hooks})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	sub := &engine.Subscriber{}
	s := serve(t, eng, ln, sub)
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- eng.Close(ctx) }()
	waitFor(t, "Close to begin", eng.Closing)
	time.Sleep(20 * time.Millisecond) // let Close walk the shards
	close(release)
	s.expect(okFrame, frame("c", "caught up")) // the empty message is refused
	f, err := s.next()
	if err != nil {
		t.Fatalf("goodbye: %q, %v", f, err)
	}
	checkShutdownRetry(t, f)
	s.expectEOF()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v (it had to cut the subscriber off)", err)
		}
	case <-time.After(wait):
		t.Fatal("Close did not return")
	}
	u.check(t, sub)
}

func TestEngineTimeout(t *testing.T) {
	var u unsubscribes
	var elapsed atomic.Int64
	hooks := engine.Hooks{
		Unsubscribe: u.hook,
		Timeout: func(s *engine.Subscriber, d time.Duration) (time.Duration, bool) {
			elapsed.Store(int64(d))
			if len(s.Topics) > 0 && s.Topics[0] == "default-retry" {
				return 0, false
			}
			return 1234 * time.Millisecond, true
		},
	}
	eng := newEngine(t, engine.Config{Timeout: 200 * time.Millisecond, TimeoutRetry: 300 * time.Millisecond, Hooks: hooks})
	ln := listen(t)
	start := time.Now()
	hooked := &engine.Subscriber{}
	s := serve(t, eng, ln, hooked)
	s.expect(okFrame, ": timeout\nretry: 1234\n\n")
	s.expectEOF()
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("closed after %v, before the 200ms timeout", d)
	}
	if d := time.Duration(elapsed.Load()); d < 200*time.Millisecond || d > wait {
		t.Errorf("the Timeout hook was told %v", d)
	}
	s.served()

	plain := &engine.Subscriber{Topics: []string{"default-retry"}}
	p := serve(t, eng, ln, plain)
	p.expect(okFrame, ": timeout\nretry: 300\n\n")
	p.expectEOF()
	p.served()
	u.check(t, hooked, plain)
}

// TestEngineExpires: a subscriber whose Expires passes gets what was
// published before it, then ": expired" with the retry hint, and is
// closed (Unsubscribe runs, counted as expired); the Timeout hook is not
// asked. A subscriber without Expires stays.
func TestEngineExpires(t *testing.T) {
	var u unsubscribes
	var timeouts atomic.Int64
	hooks := engine.Hooks{
		Unsubscribe: u.hook,
		Timeout: func(*engine.Subscriber, time.Duration) (time.Duration, bool) {
			timeouts.Add(1)
			return 0, false
		},
	}
	eng := newEngine(t, engine.Config{TimeoutRetry: 250 * time.Millisecond, Hooks: hooks})
	ln := listen(t)
	expires := time.Now().Add(400 * time.Millisecond)
	sub := &engine.Subscriber{Topics: []string{"t"}, Expires: expires}
	s := serve(t, eng, ln, sub)
	forever := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"t"}})
	s.expect(okFrame)
	forever.expect(okFrame)
	waitSubscribers(t, eng, "t", 2)
	publish(t, eng, msg("1", "before", "t"))
	s.expect(frame("1", "before"))
	s.expect(": expired\nretry: 250\n\n")
	s.expectEOF()
	if now := time.Now(); now.Before(expires) {
		t.Errorf("closed %v before Expires", expires.Sub(now))
	}
	s.served()
	u.check(t, sub)
	if c := eng.Stats().Closed; c.Expired != 1 || c.Timeout != 0 {
		t.Errorf("closed %+v, want one expired", c)
	}
	if n := timeouts.Load(); n != 0 {
		t.Errorf("the Timeout hook ran %d times for an expiry", n)
	}
	forever.expect(frame("1", "before"))
	publish(t, eng, msg("2", "after", "t"))
	forever.expect(frame("2", "after"))
}
