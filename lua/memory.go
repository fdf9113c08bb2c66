package lua

import (
	"errors"
	"runtime/metrics"
	"time"
)

// ErrMemory is wrapped by the error of a hook stopped because the heap grew
// by more than Config.MaxMemory while it ran.
var ErrMemory = errors.New("lua: hook used too much memory")

// memoryPeriod is how often the watchdog looks at the heap when
// MaxMemory is set. gopher-lua has no allocation limit, and a script that
// doubles a string (s = s .. s) reaches gigabytes in a second; looking
// every 10ms stops it within a doubling or two of the allowance.
const memoryPeriod = 10 * time.Millisecond

// idlePeriod is how often the watchdog wakes while no hook runs. A hook
// that starts meanwhile is first seen up to this late: its timeout may
// come that much early, its heap is measured from then.
const idlePeriod = 100 * time.Millisecond

// heapReader reads the bytes of heap objects (live or not yet swept), a
// cheap reading that does not stop the world. Watchdog only.
type heapReader struct {
	sample [1]metrics.Sample
}

func (h *heapReader) bytes() uint64 {
	if h.sample[0].Name == "" {
		h.sample[0].Name = "/memory/classes/heap/objects:bytes"
	}
	metrics.Read(h.sample[:])
	if h.sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return h.sample[0].Value.Uint64()
}

// checkMemory stops every running hook under which the heap has grown by
// more than MaxMemory since the watchdog first saw it running. The heap is
// the process's, so a hook running while something else allocates may be
// stopped too: the allowance is meant to be far above what hooks and
// traffic allocate in one call. watchMu must be held.
func (rt *Runtime) checkMemory(h *heapReader) {
	var heap uint64
	for th := range rt.watching {
		s := th.started.Load()
		if s == 0 {
			continue
		}
		if heap == 0 {
			heap = h.bytes()
		}
		if th.seen != s {
			th.seen, th.heapAt = s, heap
			continue
		}
		if heap > th.heapAt && heap-th.heapAt > uint64(rt.cfg.MaxMemory) {
			th.overMem.Store(true)
			th.timedOut.Store(true)
			th.cancel()
		}
	}
}
