package ops

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/tinysse/tinysse/engine"
)

// hookBuckets are the upper bounds (seconds) of the hook latency
// histograms: a Lua hook takes microseconds, one waiting on HTTP or
// SQLite up to the script timeout.
var hookBuckets = []float64{.00001, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// hookNames are the hooks timed through the engine's seam, in label order.
var hookNames = []string{"publish", "subscribe", "catchup", "message", "timeout", "unsubscribe"}

// HookStats times the calls made through an engine.Hooks. Build it with
// NewHookStats, wrap the hooks with Wrap before engine.New, and hand it to
// Metrics.
type HookStats struct {
	set   *metrics.Set
	hooks map[string]*hookStat // immutable after NewHookStats
	pool  sync.Pool            // *timedBatch
}

// hookStat is one hook's counts. calls and errors are atomics written by
// whichever goroutine ran the hook; the histogram locks internally.
type hookStat struct {
	calls   atomic.Uint64 // calls (message: deliveries it was asked about)
	errors  atomic.Uint64 // errors the seam returned (publish, subscribe, catchup)
	batches atomic.Uint64 // observations in hist (message: batches)
	nanos   atomic.Uint64 // their total duration, for the dashboard's averages
	hist    *metrics.PrometheusHistogram
}

// done counts n calls (one timed batch) that began at start and ended
// with err.
func (h *hookStat) done(start time.Time, n uint64, err error) {
	h.calls.Add(n)
	if err != nil {
		h.errors.Add(1)
	}
	d := time.Since(start)
	h.batches.Add(1)
	h.nanos.Add(uint64(d))
	h.hist.Update(d.Seconds())
}

// NewHookStats registers a latency histogram per hook in a set of its own.
func NewHookStats() *HookStats {
	hs := &HookStats{set: metrics.NewSet(), hooks: make(map[string]*hookStat)}
	for _, name := range hookNames {
		hs.hooks[name] = &hookStat{
			hist: hs.set.NewPrometheusHistogramExt(`tinysse_hook_duration_seconds{hook="`+name+`"}`, hookBuckets),
		}
	}
	hs.pool.New = func() any { return new(timedBatch) }
	return hs
}

// timedBatch wraps a script runtime's batch for one run of message calls:
// it is owned by the goroutine between EnterShard and LeaveShard, so n is
// a plain counter, added to the hook's atomics once per batch.
type timedBatch struct {
	inner any
	start time.Time
	n     uint64
}

// Wrap returns h with every defined hook timed and counted; undefined
// hooks stay nil, so the engine still skips them. The message hook is
// timed per batch (EnterShard to LeaveShard: how long the shard held the
// script's VM, its socket writes in that pass included), not per call.
func (hs *HookStats) Wrap(h engine.Hooks) engine.Hooks {
	return hs.wrap(h, func(string) bool { return true })
}

// WrapScript is Wrap for a script's hooks: only the hooks the script
// defines (lua.Runtime.Defined) are counted and timed. The runtime sets
// some engine seams for hooks it does not have (Subscribe when only
// unsubscribe or message is defined, to build the sub table; Publish for
// message's pub table); those stay as they are, uncounted, so that
// tinysse_hook_calls_total{hook="subscribe"} is not the number of
// subscribes to a script without a subscribe hook.
func (hs *HookStats) WrapScript(h engine.Hooks, defined []string) engine.Hooks {
	return hs.wrap(h, func(hook string) bool { return slices.Contains(defined, hook) })
}

// wrap is Wrap for the hooks counted says to count; the others stay as
// they are.
func (hs *HookStats) wrap(h engine.Hooks, counted func(hook string) bool) engine.Hooks {
	w := h
	if f := h.Publish; f != nil && counted("publish") {
		st := hs.hooks["publish"]
		w.Publish = func(r *engine.Request, m *engine.Message) (bool, error) {
			start := time.Now()
			ok, err := f(r, m)
			st.done(start, 1, err)
			return ok, err
		}
	}
	if f := h.Subscribe; f != nil && counted("subscribe") {
		st := hs.hooks["subscribe"]
		w.Subscribe = func(s *engine.Subscriber) (bool, error) {
			start := time.Now()
			ok, err := f(s)
			st.done(start, 1, err)
			return ok, err
		}
	}
	if f := h.Catchup; f != nil && counted("catchup") {
		st := hs.hooks["catchup"]
		w.Catchup = func(s *engine.Subscriber, id string, has bool) ([]*engine.Message, error) {
			start := time.Now()
			msgs, err := f(s, id, has)
			st.done(start, 1, err)
			return msgs, err
		}
	}
	if f := h.Timeout; f != nil && counted("timeout") {
		st := hs.hooks["timeout"]
		w.Timeout = func(s *engine.Subscriber, elapsed time.Duration) (time.Duration, bool) {
			start := time.Now()
			d, ok := f(s, elapsed)
			st.done(start, 1, nil)
			return d, ok
		}
	}
	if f := h.Unsubscribe; f != nil && counted("unsubscribe") {
		st := hs.hooks["unsubscribe"]
		w.Unsubscribe = func(s *engine.Subscriber) {
			start := time.Now()
			f(s)
			st.done(start, 1, nil)
		}
	}
	if h.Message == nil || !counted("message") {
		return w
	}
	if h.EnterShard != nil && h.LeaveShard != nil {
		msg, enter, leave := h.Message, h.EnterShard, h.LeaveShard
		st := hs.hooks["message"]
		w.EnterShard = func(shard int) any {
			tb := hs.pool.Get().(*timedBatch)
			tb.inner = enter(shard)
			tb.start, tb.n = time.Now(), 0
			return tb
		}
		w.Message = func(batch any, m *engine.Message, s *engine.Subscriber) []byte {
			tb := batch.(*timedBatch)
			tb.n++
			return msg(tb.inner, m, s)
		}
		w.LeaveShard = func(batch any) {
			tb := batch.(*timedBatch)
			leave(tb.inner)
			if tb.n > 0 { // a sweep with nothing to deliver is no batch
				st.done(tb.start, tb.n, nil)
			}
			tb.inner = nil
			hs.pool.Put(tb)
		}
	} else {
		// Without the batch brackets every call is its own batch.
		msg := h.Message
		st := hs.hooks["message"]
		w.Message = func(batch any, m *engine.Message, s *engine.Subscriber) []byte {
			start := time.Now()
			f := msg(batch, m, s)
			st.done(start, 1, nil)
			return f
		}
	}
	return w
}

// HookSnapshot is one hook's counts at one moment.
type HookSnapshot struct {
	Name    string  `json:"name"`
	Calls   uint64  `json:"calls"`   // message: deliveries it was called for
	Errors  uint64  `json:"errors"`  // including the runtime's own count
	Timed   uint64  `json:"timed"`   // observations (message: batches)
	Seconds float64 `json:"seconds"` // their total duration
}

// snapshot returns every hook's counts; errs adds the errors the seam
// does not return (lua.Runtime.HookErrors), keyed by hook name.
func (hs *HookStats) snapshot(errs map[string]uint64) []HookSnapshot {
	out := make([]HookSnapshot, 0, len(hookNames)+1)
	for _, name := range hookNames {
		st := hs.hooks[name]
		out = append(out, HookSnapshot{
			Name:    name,
			Calls:   st.calls.Load(),
			Errors:  st.errors.Load() + errs[name],
			Timed:   st.batches.Load(),
			Seconds: math.Round(float64(st.nanos.Load())/1e3) / 1e6,
		})
	}
	if n, ok := errs["tick"]; ok {
		out = append(out, HookSnapshot{Name: "tick", Errors: n})
	}
	return out
}
