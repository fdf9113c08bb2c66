package lua

import (
	"errors"

	glua "github.com/yuin/gopher-lua"
)

func init() { builtins["mutex"] = openMutex }

// luaMutex is one lock made by mutex(). Hooks of one VM run one at a time
// already; a lock matters when fn waits (sleep, http) and so lets other
// hooks of its VM run meanwhile. It guards Lua values, which belong to one
// VM: use shared for what several VMs see.
type luaMutex struct {
	// sem holds a token while the lock is held. A channel rather than a
	// sync.Mutex so that a hook waiting for it can give up when its call
	// is stopped by the script timeout.
	sem chan struct{}
	// owner is the thread running fn, to refuse a recursive lock (which
	// would wait forever). Read and written only with the VM locked.
	owner *glua.LState
}

// mutex() -> lock; lock(fn, ...) runs fn(...) alone and returns all that
// fn returns. An error in fn releases the lock and is raised again. A hook
// waiting for the lock unlocks the VM meanwhile, so the holder, which may
// itself be waiting in sleep or http, can finish.
func openMutex(v *vm, L *glua.LState) glua.LValue {
	mt := L.CreateTable(0, 2)
	mt.RawSetString("__name", glua.LString("mutex"))
	mt.RawSetString("__call", L.NewFunction(func(L *glua.LState) int {
		ud := L.CheckUserData(1)
		m, ok := ud.Value.(*luaMutex)
		if !ok {
			L.ArgError(1, "mutex expected")
		}
		fn := L.CheckFunction(2)
		return m.run(v, L, fn)
	}))
	newLock := func(L *glua.LState) int {
		return pushUserData(L, &luaMutex{sem: make(chan struct{}, 1)}, mt)
	}
	return callable(L, L.CreateTable(0, 0), newLock)
}

// run calls fn with the arguments after it (stack: lock, fn, args...)
// holding m, and returns fn's results. The VM is locked.
func (m *luaMutex) run(v *vm, L *glua.LState, fn *glua.LFunction) int {
	if m.owner == L {
		L.RaiseError("mutex: this hook already holds the lock (a recursive lock would wait forever)")
	}
	if err := m.acquire(v, L); err != nil {
		L.RaiseError("mutex: %v", err)
	}
	m.owner = L
	top := L.GetTop()
	L.Push(fn)
	for i := 3; i <= top; i++ {
		L.Push(L.Get(i))
	}
	err := L.PCall(top-2, glua.MultRet, nil)
	m.owner = nil
	<-m.sem
	if err != nil {
		var ae *glua.ApiError
		if errors.As(err, &ae) {
			L.Error(ae.Object, 0)
		}
		L.RaiseError("%v", err)
	}
	return L.GetTop() - top
}

// acquire takes m's token, waiting with the VM unlocked when another hook
// holds it. It fails when the calling hook is stopped meanwhile.
func (m *luaMutex) acquire(v *vm, L *glua.LState) error {
	select {
	case m.sem <- struct{}{}:
		return nil
	default:
	}
	var done <-chan struct{}
	if ctx := L.Context(); ctx != nil {
		done = ctx.Done()
	}
	acquired := false
	v.wait(func() {
		select {
		case m.sem <- struct{}{}:
			acquired = true
		case <-done:
		}
	})
	if !acquired {
		return errors.New("stopped while waiting for the lock")
	}
	return nil
}
