package engine

import (
	"testing"
	"time"
)

// holdFor: a set window always; off never; adaptive: after a pass during
// which a publish arrived, the rest of the gap since it ended (its
// duration between AdaptiveCoalesceMin and AdaptiveCoalesceMax); else,
// woken within the last pass's duration, that long (capped); else none.
func TestHoldFor(t *testing.T) {
	end := time.Unix(1000, 0)
	ms, us := time.Millisecond, time.Microsecond
	for _, c := range []struct {
		name    string
		window  time.Duration
		since   time.Duration // from the last pass's end to the wake
		lastDur time.Duration
		during  bool // a publish arrived during the last pass
		want    time.Duration
	}{
		{"window set", 5 * ms, 0, 0, false, 5 * ms},
		{"window set, idle", 5 * ms, time.Hour, ms, true, 5 * ms},
		{"off", -1, 0, ms, true, 0},
		{"adaptive, no pass yet", 0, 0, 0, true, 0},
		{"adaptive, idle", 0, 3 * ms, ms, false, 0},
		{"adaptive, one at a time: woken after a short pass", 0, 200 * us, 50 * us, false, 0},
		{"adaptive, woken right after the pass", 0, 200 * us, ms, false, ms},
		{"adaptive, woken during the pass, no publish in it", 0, 0, 700 * us, false, 700 * us},
		{"adaptive, long pass capped", 0, ms, 40 * ms, false, AdaptiveCoalesceMax},
		{"busy: the floor's rest", 0, 200 * us, 50 * us, true, AdaptiveCoalesceMin - 200*us},
		{"busy, woken at the pass's end", 0, 0, 50 * us, true, AdaptiveCoalesceMin},
		{"busy, past the floor", 0, AdaptiveCoalesceMin, 50 * us, true, 0},
		{"busy, long pass: its duration's rest", 0, 200 * us, 1500 * us, true, 1300 * us},
		{"busy, long pass capped", 0, ms, 40 * ms, true, AdaptiveCoalesceMax - ms},
		{"busy, long pass, woken after the cap", 0, 3 * ms, 40 * ms, true, 0},
	} {
		if got := holdFor(c.window, end.Add(c.since), end, c.lastDur, c.during); got != c.want {
			t.Errorf("%s: holdFor = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestPassBusy: a pass says the shard is busy (deliverDirty's multi) when
// it wrote more than one message to a subscriber at once, and not when
// each got one: a publisher with one message in flight never makes a
// pass carry two.
func TestPassBusy(t *testing.T) {
	e := stillEngine(t, Config{Shards: 1, Capacity: 64, KeepAlive: -1})
	subscribeDrained(t, e, 3)
	tp := e.acquire("")
	s := e.shards[0]
	ms := prebuilt(3)
	pass := func() bool {
		s.markDirty(tp)
		select {
		case <-s.wake:
		default:
		}
		return s.deliverDirty()
	}
	appendLocked(e, ms[0], tp)
	if pass() {
		t.Error("a pass of one message per subscriber: busy")
	}
	appendLocked(e, ms[1], tp)
	appendLocked(e, ms[2], tp)
	if !pass() {
		t.Error("a pass of two messages per subscriber: not busy")
	}
	if pass() {
		t.Error("a pass with nothing to write: busy")
	}
}
