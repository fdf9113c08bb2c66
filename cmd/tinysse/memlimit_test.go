package main

import (
	"math"
	"runtime/debug"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
)

func TestMemoryLimit(t *testing.T) {
	const mib = 1 << 20
	// History alone: the budget, what lies outside the heap and the slack.
	if got := memoryLimit(256*mib, 260*mib, 256*mib, 10*mib); got != (256+8+10+64)*mib {
		t.Errorf("history-bound heap: limit %d MiB", got/mib)
	}
	// A heap of subscribers keeps GOGC=100's room on top of the budget.
	if got := memoryLimit(256*mib, 300*mib, 100*mib, 50*mib); got != (256+400+50+64)*mib {
		t.Errorf("subscriber-bound heap: limit %d MiB", got/mib)
	}
	// Counted history above the live heap (it is measured at the last
	// collection) never lowers the limit below the budget.
	if got := memoryLimit(256*mib, 10*mib, 200*mib, 0); got != (256+64)*mib {
		t.Errorf("stale live heap: limit %d MiB", got/mib)
	}
}

// TestPaceGC: the pacer sets a limit above the budget while it runs and
// lifts it when stopped; a second one in the same process leaves it be.
func TestPaceGC(t *testing.T) {
	if debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Skip("GOMEMLIMIT is set")
	}
	e, err := engine.New(engine.Config{MaxHistoryBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(t.Context())
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { paceGC(e, 32<<20, stop); close(done) }()
	deadline := time.Now().Add(wait)
	for debug.SetMemoryLimit(-1) == math.MaxInt64 {
		if time.Now().After(deadline) {
			t.Fatal("no memory limit set")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := debug.SetMemoryLimit(-1); got < 32<<20+gcSlack {
		t.Errorf("limit %d, below budget and slack", got)
	}
	second := make(chan struct{})
	go func() { paceGC(e, 1, stop); close(second) }()
	select {
	case <-second:
	case <-time.After(wait):
		t.Fatal("a second pacer did not leave at once")
	}
	close(stop)
	<-done
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("limit %d after the pacer stopped, want none", got)
	}
}
