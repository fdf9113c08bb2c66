package engine_test

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
)

// TestCoalesceOneAtATimeEngine: a publisher that waits for each message
// to arrive before it publishes the next is never held by the adaptive
// default (it never publishes during a pass). Bound: adaptive's median
// round trip within 3x off's + 400 us. (The first version of the 1 ms gap
// held it ~1.18 ms against ~15-20 us off; found by review.)
func TestCoalesceOneAtATimeEngine(t *testing.T) {
	p50 := map[string]time.Duration{}
	for _, c := range []struct {
		name   string
		window time.Duration
	}{{"adaptive", 0}, {"off", -1}} {
		eng := newEngine(t, engine.Config{Shards: 1, WriteCoalesce: c.window})
		ln := listen(t)
		s := ready(t, eng, serve(t, eng, ln, &engine.Subscriber{Topics: []string{"t"}}), "t", 1)
		var rt []time.Duration
		for i := range 200 {
			t0 := time.Now()
			publish(t, eng, msg(strconv.Itoa(i), "x", "t"))
			s.expect(frame(strconv.Itoa(i), "x"))
			rt = append(rt, time.Since(t0))
		}
		slices.Sort(rt)
		t.Logf("%s: round trip p50 %v p90 %v (200 rounds)", c.name, rt[100], rt[180])
		p50[c.name] = rt[100]
	}
	if p50["adaptive"] > 3*p50["off"]+400*time.Microsecond {
		t.Errorf("adaptive coalescing holds a one-at-a-time publisher: median round trip %v, %v with it off", p50["adaptive"], p50["off"])
	}
}
