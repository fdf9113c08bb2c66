package lua

import (
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	glua "github.com/yuin/gopher-lua"
)

// builtins are the packages require resolves without touching the host.
// Each opener runs once per VM (VM locked) and returns the module value.
var builtins = map[string]func(v *vm, L *glua.LState) glua.LValue{
	"uuid":   openUUID,
	"sleep":  openSleep,
	"shared": openShared,
}

func builtinNames() string {
	return strings.Join(slices.Sorted(maps.Keys(builtins)), ", ")
}

// callable makes t callable as fn: require "uuid" gives a table that is
// also uuid().
func callable(L *glua.LState, t *glua.LTable, fn glua.LGFunction) *glua.LTable {
	mt := L.CreateTable(0, 1)
	mt.RawSetString("__call", L.NewFunction(func(L *glua.LState) int {
		L.Remove(1) // the table itself
		return fn(L)
	}))
	L.SetMetatable(t, mt)
	return t
}

// sealedMeta is the metatable of a userdata kind that scripts see as
// name (tostring) and may neither read nor replace (__metatable false);
// methods, when not nil, is its __index.
func sealedMeta(L *glua.LState, name string, methods *glua.LTable) *glua.LTable {
	mt := L.CreateTable(0, 3)
	if methods != nil {
		mt.RawSetString("__index", methods)
	}
	mt.RawSetString("__tostring", L.NewFunction(func(L *glua.LState) int {
		L.Push(glua.LString(name))
		return 1
	}))
	mt.RawSetString("__metatable", glua.LFalse)
	return mt
}

// pushUserData pushes a new userdata holding value, with metatable mt, as
// a Go function's one result.
func pushUserData(L *glua.LState, value any, mt *glua.LTable) int {
	ud := L.NewUserData()
	ud.Value = value
	ud.Metatable = mt
	L.Push(ud)
	return 1
}

// uuid: uuid() and uuid.v4() give a random UUID, uuid.v7() a time-ordered one.
func openUUID(_ *vm, L *glua.LState) glua.LValue {
	v4 := func(L *glua.LState) int {
		L.Push(glua.LString(uuid.NewString()))
		return 1
	}
	t := L.CreateTable(0, 2)
	t.RawSetString("v4", L.NewFunction(v4))
	t.RawSetString("v7", L.NewFunction(func(L *glua.LState) int {
		id, err := uuid.NewV7()
		if err != nil {
			L.RaiseError("uuid.v7: %v", err)
		}
		L.Push(glua.LString(id.String()))
		return 1
	}))
	return callable(L, t, v4)
}

// sleep(ms) pauses the calling hook only: the VM is unlocked meanwhile.
// A hook stopped at --script-timeout while it sleeps wakes then.
func openSleep(v *vm, L *glua.LState) glua.LValue {
	return L.NewFunction(func(L *glua.LState) int {
		ms := L.CheckNumber(1)
		if ms <= 0 {
			return 0
		}
		b := v.budget(L, "sleep")
		d := time.Duration(min(float64(ms)*float64(time.Millisecond), math.MaxInt64))
		if b.deadline != 0 { // wake at the deadline rather than wait for the watchdog
			d = min(d, time.Duration(b.deadline-time.Now().UnixNano())+time.Millisecond)
		}
		v.wait(func() {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-b.done:
			}
		})
		b.poll()
		return 0
	})
}
