package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
)

// TestCloseWritesPending: messages published inside a --write-coalesce
// window go out before the shutdown goodbye when Close comes before the
// window ends, through the message hook like any delivery.
func TestCloseWritesPending(t *testing.T) {
	hook := func(_ any, m *engine.Message, _ *engine.Subscriber) []byte {
		if m.Data == "skip" {
			return nil
		}
		return m.Frame
	}
	eng := newEngine(t, engine.Config{WriteCoalesce: time.Second, Hooks: engine.Hooks{Message: hook}})
	ln := listen(t)
	s := ready(t, eng, serve(t, eng, ln, &engine.Subscriber{Topics: []string{"a", "b"}}), "a", 1)
	publish(t, eng, msg("1", "one", "a"))
	publish(t, eng, msg("2", "skip", "b"))
	publish(t, eng, msg("3", "three", "a", "b"))
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- eng.Close(ctx) }()
	s.expect(frame("1", "one"), frame("3", "three"))
	f, err := s.next()
	if err != nil {
		t.Fatalf("goodbye: %q, %v", f, err)
	}
	checkShutdownRetry(t, f)
	s.expectEOF()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if d := eng.Stats().Deliveries; d != 2 {
		t.Errorf("Deliveries %d, want 2", d)
	}
}
