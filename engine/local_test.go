package engine_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/tinysse/tinysse/engine"
)

// PublishLocal (the dashboard's stats) takes no number from the sequence:
// in cluster mode the next stream message still gets the Seq it carries,
// the users' publish count leaves it out and --auto-id gives it no id.
func TestEnginePublishLocalKeepsSeq(t *testing.T) {
	eng := newEngine(t, engine.Config{Shards: 1, AutoID: true})
	if _, err := eng.PublishSeq(msg("", "stream 7", "a"), 7); err != nil {
		t.Fatal(err)
	}
	local := &engine.Message{Data: "stats", HasData: true, Topics: []string{"_stats"}}
	if _, err := eng.PublishLocal(local); err != nil {
		t.Fatal(err)
	}
	if local.ID != "" || local.Seq != 7 {
		t.Fatalf("local message: id %q seq %d, want no id and seq 7", local.ID, local.Seq)
	}
	if got := eng.LastSeq(); got != 7 {
		t.Fatalf("LastSeq after PublishLocal = %d, want 7", got)
	}
	if _, err := eng.PublishSeq(msg("", "stream 8", "a"), 8); err != nil {
		t.Fatalf("PublishSeq(8) after a local publish: %v", err)
	}
	if got := eng.Stats().Publishes; got != 2 {
		t.Fatalf("Stats().Publishes = %d, want 2 (the local one left out)", got)
	}
	if _, err := eng.PublishLocal(&engine.Message{Topics: []string{"x"}}); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("empty local message: err %v, want ErrInvalid", err)
	}
}

// A subscriber of several topics gets local messages that share a Seq with
// the stream's, and with each other, once each and in order, and a stream
// message in two of its topics still once.
func TestEnginePublishLocalSharedSeq(t *testing.T) {
	// The order of the topics is the order gather looks at the cursors in:
	// with "s" between "a" and "b", a local message of x's Seq sits between
	// x's two copies.
	for _, tc := range []struct {
		batched bool
		topics  []string
	}{{false, []string{"a", "b", "s"}}, {true, []string{"a", "b", "s"}}, {true, []string{"a", "s", "b"}}, {true, []string{"s", "a", "b"}}} {
		batched := tc.batched
		t.Run(fmt.Sprintf("batched=%v,topics=%v", batched, tc.topics), func(t *testing.T) {
			g := newGate()
			eng := newEngine(t, engine.Config{Shards: 1, Hooks: engine.Hooks{Message: g.hook}})
			ln := listen(t)
			s := ready(t, eng, serve(t, eng, ln, &engine.Subscriber{Topics: tc.topics}), "s", 1)
			if batched {
				publish(t, eng, msg("gate", "", "a"))
				g.wait(t)
			}
			seq := eng.LastSeq()
			steps := []func(){
				func() { eng.PublishSeq(msg("x", "both", "a", "b"), seq+1) },
				func() { eng.PublishLocal(msg("l1", "local", "s")) },
				func() { eng.PublishLocal(msg("l2", "local", "s")) },
				func() { eng.PublishSeq(msg("y", "b only", "b"), seq+2) },
				func() { eng.PublishLocal(msg("l3", "local", "s")) },
				func() { eng.PublishSeq(msg("z", "both again", "b", "a"), seq+3) },
			}
			for _, step := range steps {
				step()
			}
			close(g.release)
			if batched {
				s.expect(frame("gate", ""))
			}
			s.expect(frame("x", "both"), frame("l1", "local"), frame("l2", "local"), frame("y", "b only"),
				frame("l3", "local"), frame("z", "both again"))
			publish(t, eng, msg("end", "", "s"))
			s.expect(frame("end", ""))
		})
	}
}
