package lua

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	glua "github.com/yuin/gopher-lua"
)

func init() { builtins["json"] = openJSON }

// jsonMaxDepth bounds the nesting json.encode and json.decode accept.
const jsonMaxDepth = 100

// jsonNullValue is what json.null's userdata holds: decoding null gives
// json.null, and encoding any userdata holding it gives null.
type jsonNullValue struct{}

// jsonCodec is one VM's json package: its null sentinel and the metatable
// that marks a table as a JSON array. Used only with the VM locked.
type jsonCodec struct {
	null    *glua.LUserData
	arrayMT *glua.LTable
}

// json: encode(v, pretty?), decode(s), json(v) = encode, array(t?), null,
// print(v), pprint(v).
//
// Encoding: a table whose keys are exactly 1..n is an array, an empty
// plain table is {} (an object), a table made by json.array() (or decoded
// from a JSON array) is always an array, even when empty; other tables are
// objects with their keys (strings, or numbers written as strings) sorted.
// Integral numbers are written without a fraction (3, not 3.0); NaN and
// infinities, functions, cycles and nesting deeper than 100 are errors.
func openJSON(v *vm, L *glua.LState) glua.LValue {
	c := &jsonCodec{null: L.NewUserData(), arrayMT: L.CreateTable(0, 1)}
	c.null.Value = jsonNullValue{}
	nullMT := L.CreateTable(0, 2)
	nullMT.RawSetString("__tostring", L.NewFunction(func(L *glua.LState) int {
		L.Push(glua.LString("null"))
		return 1
	}))
	nullMT.RawSetString("__name", glua.LString("json.null"))
	c.null.Metatable = nullMT
	c.arrayMT.RawSetString("__name", glua.LString("json.array"))

	encode := func(L *glua.LState) int {
		s, err := c.encode(L.Get(1), L.OptBool(2, false))
		if err != nil {
			L.RaiseError("json.encode: %v", err)
		}
		L.Push(glua.LString(s))
		return 1
	}
	printer := func(pretty bool) glua.LGFunction {
		return func(L *glua.LState) int {
			s, err := c.encode(L.Get(1), pretty)
			if err != nil {
				L.RaiseError("json: %v", err)
			}
			_, _ = io.WriteString(v.rt.cfg.Stdout, s+"\n")
			return 0
		}
	}

	t := L.CreateTable(0, 6)
	t.RawSetString("null", c.null)
	t.RawSetString("encode", L.NewFunction(encode))
	t.RawSetString("decode", L.NewFunction(func(L *glua.LState) int {
		val, err := c.decode(L, L.CheckString(1))
		if err != nil {
			L.RaiseError("json.decode: %v", err)
		}
		L.Push(val)
		return 1
	}))
	t.RawSetString("array", L.NewFunction(func(L *glua.LState) int {
		arr := L.OptTable(1, nil)
		if arr == nil {
			arr = L.CreateTable(0, 0)
		} else if mt := L.GetMetatable(arr); mt != glua.LNil && mt != c.arrayMT {
			L.ArgError(1, "table already has a metatable")
		}
		L.SetMetatable(arr, c.arrayMT)
		L.Push(arr)
		return 1
	}))
	t.RawSetString("print", L.NewFunction(printer(false)))
	t.RawSetString("pprint", L.NewFunction(printer(true)))
	return callable(L, t, encode)
}

// encode writes val as JSON, indented by two spaces when pretty.
func (c *jsonCodec) encode(val glua.LValue, pretty bool) (string, error) {
	e := jsonEncoder{c: c, onPath: make(map[*glua.LTable]bool)}
	g, err := e.toGo(val, 0)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if pretty {
		enc.SetIndent("", "  ")
	}
	if err := enc.Encode(g); err != nil {
		return "", err
	}
	return string(bytes.TrimSuffix(b.Bytes(), []byte("\n"))), nil
}

// jsonEncoder turns Lua values into values encoding/json writes as
// wanted: map[string]any (sorted keys), []any, float64, string, bool, nil.
type jsonEncoder struct {
	c      *jsonCodec
	onPath map[*glua.LTable]bool // tables being encoded, to refuse cycles
}

func (e *jsonEncoder) toGo(val glua.LValue, depth int) (any, error) {
	switch x := val.(type) {
	case *glua.LNilType:
		return nil, nil
	case glua.LBool:
		return bool(x), nil
	case glua.LString:
		return string(x), nil
	case glua.LNumber:
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("cannot encode %v", f)
		}
		return f, nil
	case *glua.LUserData:
		if _, ok := x.Value.(jsonNullValue); ok {
			return nil, nil
		}
		return nil, errors.New("cannot encode a userdata")
	case *glua.LTable:
		if depth >= jsonMaxDepth {
			return nil, fmt.Errorf("tables nested deeper than %d", jsonMaxDepth)
		}
		if e.onPath[x] {
			return nil, errors.New("cannot encode a table that contains itself")
		}
		e.onPath[x] = true
		defer delete(e.onPath, x)
		return e.table(x, depth)
	}
	return nil, fmt.Errorf("cannot encode a %s", val.Type())
}

// table encodes t as an array when it is marked as one or its keys are
// exactly 1..n, else as an object.
func (e *jsonEncoder) table(t *glua.LTable, depth int) (any, error) {
	marked := t.Metatable == e.c.arrayMT
	n, maxIndex, indexOnly := 0, 0, true
	t.ForEach(func(k, _ glua.LValue) {
		n++
		if i, ok := arrayIndex(k); ok {
			maxIndex = max(maxIndex, i)
		} else {
			indexOnly = false
		}
	})
	switch {
	case marked && !indexOnly:
		return nil, errors.New("a json.array() has a key that is not a positive integer")
	case marked || (n > 0 && indexOnly && maxIndex == n):
		if maxIndex > 2*n+16 {
			return nil, fmt.Errorf("a json.array() with %d values up to index %d is too sparse", n, maxIndex)
		}
		list := make([]any, maxIndex)
		for i := range list {
			g, err := e.toGo(t.RawGetInt(i+1), depth+1) // a hole in a json.array() is null
			if err != nil {
				return nil, inPath(fmt.Sprintf("[%d]", i+1), err)
			}
			list[i] = g
		}
		return list, nil
	}
	obj := make(map[string]any, n)
	var err error
	t.ForEach(func(k, val glua.LValue) {
		if err != nil {
			return
		}
		var key string
		switch kx := k.(type) {
		case glua.LString:
			key = string(kx)
		case glua.LNumber:
			key = formatNumber(float64(kx))
		default:
			err = fmt.Errorf("cannot encode a %s key (object keys are strings or numbers)", k.Type())
			return
		}
		if _, dup := obj[key]; dup {
			err = fmt.Errorf("key %q appears both as a string and as a number", key)
			return
		}
		if obj[key], err = e.toGo(val, depth+1); err != nil {
			err = inPath(key, err)
		}
	})
	if err != nil {
		return nil, err
	}
	return obj, nil
}

// jsonPathError says where in the value being encoded err happened.
type jsonPathError struct {
	path string // like a.b[2].c
	err  error
}

func (e *jsonPathError) Error() string { return e.path + ": " + e.err.Error() }
func (e *jsonPathError) Unwrap() error { return e.err }

// inPath prefixes err's path with step (a key, or [i] for an index).
func inPath(step string, err error) error {
	var pe *jsonPathError
	if errors.As(err, &pe) {
		if !strings.HasPrefix(pe.path, "[") {
			step += "."
		}
		pe.path = step + pe.path
		return pe
	}
	return &jsonPathError{path: step, err: err}
}

// arrayIndex reports whether k is a positive integer key.
func arrayIndex(k glua.LValue) (int, bool) {
	f, ok := k.(glua.LNumber)
	if !ok || f < 1 || f > math.MaxInt32 || float64(f) != math.Trunc(float64(f)) {
		return 0, false
	}
	return int(f), true
}

// formatNumber writes f as Lua would print it, with integral values
// without a fraction.
func formatNumber(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e21 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// decode parses s into Lua values: objects become plain tables, arrays
// tables marked as arrays (so they encode as arrays again, even empty),
// null json.null.
func (c *jsonCodec) decode(L *glua.LState, s string) (glua.LValue, error) {
	var g any
	if err := json.Unmarshal([]byte(s), &g); err != nil {
		return glua.LNil, err
	}
	return c.fromGo(L, g, 0)
}

func (c *jsonCodec) fromGo(L *glua.LState, g any, depth int) (glua.LValue, error) {
	switch x := g.(type) {
	case nil:
		return c.null, nil
	case bool:
		return glua.LBool(x), nil
	case float64:
		return glua.LNumber(x), nil
	case string:
		return glua.LString(x), nil
	case []any:
		if depth >= jsonMaxDepth {
			return glua.LNil, fmt.Errorf("nested deeper than %d", jsonMaxDepth)
		}
		t := L.CreateTable(len(x), 0)
		for _, e := range x {
			val, err := c.fromGo(L, e, depth+1)
			if err != nil {
				return glua.LNil, err
			}
			t.Append(val)
		}
		t.Metatable = c.arrayMT
		return t, nil
	case map[string]any:
		if depth >= jsonMaxDepth {
			return glua.LNil, fmt.Errorf("nested deeper than %d", jsonMaxDepth)
		}
		t := L.CreateTable(0, len(x))
		for k, e := range x {
			val, err := c.fromGo(L, e, depth+1)
			if err != nil {
				return glua.LNil, err
			}
			t.RawSetString(k, val)
		}
		return t, nil
	}
	return glua.LNil, fmt.Errorf("unexpected %T", g)
}
