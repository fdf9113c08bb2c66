package main

import (
	"math"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"

	"github.com/tinysse/tinysse/engine"
)

// The Go runtime's soft memory limit while --max-history-bytes is on.
//
// History is long-lived data that a collection cannot shrink, and it is
// renewed as fast as messages are published: each publish past the budget
// turns the oldest message into garbage. With the default GOGC=100 the
// runtime lets the heap grow to twice what was live before it collects, so
// a full 256 MiB history costs 512 MiB and more (measured: 578 MiB peak
// RSS for issue 13's 40 topics × 256 × 60 KB at the default budget).
//
// paceGC sets the soft memory limit (debug.SetMemoryLimit) to
//
//	history budget + 2 × (live heap − history) + memory outside the heap + 64 MiB
//
// once a second: the rest of the heap keeps GOGC=100's room to grow, the
// history is counted once, and at least 64 MiB of garbage may pile up
// between collections. The limit is always above what is live, so the
// collector never runs back to back; it only collects sooner than GOGC
// would while the history is the bulk of the heap. Collections are cheap
// there: frames and strings hold no pointers, so marking the history is
// marking its Message structs. A GOMEMLIMIT set by the operator wins: then
// nothing is paced.

// gcSlack is the least garbage allowed between two collections.
const gcSlack = 64 << 20

// memoryLimit is the limit for a history budget, the live heap at the last
// collection, the history's bytes in it and the runtime's memory outside
// the heap (stacks, metadata).
func memoryLimit(budget, live, history, outside int64) int64 {
	return budget + 2*max(live-history, 0) + outside + gcSlack
}

// runtimeSamples are the runtime/metrics read by paceGC.
var runtimeSamples = []string{
	"/gc/heap/live:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/released:bytes",
}

// pacing is set while a paceGC runs: the limit is the process's, so one
// server per process sets it (tests run several in one).
var pacing atomic.Bool

// paceGC keeps the memory limit (see above) until stop closes, then lifts
// it. It runs on its own goroutine, started by run when the budget is on;
// it does nothing if a limit is already set (GOMEMLIMIT, or another server
// in this process).
func paceGC(eng *engine.Engine, budget int64, stop <-chan struct{}) {
	if !pacing.CompareAndSwap(false, true) {
		return
	}
	defer pacing.Store(false)
	if debug.SetMemoryLimit(-1) != math.MaxInt64 {
		return // the operator's GOMEMLIMIT
	}
	defer debug.SetMemoryLimit(math.MaxInt64)
	samples := make([]metrics.Sample, len(runtimeSamples))
	for i, name := range runtimeSamples {
		samples[i].Name = name
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		metrics.Read(samples)
		v := func(i int) int64 {
			if samples[i].Value.Kind() != metrics.KindUint64 {
				return 0
			}
			return int64(samples[i].Value.Uint64())
		}
		outside := v(1) - v(2) - v(3) - v(4) - v(5)
		debug.SetMemoryLimit(memoryLimit(budget, v(0), eng.HistoryBytes(), max(outside, 0)))
		select {
		case <-tick.C:
		case <-stop:
			return
		}
	}
}
