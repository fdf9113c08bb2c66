package engine

import (
	"testing"
	"time"
)

// 0 means no hold: wait returns at once and the shard has no timer.
func TestCoalescerOff(t *testing.T) {
	e := stillEngine(t, Config{Shards: 1})
	var c coalescer
	start := time.Now()
	if _, ok := c.wait(e.shards[0], nil); !ok || c.t != nil || time.Since(start) > 100*time.Millisecond {
		t.Errorf("WriteCoalesce 0: wait held or made a timer (%v)", time.Since(start))
	}
}

// A coalesced delivery round (hold, then the pass) allocates nothing either.
func TestAllocsPerDeliveryCoalesced(t *testing.T) {
	const runs = 50
	e := stillEngine(t, Config{Shards: 1, Capacity: 1024, KeepAlive: -1, WriteCoalesce: 50 * time.Microsecond})
	d := subscribeDrained(t, e, 100)
	s := e.shards[0]
	tp := e.acquire(defaultTopic[0])
	msgs := prebuilt(3*runs + 10)
	next := 0
	var sent int64
	var hold coalescer
	stop := make(chan struct{})
	round := func() {
		// Two publishes per window: the second finds the topic dirty already.
		for range 2 {
			m := msgs[next]
			next++
			sent += int64(len(m.Frame))
			appendLocked(e, m, tp)
			s.markDirty(tp)
		}
		<-s.wake // what run's select takes
		if _, ok := hold.wait(s, stop); !ok {
			t.Fatal("wait: stopped")
		}
		s.deliverDirty()
	}
	for range 3 {
		round()
	}
	spare := stillEngine(t, Config{Shards: 1, Capacity: 1024})
	st := spare.acquire("x")
	appendOnly := testing.AllocsPerRun(runs, func() { appendLocked(spare, msgs[len(msgs)-1], st, st) })
	both := testing.AllocsPerRun(runs, round)
	if per := both - appendOnly; per != 0 {
		t.Errorf("a coalesced round to 100 subscribers allocated %v times (round %v, appends alone %v); want 0", per, both, appendOnly)
	}
	want := int64(len(": ok\n\n")) + sent
	waitUntil(t, "every client to receive every round", func() bool { return d.minBytes() == want })
}
