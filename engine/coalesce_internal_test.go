package engine

import (
	"testing"
	"time"
)

// holdFor: a set window always; off never; adaptive: the rest of the gap
// since the last pass ended, the gap being that pass's duration between
// AdaptiveCoalesceMin and AdaptiveCoalesceMax.
func TestHoldFor(t *testing.T) {
	end := time.Unix(1000, 0)
	ms, us := time.Millisecond, time.Microsecond
	for _, c := range []struct {
		name    string
		window  time.Duration
		since   time.Duration // from the last pass's end to the wake
		lastDur time.Duration
		want    time.Duration
	}{
		{"window set", 5 * ms, 0, 0, 5 * ms},
		{"window set, idle", 5 * ms, time.Hour, ms, 5 * ms},
		{"off", -1, 0, ms, 0},
		{"adaptive, no pass yet", 0, 0, 0, 0},
		{"adaptive, idle", 0, 3 * ms, ms, 0},
		{"adaptive, idle just past the floor", 0, AdaptiveCoalesceMin, 50 * us, 0},
		{"adaptive, short pass: the floor's rest", 0, 200 * us, 50 * us, AdaptiveCoalesceMin - 200*us},
		{"adaptive, woken during a short pass", 0, 0, 50 * us, AdaptiveCoalesceMin},
		{"adaptive, long pass: its duration's rest", 0, 200 * us, 1500 * us, 1300 * us},
		{"adaptive, long pass capped", 0, ms, 40 * ms, AdaptiveCoalesceMax - ms},
		{"adaptive, long pass, woken after the cap", 0, 3 * ms, 40 * ms, 0},
	} {
		if got := holdFor(c.window, end.Add(c.since), end, c.lastDur); got != c.want {
			t.Errorf("%s: holdFor = %v, want %v", c.name, got, c.want)
		}
	}
}
