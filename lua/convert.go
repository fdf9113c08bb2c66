package lua

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"

	"github.com/tinysse/tinysse/engine"
	glua "github.com/yuin/gopher-lua"
)

// maxDepth bounds the nesting of tables copied between Lua and Go.
const maxDepth = 32

// reqTable builds REQ: {method, path, uri, query, headers, addr = {ip, port},
// claims} (claims: the token's verified claims, when the built-in JWT check
// verified one).
func reqTable(L *glua.LState, r *engine.Request) *glua.LTable {
	t := L.CreateTable(0, 7)
	if r == nil {
		return t
	}
	t.RawSetString("method", glua.LString(r.Method))
	t.RawSetString("path", glua.LString(r.Path))
	t.RawSetString("uri", glua.LString(r.URI))
	t.RawSetString("query", glua.LString(r.Query))
	h := L.CreateTable(0, len(r.Headers))
	for k, v := range r.Headers {
		h.RawSetString(k, glua.LString(v))
	}
	t.RawSetString("headers", h)
	addr := L.CreateTable(0, 2)
	addr.RawSetString("ip", glua.LString(r.IP))
	addr.RawSetString("port", glua.LNumber(r.Port))
	t.RawSetString("addr", addr)
	if r.Claims != nil {
		t.RawSetString("claims", fromGo(L, r.Claims, 0))
	}
	return t
}

// msgTable builds {id=, event=, data=, comment={...}} with absent fields nil.
func msgTable(L *glua.LState, m *engine.Message) *glua.LTable {
	t := L.CreateTable(0, 4)
	if m.ID != "" {
		t.RawSetString("id", glua.LString(m.ID))
	}
	if m.Event != "" {
		t.RawSetString("event", glua.LString(m.Event))
	}
	if m.HasData {
		t.RawSetString("data", glua.LString(m.Data))
	}
	if len(m.Comments) > 0 {
		c := L.CreateTable(len(m.Comments), 0)
		for _, s := range m.Comments {
			c.Append(glua.LString(s))
		}
		t.RawSetString("comment", c)
	}
	return t
}

// readMsg reads a msg table (through metatables) into m's fields.
func readMsg(L *glua.LState, v glua.LValue, m *engine.Message) error {
	t, ok := v.(*glua.LTable)
	if !ok {
		return fmt.Errorf("%w: msg must be a table, not %s", engine.ErrInvalid, v.Type())
	}
	var err error
	m.ID, _, err = msgField(L, t, "id", err)
	m.Event, _, err = msgField(L, t, "event", err)
	m.Data, m.HasData, err = msgField(L, t, "data", err)
	m.Comments, err = stringList(L, L.GetField(t, "comment"), "msg.comment", err)
	return err
}

// msgField reads msg[name] as a string (numbers converted), keeping the
// first error met. A plain function, not a closure: it runs per delivery.
func msgField(L *glua.LState, t *glua.LTable, name string, prev error) (string, bool, error) {
	switch x := L.GetField(t, name).(type) {
	case glua.LString:
		return string(x), true, prev
	case glua.LNumber:
		return x.String(), true, prev
	case *glua.LNilType:
		return "", false, prev
	default:
		if prev == nil {
			prev = fmt.Errorf("%w: msg.%s must be a string, not %s", engine.ErrInvalid, name, x.Type())
		}
		return "", false, prev
	}
}

// stringList reads nil, a string or a list of strings.
func stringList(L *glua.LState, v glua.LValue, what string, prev error) ([]string, error) {
	if prev != nil {
		return nil, prev
	}
	switch x := v.(type) {
	case *glua.LNilType:
		return nil, nil
	case glua.LString:
		return []string{string(x)}, nil
	case *glua.LTable:
		n := x.Len()
		out := make([]string, 0, n)
		for i := 1; i <= n; i++ {
			switch e := L.GetTable(x, glua.LNumber(i)).(type) {
			case glua.LString:
				out = append(out, string(e))
			case glua.LNumber:
				out = append(out, e.String())
			default:
				return nil, fmt.Errorf("%w: %s must hold strings, not %s", engine.ErrInvalid, what, e.Type())
			}
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%w: %s must be a string or a list of strings, not %s", engine.ErrInvalid, what, v.Type())
	}
}

// maxCopy bounds how many values one toGo copy may make.
const maxCopy = 10000

// toGo copies a Lua value into Go values that another VM can rebuild:
// strings, float64, bool, []any, map[string]any. Functions, userdata and
// threads cannot cross VMs and are dropped. It refuses cycles, nesting
// deeper than maxDepth and more than maxCopy values: it runs in Go, where
// the script timeout cannot stop it.
func toGo(v glua.LValue) (any, error) {
	c := copier{left: maxCopy, onPath: make(map[*glua.LTable]bool)}
	return c.copy(v, 0)
}

type copier struct {
	left   int
	onPath map[*glua.LTable]bool // tables being copied, to refuse cycles
}

func (c *copier) copy(v glua.LValue, depth int) (any, error) {
	if c.left--; c.left < 0 {
		return nil, fmt.Errorf("more than %d values to copy", maxCopy)
	}
	switch x := v.(type) {
	case glua.LString:
		return string(x), nil
	case glua.LNumber:
		return float64(x), nil
	case glua.LBool:
		return bool(x), nil
	case *glua.LTable:
		if depth >= maxDepth {
			return nil, fmt.Errorf("tables nested deeper than %d", maxDepth)
		}
		if c.onPath[x] {
			return nil, errors.New("a table that contains itself")
		}
		c.onPath[x] = true
		defer delete(c.onPath, x)
		var err error
		if n := x.Len(); n > 0 {
			list := make([]any, 0, n)
			for i := 1; i <= n && err == nil; i++ {
				var e any
				e, err = c.copy(x.RawGetInt(i), depth+1)
				list = append(list, e)
			}
			return list, err
		}
		m := make(map[string]any)
		x.ForEach(func(k, val glua.LValue) {
			if err != nil {
				return
			}
			var g any
			if g, err = c.copy(val, depth+1); g != nil {
				m[k.String()] = g
			}
		})
		return m, err
	}
	return nil, nil
}

// fromGo builds the Lua value of a Go value.
func fromGo(L *glua.LState, v any, depth int) glua.LValue {
	switch x := v.(type) {
	case nil:
		return glua.LNil
	case glua.LValue:
		return x
	case string:
		return glua.LString(x)
	case bool:
		return glua.LBool(x)
	case int:
		return glua.LNumber(x)
	case int64:
		return glua.LNumber(x)
	case float64:
		return glua.LNumber(x)
	case []string:
		t := L.CreateTable(len(x), 0)
		for _, s := range x {
			t.Append(glua.LString(s))
		}
		return t
	case []any:
		t := L.CreateTable(len(x), 0)
		if depth < maxDepth {
			for _, e := range x {
				t.Append(fromGo(L, e, depth+1))
			}
		}
		return t
	case map[string]any:
		t := L.CreateTable(0, len(x))
		if depth < maxDepth {
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				t.RawSetString(k, fromGo(L, x[k], depth+1))
			}
		}
		return t
	}
	return glua.LString(fmt.Sprint(v))
}

// numberToMS reads a retry hint in milliseconds.
func numberToMS(v glua.LValue) (int64, bool) {
	switch x := v.(type) {
	case glua.LNumber:
		f := float64(x)
		if math.IsNaN(f) || f < 0 || f > math.MaxInt32 {
			return 0, false
		}
		return int64(f), true
	case glua.LString:
		n, err := strconv.ParseInt(string(x), 10, 64)
		return n, err == nil && n >= 0 && n <= math.MaxInt32 // the same bound as a number
	}
	return 0, false
}
