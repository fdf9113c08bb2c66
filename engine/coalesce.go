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

// maxWriteCoalesce bounds the window: a longer hold is a broken feed, not
// an optimisation, and it must stay far below the write timeout.
const maxWriteCoalesce = time.Second

// coalescer is the shard goroutine's hold timer, created on first use so
// that a shard without coalescing has none. Owned by the shard goroutine.
type coalescer struct {
	t *time.Timer
}

// wait holds the shard for WriteCoalesce after a wake-up (at once when it
// is 0). It returns false if stop was closed meanwhile.
func (c *coalescer) wait(s *shard, stop <-chan struct{}) bool {
	d := s.e.cfg.WriteCoalesce
	if d <= 0 {
		return true
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
		return false
	}
	// Publishes in the window left a wake-up behind. Their topics are on
	// the dirty list already (markDirty appends before it wakes, and we
	// take the wake-up before deliverDirty takes the list), so the pass
	// about to run delivers them: drop the wake-up instead of holding
	// again for nothing.
	select {
	case <-s.wake:
	default:
	}
	return true
}
