package engine

import "time"

// Write coalescing (Config.WriteCoalesce, --write-coalesce).
//
// Without it a shard runs its delivery pass as soon as a publish wakes it:
// at a steady rate each message costs one writev per subscriber. With it
// the shard, once woken, waits WriteCoalesce before the pass; messages
// published in that window are appended to their rings and only mark their
// topics dirty, so the pass gathers all of them and each subscriber gets
// them in one writev. Fewer system calls and wake-ups, paid for with up to
// WriteCoalesce of added latency (the first message of a window waits the
// whole window, the last hardly at all). Order is unchanged: the pass
// reads each ring in order, as it always does.
//
// The default (WriteCoalesce 0) is adaptive, and looks at the last pass:
//
//   - It wrote more than one message to a subscriber at once, or a
//     publish arrived while the shard held before it: messages come
//     faster than passes, so the shard is busy.
//     The next pass starts a gap after the last one ended, the gap being
//     the last pass's duration but no less than AdaptiveCoalesceMin and no
//     more than AdaptiveCoalesceMax, so that it carries what arrives
//     meanwhile.
//   - Otherwise, woken within the last pass's duration of its end, the
//     shard waits that long (at most AdaptiveCoalesceMax): the original
//     rule of this hold, for a wake-up that just missed the pass.
//   - Otherwise it delivers at once. A publisher that waits for each
//     message before it sends the next (request and answer over SSE)
//     never has two messages in one pass nor publishes during a hold, so
//     the gap never holds it (TestCoalesceOneAtATime).
//
// A message waits at most AdaptiveCoalesceMax, and under load most wait
// less: the wait runs from the last pass's end, not from the wake-up. It
// buys fewer system calls where they matter: a delivery's CPU is the
// kernel's writev and the reader's wake-up, not the engine (profiles in
// BENCHMARKS.md). Measured: scenario 2 (500 subscribers, 1,000 msg/s), CPU
// per delivery 0.70x and a third of the p99 with the second rule alone;
// single publishes to 10 subscribers, 1.2-1.3x the publishes/s with the
// first. Negative WriteCoalesce turns it off (--write-coalesce off), the
// baseline beside it.

// AdaptiveCoalesceMin and AdaptiveCoalesceMax bound the adaptive gap
// between a busy shard's passes.
const (
	AdaptiveCoalesceMin = time.Millisecond
	AdaptiveCoalesceMax = 2 * time.Millisecond
)

// holdFor is how long a shard woken at now waits before its pass, given
// the window set (WriteCoalesce), when its last pass ended, how long it
// took (zero before the first) and whether it found the shard busy.
func holdFor(window time.Duration, now, lastEnd time.Time, lastDur time.Duration, busy bool) time.Duration {
	switch since := now.Sub(lastEnd); {
	case window > 0:
		return window
	case window < 0 || lastDur <= 0:
		return 0
	case busy:
		return max(0, min(max(lastDur, AdaptiveCoalesceMin), AdaptiveCoalesceMax)-since)
	case since < lastDur:
		return min(lastDur, AdaptiveCoalesceMax)
	}
	return 0
}

// maxWriteCoalesce bounds the window: a longer hold is a broken feed, not
// an optimisation, and it must stay far below the write timeout.
const maxWriteCoalesce = time.Second

// coalescer is the shard goroutine's hold timer, created on first use so
// that a shard that never waits has none. Owned by the shard goroutine.
type coalescer struct {
	t *time.Timer
}

// wait holds the shard after a wake-up for holdFor's time (often none).
// ok is false if stop was closed meanwhile; published says a publish
// arrived during the hold.
func (c *coalescer) wait(s *shard, stop <-chan struct{}) (published, ok bool) {
	d := holdFor(s.e.cfg.WriteCoalesce, time.Now(), s.passEnd, s.passDur, s.passBusy)
	if d <= 0 {
		return false, true
	}
	if c.t == nil {
		c.t = time.NewTimer(d)
	} else {
		c.t.Reset(d) // fired and drained by the last wait: no stale tick (Go 1.23 timers)
	}
	select {
	case <-c.t.C:
	case <-stop:
		c.t.Stop()
		return false, false
	}
	// Publishes in the window left a wake-up behind. Their topics are on
	// the dirty list already (markDirty appends before it wakes, and we
	// take the wake-up before deliverDirty takes the list), so the pass
	// about to run delivers them: drop the wake-up instead of holding
	// again for nothing.
	select {
	case <-s.wake:
		return true, true
	default:
		return false, true
	}
}
