//go:build unix

package bench

import (
	"runtime"
	"testing"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/lua"
	"github.com/tinysse/tinysse/ops"
)

// trivialMessage is the hook the Lua benchmarks run per delivery.
const trivialMessage = `function message(pub, sub) return pub end`

// luaSubs are the subscriber counts of the message-hook benchmarks.
var luaSubs = []int{1000, 10000}

// BenchmarkLuaMessage measures deliveries through a trivial message hook:
// batched (a shard takes its VM once per pass, pub tables built once per
// message) against the naive per-call baseline (a VM lock and a fresh pub
// per delivery), with one VM and with one VM per shard. BenchmarkFanout is
// the same fan-out without any hook.
func BenchmarkLuaMessage(b *testing.B) {
	for _, m := range []struct {
		name      string
		unbatched bool
		vms       int  // 0: one per shard (--lua-vms auto)
		timed     bool // hooks wrapped by ops.HookStats, as with metrics on
	}{
		{"batched/vms=1", false, 1, false},
		{"percall/vms=1", true, 1, false},
		{"batched/vms=auto", false, 0, false},
		{"percall/vms=auto", true, 0, false},
		{"batched+timed/vms=1", false, 1, true},
	} {
		b.Run(m.name, func(b *testing.B) {
			bySize(b, "subs", luaSubs, func(b *testing.B, n int) {
				runFanout(b, n, luaDevNull(m.unbatched, m.vms, m.timed))
			})
		})
	}
}

// luaDevNull is the engine with a Lua message hook, over /dev/null
// subscribers (see nullSubscribers).
func luaDevNull(unbatched bool, vms int, timed bool) design {
	return func(b *testing.B, n int, t *tally) (func(), bool) {
		fds := devNulls(b)
		shards := runtime.GOMAXPROCS(0)
		if vms == 0 {
			vms = shards
		}
		rt, err := lua.Load(lua.Config{Source: []byte(trivialMessage), Script: "bench.lua",
			VMs: vms, Unbatched: unbatched, Logger: discard})
		if err != nil {
			b.Fatal(err)
		}
		if err := rt.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(rt.Close) // registered first, so it runs after the engine's close
		hooks := rt.Hooks()
		if timed {
			hooks = ops.NewHookStats().Wrap(hooks)
		}
		e := newEngine(b, engine.Config{Shards: shards, Hooks: hooks})
		conns := make([]*idleConn, n)
		for i := range conns {
			c := newIdleConn(false)
			conns[i] = c
			sub := &engine.Subscriber{}
			e.Assign(sub)
			if ok, err := hooks.Subscribe(sub); !ok || err != nil {
				b.Fatalf("subscribe hook: %v %v", ok, err)
			}
			st := engine.Stream{Conn: c, Raw: &nullRaw{fd: fds[i%len(fds)], t: t, member: i}, Close: c.Close}
			go func() { _ = e.Serve(sub, st) }()
		}
		waitIdle(b, e, conns)
		return publish(b, e), false
	}
}
