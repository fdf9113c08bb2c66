package engine

import (
	"testing"
	"time"
)

// holdFor: a set window always; off never; adaptive only when the shard
// was woken within its last pass's duration, for that long, capped.
func TestHoldFor(t *testing.T) {
	end := time.Unix(1000, 0)
	ms := time.Millisecond
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
		{"adaptive, busy", 0, 200 * time.Microsecond, ms, ms},
		{"adaptive, woken during the pass", 0, 0, 700 * time.Microsecond, 700 * time.Microsecond},
		{"adaptive, busy, long pass capped", 0, ms, 40 * ms, AdaptiveCoalesceMax},
	} {
		if got := holdFor(c.window, end.Add(c.since), end, c.lastDur); got != c.want {
			t.Errorf("%s: holdFor = %v, want %v", c.name, got, c.want)
		}
	}
}
