package engine

import (
	"strconv"
	"sync/atomic"
	"testing"
)

func TestDeliverLongBacklogKeepsOwnership(t *testing.T) {
	// A subscriber with more than maxBatch messages pending gets maxBatch
	// per pass, and its topic is marked dirty again so that the next pass
	// goes on; the shard owns it (stShard) whenever it gathers, or its own
	// goroutine could take it in between.
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
	sub := d.subs[0]
	tp := e.acquire("")
	var sent int64
	for _, m := range prebuilt(pending) {
		appendLocked(e, m, tp)
		sent += int64(len(m.Frame))
	}
	s := e.shards[0]
	deliverRound(s, tp)
	if calls.Load() != maxBatch {
		t.Fatalf("the first pass ran the Message hook %d times, want maxBatch (%d)", calls.Load(), maxBatch)
	}
	for passes := 1; sub.state.Load() == stIdle && calls.Load() < pending; passes++ {
		if passes > 3 {
			t.Fatalf("after %d passes the hook ran %d times of %d", passes, calls.Load(), pending)
		}
		select {
		case <-s.wake: // the pass that stopped at maxBatch asked for another
		default:
			t.Fatalf("after %d frames the shard was not woken for the rest", calls.Load())
		}
		s.deliverDirty()
	}
	if n := notOwned.Load(); n != 0 {
		t.Fatalf("%d of %d frames were gathered while the shard did not own the subscriber", n, calls.Load())
	}
	if st := sub.state.Load(); st != stIdle && st != stSelf {
		t.Fatalf("state %d after the passes", st)
	}
	want := int64(len(": ok\n\n")) + sent
	if sub.state.Load() == stIdle {
		if calls.Load() != pending {
			t.Fatalf("the hook ran %d times, want %d", calls.Load(), pending)
		}
		waitUntil(t, "the client to receive everything", func() bool { return d.minBytes() == want })
	}
}

func TestGatherPassBytesBound(t *testing.T) {
	// However much a subscriber has pending, one gather (so one pass, and
	// one step of its goroutine's catch-up) takes at most maxPassBytes and
	// one frame; the rest stays behind its cursor for the next.
	e := stillEngine(t, Config{Shards: 1, Capacity: 256, KeepAlive: -1})
	tp := e.acquire("")
	sub := &Subscriber{e: e, shard: e.shards[0], cursors: make([]cursor, 1)}
	sub.cursors[0].t = tp
	const n = 40
	for i := range n {
		m := &Message{ID: strconv.Itoa(i), Data: string(make([]byte, 30<<10)), HasData: true}
		m.Frame = AppendFrame(nil, m)
		appendLocked(e, m, tp)
	}
	total := 0
	for step := 1; total < n; step++ {
		frames, got, lapped := sub.gather(nil, maxBatch, maxPassBytes, nil)
		if lapped || len(frames) == 0 {
			t.Fatalf("step %d: %d frames, lapped %v", step, len(frames), lapped)
		}
		sum := 0
		for _, f := range frames {
			sum += len(f)
		}
		last := len(frames[len(frames)-1])
		if sum != got || got-last >= maxPassBytes || total+len(frames) < n && got < maxPassBytes {
			t.Fatalf("step %d: %d frames, %d bytes (said %d): want just past maxPassBytes (%d)", step, len(frames), sum, got, maxPassBytes)
		}
		total += len(frames)
		if c := sub.cursors[0].next.Load(); c != uint64(total) {
			t.Fatalf("step %d: cursor %d after %d frames", step, c, total)
		}
	}
	// Messages a Message hook skips count for nothing.
	skipper := stillEngine(t, Config{Shards: 1, Capacity: 256, KeepAlive: -1,
		Hooks: Hooks{Message: func(_ any, m *Message, _ *Subscriber) []byte {
			if id, _ := strconv.Atoi(m.ID); id%2 == 1 {
				return nil
			}
			return m.Frame
		}}})
	st := skipper.acquire("")
	skipSub := &Subscriber{e: skipper, shard: skipper.shards[0], cursors: make([]cursor, 1)}
	skipSub.cursors[0].t = st
	for i := range 8 {
		m := &Message{ID: strconv.Itoa(i), Data: "x", HasData: true}
		m.Frame = AppendFrame(nil, m)
		appendLocked(skipper, m, st)
	}
	frames, got, _ := skipSub.gather(nil, maxBatch, maxPassBytes, nil)
	if sum := len(frames) * len(frames[0]); len(frames) != 4 || got != sum {
		t.Fatalf("with every other message skipped: %d frames, %d bytes counted, want 4 and %d", len(frames), got, sum)
	}

	// A frame larger than the bound still goes, alone.
	huge := &Message{ID: "huge", Data: string(make([]byte, 2*maxPassBytes)), HasData: true}
	huge.Frame = AppendFrame(nil, huge)
	appendLocked(e, huge, tp)
	appendLocked(e, huge, tp)
	if frames, _, _ := sub.gather(nil, maxBatch, maxPassBytes, nil); len(frames) != 1 {
		t.Fatalf("%d frames over the bound in one gather, want 1", len(frames))
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
