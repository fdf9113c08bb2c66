package engine

import (
	"strconv"
	"sync/atomic"
	"testing"
)

func TestDeliverLongBacklogKeepsOwnership(t *testing.T) {
	// A subscriber with more than maxBatch messages pending is delivered
	// in several writes within one pass; the shard must own it (stShard)
	// the whole time, or its own goroutine could take it in between.
	const pending = 2*maxBatch + 100
	var calls, notOwned atomic.Int64
	cfg := Config{Shards: 1, Capacity: 4096, KeepAlive: -1}
	cfg.Hooks.Message = func(_ any, m *Message, s *Subscriber) []byte {
		calls.Add(1)
		if s.state.Load() != stShard {
			notOwned.Add(1)
		}
		return m.Frame
	}
	e := stillEngine(t, cfg)
	d := subscribeDrained(t, e, 1)
	tp := e.acquire("")
	var sent int64
	for _, m := range prebuilt(pending) {
		appendLocked(e, m, tp)
		sent += int64(len(m.Frame))
	}
	deliverRound(e.shards[0], tp)
	if calls.Load() != pending {
		t.Fatalf("the Message hook ran %d times, want %d", calls.Load(), pending)
	}
	if n := notOwned.Load(); n != 0 {
		t.Fatalf("%d of %d frames were gathered while the shard did not own the subscriber", n, pending)
	}
	sub := d.subs[0]
	if st := sub.state.Load(); st != stIdle && st != stSelf {
		t.Fatalf("state %d after the pass", st)
	}
	want := int64(len(": ok\n\n")) + sent
	if sub.state.Load() == stIdle {
		waitUntil(t, "the client to receive everything", func() bool { return d.minBytes() == want })
	}
}

func TestAllocsPerDeliveryOfABurst(t *testing.T) {
	// A subscriber that finds more frames pending than the shard's scratch
	// slice holds (64) must not cost an allocation per pass either.
	const burst, runs = 100, 50
	e := stillEngine(t, Config{Shards: 1, Capacity: 4096, KeepAlive: -1})
	d := subscribeDrained(t, e, 10)
	s := e.shards[0]
	tp := e.acquire("")
	msgs := prebuilt(burst * (runs + 5))
	next := 0
	round := func() {
		for range burst {
			appendLocked(e, msgs[next], tp)
			next++
		}
		deliverRound(s, tp)
	}
	round()
	spare := stillEngine(t, Config{Shards: 1, Capacity: 4096})
	st := spare.acquire("")
	appendOnly := testing.AllocsPerRun(runs, func() {
		for range burst {
			appendLocked(spare, msgs[0], st)
		}
	})
	both := testing.AllocsPerRun(runs, round)
	for _, sub := range d.subs {
		if sub.state.Load() != stIdle {
			t.Skip("a subscriber's socket filled up: the burst took the slow path, nothing to measure")
		}
	}
	if perRound := both - appendOnly; perRound != 0 {
		t.Fatal("BUG: engine/shard.go deliver passes s.frames[:0] (cap 64) to gather and never keeps the grown slice, " +
			"so every pass that finds more than 64 frames for a subscriber allocates a new slice (" +
			strconv.FormatFloat(perRound, 'f', -1, 64) + " allocations per round of 10 subscribers); fix: s.frames = frames[:0] after use")
	}
}

func TestShardHookBrackets(t *testing.T) {
	// Message runs only inside an EnterShard/LeaveShard bracket of the
	// subscriber's own shard, with that bracket's batch.
	type bracket struct {
		shard int
		open  atomic.Bool
	}
	var bad atomic.Int64
	var enters, leaves, messages atomic.Int64
	cfg := Config{Shards: 2, KeepAlive: -1}
	cfg.Hooks.EnterShard = func(shard int) any {
		enters.Add(1)
		b := &bracket{shard: shard}
		b.open.Store(true)
		return b
	}
	cfg.Hooks.LeaveShard = func(batch any) {
		leaves.Add(1)
		if b, ok := batch.(*bracket); !ok || !b.open.Swap(false) {
			bad.Add(1)
		}
	}
	cfg.Hooks.Message = func(batch any, m *Message, s *Subscriber) []byte {
		messages.Add(1)
		if b, ok := batch.(*bracket); !ok || !b.open.Load() || b.shard != s.Shard() {
			bad.Add(1)
		}
		return m.Frame
	}
	e := stillEngine(t, cfg)
	d := subscribeDrained(t, e, 4)
	for i, sub := range d.subs {
		if sub.Shard() != int(sub.ID%2) {
			t.Errorf("subscriber %d (id %d) is on shard %d", i, sub.ID, sub.Shard())
		}
	}
	tp := e.acquire("")
	for _, m := range prebuilt(5) {
		appendLocked(e, m, tp)
		for _, s := range e.shards {
			deliverRound(s, tp)
		}
	}
	if messages.Load() != 20 {
		t.Errorf("Message ran %d times, want 20", messages.Load())
	}
	if bad.Load() != 0 || enters.Load() != leaves.Load() {
		t.Errorf("%d calls outside their bracket; %d enters, %d leaves", bad.Load(), enters.Load(), leaves.Load())
	}
}

func TestAssignBeforeServe(t *testing.T) {
	e := stillEngine(t, Config{Shards: 3})
	sub := &Subscriber{}
	e.Assign(sub)
	id, shard, start := sub.ID, sub.Shard(), sub.Start
	e.Assign(sub) // a second Assign changes nothing
	if sub.ID != id || sub.Shard() != shard || !sub.Start.Equal(start) || id == 0 || start.IsZero() {
		t.Fatalf("Assign: id %d→%d shard %d→%d start %v→%v", id, sub.ID, shard, sub.Shard(), start, sub.Start)
	}
}
