package lua

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	glua "github.com/yuin/gopher-lua"
)

// maxStringRep bounds what string.rep may build: gopher-lua cannot
// interrupt a Go built-in, so a huge count would allocate until the
// process dies.
const maxStringRep = 16 << 20

// vm is one Lua global state and its pool of threads.
type vm struct {
	rt  *Runtime
	idx int

	// mu is held while Lua runs on main or any thread of this VM, and
	// guards every field below. A built-in that waits releases it (see
	// wait) and takes it back before Lua runs again.
	mu     sync.Mutex
	main   *glua.LState
	free   []*thread                  // idle threads
	loaded map[string]glua.LValue     // require cache
	hooks  map[string]*glua.LFunction // hook functions as the script defined them
	// message is hooks["message"], looked up once: it runs per delivery.
	message *glua.LFunction
	spare   []*batch // idle batches, reused
	// closers release what packages hold outside Lua (HTTP agents' idle
	// connections, databases); Runtime.Close runs them.
	closers []func()
	// running is the thread whose hook runs Lua now (nil between calls,
	// in the main chunk and while its hook waits): the built-ins' budget
	// stops it when a call would build more than --script-memory.
	running *thread
}

// thread is one LState sharing the VM's globals, with its own stack and
// its own context, which the watchdog cancels when a call overruns.
type thread struct {
	L      *glua.LState
	cancel context.CancelFunc
	// started is the watchdog clock when the current call began, 0 when
	// idle. Written by the caller (VM locked), read by the watchdog.
	started  atomic.Int64
	timedOut atomic.Bool // set by the watchdog; the thread is then discarded
	// deadline is when the current call reaches the timeout, in unix
	// nanoseconds (0: no timeout, or idle). Written by the caller (VM
	// locked), read by built-ins on the same goroutine (budget).
	deadline int64
	overMem  atomic.Bool // set with timedOut when it was stopped for memory

	// Watchdog only (under Runtime.watchMu): the call it last saw running
	// and the heap then.
	seen   int64
	heapAt uint64
}

func (rt *Runtime) newVM(idx int) (*vm, error) {
	v := &vm{rt: rt, idx: idx, loaded: make(map[string]glua.LValue)}
	L := glua.NewState(glua.Options{
		SkipOpenLibs:    true,
		CallStackSize:   256,
		RegistrySize:    1024,
		RegistryMaxSize: 1 << 20,
		// The default step (32) copies the registry on every 32 pushes:
		// unpack or string.byte of 1e5 values took seconds, VM locked.
		RegistryGrowStep:    1 << 14,
		MinimizeStackMemory: true,
	})
	v.main = L
	if err := v.openLibs(); err != nil {
		L.Close()
		return nil, err
	}
	// The main chunk runs with the VM locked like any hook: a top-level
	// sqlite.open or sleep waits through vm.wait, which unlocks it.
	v.mu.Lock()
	if rt.chunkCtx != nil {
		L.SetContext(rt.chunkCtx) // Check bounds the main chunk's run
	}
	L.Push(L.NewFunctionFromProto(rt.proto))
	err := L.PCall(0, 0, nil)
	if rt.chunkCtx != nil {
		L.RemoveContext()
	}
	v.unlock()
	if err != nil {
		L.Close()
		return nil, fmt.Errorf("lua: running %s: %w", rt.cfg.Script, hookError(err))
	}
	v.hooks = make(map[string]*glua.LFunction)
	for _, name := range hookNames {
		if fn, ok := L.GetGlobal(name).(*glua.LFunction); ok {
			v.hooks[name] = fn
		}
	}
	v.message = v.hooks["message"]
	return v, nil
}

func (v *vm) openLibs() error {
	L := v.main
	libs := []struct {
		name string
		open glua.LGFunction
	}{
		{glua.BaseLibName, glua.OpenBase},
		{glua.TabLibName, glua.OpenTable},
		{glua.StringLibName, glua.OpenString},
		{glua.MathLibName, glua.OpenMath},
		{glua.CoroutineLibName, glua.OpenCoroutine},
	}
	if v.rt.cfg.Unsafe {
		libs = append(libs,
			struct {
				name string
				open glua.LGFunction
			}{glua.LoadLibName, glua.OpenPackage},
			struct {
				name string
				open glua.LGFunction
			}{glua.OsLibName, glua.OpenOs},
			struct {
				name string
				open glua.LGFunction
			}{glua.IoLibName, glua.OpenIo},
		)
	}
	for _, lib := range libs {
		L.Push(L.NewFunction(lib.open))
		L.Push(glua.LString(lib.name))
		if err := L.PCall(1, 0, nil); err != nil {
			return fmt.Errorf("lua: opening %s: %w", lib.name, err)
		}
	}
	if !v.rt.cfg.Unsafe {
		for _, name := range []string{"dofile", "loadfile", "collectgarbage", "module"} {
			L.SetGlobal(name, glua.LNil)
		}
	}
	var fallback glua.LValue = glua.LNil
	if v.rt.cfg.Unsafe {
		fallback = L.GetGlobal("require")
	}
	L.SetGlobal("require", L.NewFunction(func(L *glua.LState) int { return v.require(L, fallback) }))
	L.SetGlobal("print", L.NewFunction(v.print))
	v.openLimitedLibs()
	L.SetGlobal("unpack", L.NewFunction(unpack))
	return nil
}

// require resolves the built-in packages, and with --unsafe-script falls
// back to Lua's own module loading.
func (v *vm) require(L *glua.LState, fallback glua.LValue) int {
	name := L.CheckString(1)
	if mod, ok := v.loaded[name]; ok {
		L.Push(mod)
		return 1
	}
	if open, ok := builtins[name]; ok {
		mod := open(v, L)
		v.loaded[name] = mod
		L.Push(mod)
		return 1
	}
	if fn, ok := fallback.(*glua.LFunction); ok {
		L.Push(fn)
		L.Push(glua.LString(name))
		L.Call(1, 1)
		return 1
	}
	L.RaiseError("module %q not found (built-in packages: %s; other modules need --unsafe-script)", name, builtinNames())
	return 0
}

// print writes its arguments, tab-separated, to the configured output.
func (v *vm) print(L *glua.LState) int {
	var b strings.Builder
	for i := 1; i <= L.GetTop(); i++ {
		if i > 1 {
			b.WriteByte('\t')
		}
		b.WriteString(L.ToStringMeta(L.Get(i)).String())
	}
	b.WriteByte('\n')
	_, _ = io.WriteString(v.rt.cfg.Stdout, b.String())
	return 0
}

// maxUnpack is how many values unpack returns at most (PUC Lua's
// LUAI_MAXCSTACK is of the same order).
const maxUnpack = 8000

// unpack is Lua's unpack(list, i, j), refusing more than maxUnpack values.
func unpack(L *glua.LState) int {
	t := L.CheckTable(1)
	i := L.OptInt(2, 1)
	j := L.OptInt(3, t.Len())
	if i > j {
		return 0
	}
	if int64(j)-int64(i) >= maxUnpack {
		L.RaiseError("unpack: too many results (%d, at most %d)", int64(j)-int64(i)+1, maxUnpack)
	}
	for k := i; k <= j; k++ {
		L.Push(t.RawGetInt(k))
	}
	return j - i + 1
}

// thread returns an idle thread. mu must be held.
func (v *vm) thread() *thread {
	if n := len(v.free); n > 0 {
		t := v.free[n-1]
		v.free = v.free[:n-1]
		return t
	}
	L, _ := v.main.NewThread()
	ctx, cancel := context.WithCancel(context.Background())
	L.SetContext(ctx)
	t := &thread{L: L, cancel: cancel}
	v.rt.watch(t)
	return t
}

// release returns t to the pool, or drops it when the watchdog stopped
// it (its context is cancelled for good). mu must be held.
func (v *vm) release(t *thread) {
	if t.timedOut.Load() {
		v.rt.unwatch(t)
		t.cancel()
		return
	}
	t.L.SetTop(0)
	v.free = append(v.free, t)
}

// call runs fn(args...) on t and returns its first result. An error in
// the script, or running past the script timeout, is returned with the
// script's file and line. mu must be held.
func (v *vm) call(t *thread, hook string, fn *glua.LFunction, args ...glua.LValue) (glua.LValue, error) {
	L := t.L
	top := L.GetTop()
	v.running = t
	if v.rt.cfg.Timeout > 0 {
		t.deadline = time.Now().UnixNano() + int64(v.rt.cfg.Timeout)
	}
	t.started.Store(v.rt.clock.Load())
	err := L.CallByParam(glua.P{Fn: fn, NRet: 1, Protect: true}, args...)
	t.started.Store(0)
	v.running = nil
	if err != nil {
		L.SetTop(top)
		if t.timedOut.Load() { // overMem is set with it
			return glua.LNil, v.limitError(t, hook, err)
		}
		return glua.LNil, hookError(err)
	}
	ret := L.Get(-1)
	L.SetTop(top)
	return ret, nil
}

// unlock releases v and wakes the publishers waiting for any free VM
// (lockAnyVM). Every unlock of vm.mu goes through it.
func (v *vm) unlock() {
	v.mu.Unlock()
	if v.rt.vmWaiters.Load() > 0 {
		v.rt.freeMu.Lock()
		v.rt.vmFree.Broadcast()
		v.rt.freeMu.Unlock()
	}
}

// wait runs block with the VM unlocked, so that other hooks run while this
// one waits. Built-ins that sleep or do I/O call it; Lua must not run
// during block.
func (v *vm) wait(block func()) {
	running := v.running
	v.running = nil
	v.unlock()
	block()
	v.mu.Lock()
	v.running = running
}
