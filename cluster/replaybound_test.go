package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"
)

// TestReplayReadsBounded: with every slot of --nats-replay-fetches taken,
// a replay (and a server API history read) waits for a slot at most
// PublishTimeout and then fails with an error saying so, without
// touching the stream: the node has no NATS connection here, and any
// read would panic. A waiting identical replay shares that outcome.
func TestReplayReadsBounded(t *testing.T) {
	n := &Node{cfg: Config{PublishTimeout: 200 * time.Millisecond, ReplayFetches: 2}, replaySlots: semaphore.NewWeighted(2)}
	n.metrics = newNodeMetrics(n)
	if err := n.replaySlots.Acquire(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	errs := make(chan error, 3)
	go func() { _, _, err := n.Replay([]string{"a"}, 5, 10); errs <- err }()
	go func() { _, _, err := n.Replay([]string{"a"}, 5, 10); errs <- err }()
	go func() { _, err := n.History("a", 5, 10); errs <- err }()
	for range 3 {
		err := <-errs
		if err == nil || !strings.Contains(err.Error(), "2 reads of the stream under way") {
			t.Errorf("err %v, want one saying the reads are bounded", err)
		}
	}
	// Generous: the waits are PublishTimeout each (200 ms); a loaded
	// machine may add scheduling delay, never a read.
	if d := time.Since(start); d < 200*time.Millisecond || d > 5*time.Second {
		t.Errorf("the replays waited %v for a slot, want about PublishTimeout", d)
	}
}
