package lua

import (
	"math"
	"slices"
	"strings"

	"github.com/tinysse/tinysse/engine"
	glua "github.com/yuin/gopher-lua"
)

// Bounds of what SubscriberKeys copies of one sub table: it runs in Go
// under the VM's lock, where the script timeout cannot stop it, and its
// answer goes into an HTTP response of up to 1,000 subscribers.
const (
	maxKeysBytes  = 4 << 10 // key names and strings, numbers and booleans at 8 bytes
	maxKeysValues = 256
	maxKeysDepth  = 8
)

// SubKeys is what SubscriberKeys found on one subscriber's sub table.
type SubKeys struct {
	// Values are the keys hooks set on sub, other than req and topics
	// (shown by the server API from the request and the engine): strings,
	// float64, bool, nil (a NaN or infinity), []any and map[string]any.
	// Functions, userdata and threads are left out. Nil when the
	// subscriber has no sub table (no script, or no hook that keeps one).
	Values map[string]any
	// Truncated: some keys were left out to stay within the bounds (4 KiB,
	// 256 values, 8 levels of nesting), the largest names last.
	Truncated bool
}

// SubscriberKeys returns the keys hooks attached to each of subs' sub
// tables, for the server API's presence list. Each table is read on its
// own VM under that VM's lock: the subscribers of one VM are read in one
// hold, and the VMs one after another, never two at once. No Lua code
// runs (tables are read raw, metatables ignored). Safe from any
// goroutine that holds no VM (and no shard lock: a shard pass takes its
// VM after its lock).
func (rt *Runtime) SubscriberKeys(subs []*engine.Subscriber) []SubKeys {
	out := make([]SubKeys, len(subs))
	byVM := make(map[*vm][]int)
	for i, sub := range subs {
		if st, ok := sub.State.(*subState); ok && st != nil {
			byVM[st.v] = append(byVM[st.v], i)
		}
	}
	for _, v := range rt.vms {
		idx := byVM[v]
		if len(idx) == 0 {
			continue
		}
		v.mu.Lock()
		for _, i := range idx {
			out[i] = subs[i].State.(*subState).keys()
		}
		v.mu.Unlock()
	}
	return out
}

// keys copies st's table within the bounds. st.v.mu must be held.
func (st *subState) keys() SubKeys {
	type key struct {
		name string
		val  glua.LValue
	}
	var ks []key
	out := SubKeys{}
	// Next walks in the order keys were added, so which keys a bound
	// leaves out depends on the table, not on Go's map order.
	for k, v := st.tbl.Next(glua.LNil); k != glua.LNil; k, v = st.tbl.Next(k) {
		if len(ks) == maxKeysValues {
			out.Truncated = true
			break
		}
		switch k.(type) {
		case glua.LString:
			if k == glua.LString("req") || k == glua.LString("topics") {
				continue
			}
		case glua.LNumber:
		default:
			continue // a table or boolean as a key: no JSON name for it
		}
		ks = append(ks, key{k.String(), v})
	}
	// Shortest names first, then in byte order: small keys are kept
	// before a large one.
	slices.SortFunc(ks, func(a, b key) int {
		if len(a.name) != len(b.name) {
			return len(a.name) - len(b.name)
		}
		return strings.Compare(a.name, b.name)
	})
	c := keyCopier{bytes: maxKeysBytes, values: maxKeysValues}
	out.Values = make(map[string]any, len(ks))
	for _, k := range ks {
		save := c
		c.bytes -= len(k.name)
		g, ok, keep := c.copy(k.val, 0)
		if !ok || c.bytes < 0 {
			c = save
			out.Truncated = true
			continue
		}
		if keep {
			out.Values[k.name] = g
		}
	}
	return out
}

// keyCopier copies Lua values to Go within a budget of bytes and values.
type keyCopier struct {
	bytes, values int
}

// copy returns v as a Go value; ok is false when it does not fit the
// budget, keep false when v is not data (a function) and is left out.
func (c *keyCopier) copy(v glua.LValue, depth int) (g any, ok, keep bool) {
	if c.values--; c.values < 0 {
		return nil, false, false
	}
	switch x := v.(type) {
	case glua.LString:
		if c.bytes -= len(x); c.bytes < 0 {
			return nil, false, false
		}
		return string(x), true, true
	case glua.LNumber:
		if c.bytes -= 8; c.bytes < 0 {
			return nil, false, false
		}
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, true, true // JSON has no such number
		}
		return f, true, true
	case glua.LBool:
		if c.bytes -= 8; c.bytes < 0 {
			return nil, false, false
		}
		return bool(x), true, true
	case *glua.LTable:
		if depth >= maxKeysDepth {
			return nil, false, false // deeper than allowed, or a table that contains itself
		}
		if n := x.Len(); n > 0 {
			list := make([]any, 0, min(n, maxKeysValues))
			for i := 1; i <= n; i++ {
				e, ok, keep := c.copy(x.RawGetInt(i), depth+1)
				if !ok {
					return nil, false, false
				}
				if !keep {
					e = nil // keep the positions of a list
				}
				list = append(list, e)
			}
			return list, true, true
		}
		m := make(map[string]any)
		for k, val := x.Next(glua.LNil); k != glua.LNil; k, val = x.Next(k) {
			name := k.String()
			c.bytes -= len(name)
			e, ok, keep := c.copy(val, depth+1) // counts a value: the walk ends within the budget
			if !ok || c.bytes < 0 {
				return nil, false, false
			}
			if keep {
				m[name] = e
			}
		}
		return m, true, true
	}
	return nil, true, false // functions, userdata, threads: not data
}
