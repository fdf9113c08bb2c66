package lua

import (
	glua "github.com/yuin/gopher-lua"
)

// Size is about how many bytes the state of a published message holds, so
// that the engine's history budget counts it (engine.Sizer): the request,
// and the keys the publish hook added. It is called by the engine under its
// publish lock, after the publish hook returned, and takes no VM lock: a
// string key or value is counted exactly; a Lua table kept in the VM
// (extra, with one VM) is counted as extraValueSize, since walking it
// would need the VM. Copies made for other VMs (goExtra) are walked.
func (ps *pubState) Size() int {
	n := ps.req.Size()
	for k, v := range ps.extra {
		n += len(k) + extraValueSize
		if s, ok := v.(glua.LString); ok {
			n += len(s)
		}
	}
	for k, v := range ps.goExtra {
		n += len(k) + goSize(v, 0)
	}
	return n
}

// extraValueSize is what a value kept for a pub key is counted as besides
// its string bytes: the map entry and an interface.
const extraValueSize = 48

// goSize is about how many bytes a value copied out of Lua (toGo: strings,
// numbers, booleans, lists and maps of them, at most maxDepth deep) holds.
func goSize(v any, depth int) int {
	n := extraValueSize
	if depth > maxDepth {
		return n
	}
	switch x := v.(type) {
	case string:
		n += len(x)
	case []any:
		for _, e := range x {
			n += goSize(e, depth+1)
		}
	case map[string]any:
		for k, e := range x {
			n += len(k) + goSize(e, depth+1)
		}
	}
	return n
}
