package lua

import "sync/atomic"

// errorCounts counts the errors of the hooks whose error the engine's hook
// seam does not return (message, timeout, unsubscribe, tick): publish,
// subscribe and catchup return theirs, so whoever wraps the seam counts
// those. Incremented where the error is logged, so never per successful
// delivery.
type errorCounts struct {
	message, timeout, unsubscribe, tick atomic.Uint64
}

// HookErrors returns how many calls of message, timeout, unsubscribe and
// tick failed (raised an error, timed out or returned a bad message), by
// hook name. Safe from any goroutine.
func (rt *Runtime) HookErrors() map[string]uint64 {
	return map[string]uint64{
		"message":     rt.errs.message.Load(),
		"timeout":     rt.errs.timeout.Load(),
		"unsubscribe": rt.errs.unsubscribe.Load(),
		"tick":        rt.errs.tick.Load(),
	}
}
