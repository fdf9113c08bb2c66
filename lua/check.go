package lua

import (
	"context"
	"errors"
	"fmt"
	"sort"
)

// Check runs the compiled script's main chunk in one VM, in the same
// sandbox the server would use, and returns the hooks it defines, sorted.
// Unlike Start it runs no startup or tick hook and starts no goroutine:
// it is what `tinysse --check` needs to tell a CI pipeline whether the
// script would load. The main chunk is stopped after the script timeout
// (default 5s; none when negative, as for hooks). Call it once, instead
// of Start.
func (rt *Runtime) Check() ([]string, error) {
	ctx := context.Background()
	if rt.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rt.cfg.Timeout)
		defer cancel()
	}
	rt.chunkCtx = ctx
	v, err := rt.newVM(0)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("lua: running %s: the main chunk did not finish within %v", rt.cfg.Script, rt.cfg.Timeout)
		}
		return nil, err
	}
	names := make([]string, 0, len(v.hooks))
	for name := range v.hooks {
		names = append(names, name)
	}
	sort.Strings(names)
	v.mu.Lock()
	for _, c := range v.closers {
		c()
	}
	v.main.Close()
	v.unlock()
	return names, nil
}
