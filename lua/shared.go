package lua

import (
	"sort"
	"sync"
	"time"

	glua "github.com/yuin/gopher-lua"
)

// sharedDict is the `shared` package's store: one per Runtime, seen by
// every VM. Values are strings, numbers or booleans. Safe from any
// goroutine; its lock is a leaf (nothing is locked while it is held).
type sharedDict struct {
	mu sync.Mutex
	m  map[string]sharedEntry // guarded by mu
}

type sharedEntry struct {
	val     glua.LValue // LString, LNumber or LBool: immutable, safe across VMs
	expires time.Time   // zero: never
}

func (d *sharedDict) getLocked(k string, now time.Time) (glua.LValue, bool) {
	e, ok := d.m[k]
	if !ok {
		return glua.LNil, false
	}
	if !e.expires.IsZero() && !now.Before(e.expires) {
		delete(d.m, k)
		return glua.LNil, false
	}
	return e.val, true
}

func (d *sharedDict) setLocked(k string, v glua.LValue, ttlMS float64, now time.Time) {
	e := sharedEntry{val: v}
	if ttlMS > 0 {
		e.expires = now.Add(time.Duration(ttlMS * float64(time.Millisecond)))
	}
	d.m[k] = e
}

func sharedValue(L *glua.LState, n int) glua.LValue {
	switch v := L.Get(n).(type) {
	case glua.LString, glua.LNumber, glua.LBool:
		return v
	default:
		L.ArgError(n, "shared values are strings, numbers or booleans (encode tables with json)")
		return glua.LNil
	}
}

// openShared: get, set(k, v, ttl_ms?), add(k, v, ttl_ms?) -> stored,
// incr(k, by, init?) -> n, delete(k), keys().
func openShared(v *vm, L *glua.LState) glua.LValue {
	d := v.rt.shared()
	t := L.CreateTable(0, 6)
	fn := func(name string, f glua.LGFunction) { t.RawSetString(name, L.NewFunction(f)) }
	fn("get", func(L *glua.LState) int {
		k := L.CheckString(1)
		d.mu.Lock()
		val, _ := d.getLocked(k, time.Now())
		d.mu.Unlock()
		L.Push(val)
		return 1
	})
	fn("set", func(L *glua.LState) int {
		k := L.CheckString(1)
		if L.Get(2) == glua.LNil {
			d.mu.Lock()
			delete(d.m, k)
			d.mu.Unlock()
			return 0
		}
		val, ttl := sharedValue(L, 2), float64(L.OptNumber(3, 0))
		d.mu.Lock()
		d.setLocked(k, val, ttl, time.Now())
		d.mu.Unlock()
		return 0
	})
	fn("add", func(L *glua.LState) int {
		k := L.CheckString(1)
		val, ttl := sharedValue(L, 2), float64(L.OptNumber(3, 0))
		now := time.Now()
		d.mu.Lock()
		_, exists := d.getLocked(k, now)
		if !exists {
			d.setLocked(k, val, ttl, now)
		}
		d.mu.Unlock()
		L.Push(glua.LBool(!exists))
		return 1
	})
	fn("incr", func(L *glua.LState) int {
		k := L.CheckString(1)
		by := L.OptNumber(2, 1)
		init := L.OptNumber(3, 0)
		now := time.Now()
		d.mu.Lock()
		cur, ok := d.getLocked(k, now)
		n := init
		if ok {
			num, isNum := cur.(glua.LNumber)
			if !isNum {
				d.mu.Unlock()
				L.RaiseError("shared.incr: %q holds a %s, not a number", k, cur.Type())
				return 0
			}
			n = num
		}
		n += by
		e := d.m[k]
		e.val = n
		d.m[k] = e // keeps the expiry of a live key
		d.mu.Unlock()
		L.Push(n)
		return 1
	})
	fn("delete", func(L *glua.LState) int {
		k := L.CheckString(1)
		d.mu.Lock()
		delete(d.m, k)
		d.mu.Unlock()
		return 0
	})
	fn("keys", func(L *glua.LState) int {
		now := time.Now()
		d.mu.Lock()
		keys := make([]string, 0, len(d.m))
		for k := range d.m {
			if _, ok := d.getLocked(k, now); ok {
				keys = append(keys, k)
			}
		}
		d.mu.Unlock()
		sort.Strings(keys)
		list := L.CreateTable(len(keys), 0)
		for _, k := range keys {
			list.Append(glua.LString(k))
		}
		L.Push(list)
		return 1
	})
	return t
}
