package lua

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	glua "github.com/yuin/gopher-lua"
)

// The json package writes and reads JSON itself, so that a call can stop
// at the hook's limits. These fuzz targets hold it to encoding/json, which
// it used before: the same text for the same value, the same values (or
// the same error) for the same text.

// newJSONCodec is one VM's json package on a bare state, with no limits.
func newJSONCodec(t testing.TB) (*glua.LState, *jsonCodec, *budget) {
	L := glua.NewState(glua.Options{SkipOpenLibs: true})
	t.Cleanup(L.Close)
	c := &jsonCodec{null: L.NewUserData(), arrayMT: L.CreateTable(0, 1)}
	c.null.Value = jsonNullValue{}
	return L, c, &budget{L: L, max: math.MaxInt, left: pollEvery, what: "json"}
}

// FuzzJSONDecode: what decode accepts, encoding/json accepts, with the
// same values; what it refuses, encoding/json refuses (with the same
// message, but for nesting past 100, refused by both in their own words).
func FuzzJSONDecode(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5,"x",null,true,false,{}]}`, `[]`, `"\ud83d\ude00\ud800x\u00e9"`, "\"\xff\"", `1e400`, `-0`, `01`, `[1,]`, `{"a" 1}`, `tru`, `"\q"`, " [ 1 , 2 ] ", `{"a":1,"a":2}`, strings.Repeat("[", 101)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		L, c, b := newJSONCodec(t)
		got, err := c.decode(b, L, s)
		var want any
		wantErr := json.Unmarshal([]byte(s), &want)
		if wantErr == nil && jsonDepth(want) > jsonMaxDepth {
			wantErr = errors.New("too deep")
		}
		switch {
		case (err == nil) != (wantErr == nil):
			t.Fatalf("decode(%q): %v, encoding/json: %v", s, err, wantErr)
		case err != nil:
			if !strings.Contains(err.Error(), "nested deeper") && wantErr.Error() != "too deep" && err.Error() != wantErr.Error() &&
				!strings.Contains(wantErr.Error(), "exceeded max depth") {
				t.Fatalf("decode(%q): error %q, encoding/json %q", s, err, wantErr)
			}
		default:
			if g := luaToGo(c, got); !reflect.DeepEqual(g, want) {
				t.Fatalf("decode(%q) = %#v, encoding/json %#v", s, g, want)
			}
		}
	})
}

func jsonDepth(v any) int {
	d := 0
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			d = max(d, jsonDepth(e))
		}
		return d + 1
	case map[string]any:
		for _, e := range x {
			d = max(d, jsonDepth(e))
		}
		return d + 1
	}
	return 0
}

// luaToGo is a decoded value as encoding/json would have built it.
func luaToGo(c *jsonCodec, v glua.LValue) any {
	switch x := v.(type) {
	case glua.LString:
		return string(x)
	case glua.LNumber:
		return float64(x)
	case glua.LBool:
		return bool(x)
	case *glua.LUserData:
		return nil
	case *glua.LTable:
		if x.Metatable == c.arrayMT {
			list := []any{}
			for i := 1; i <= x.Len(); i++ {
				list = append(list, luaToGo(c, x.RawGetInt(i)))
			}
			return list
		}
		m := map[string]any{}
		x.ForEach(func(k, val glua.LValue) { m[k.String()] = luaToGo(c, val) })
		return m
	}
	return fmt.Sprintf("unexpected %T", v)
}

// FuzzJSONEncode: encode writes what encoding/json writes for the same
// value (plain and pretty), from values built by buildValue.
func FuzzJSONEncode(f *testing.F) {
	f.Add([]byte("\x02\x00abc\x01k\x05\x04\x03\x01x\x07\x00\x00\x00\x00\x00\x00\xf0\x3f"), false)
	f.Add([]byte("\x00\x1f\x00\xff\xe2\x80\xa8"), true)
	f.Add([]byte("\x03\x03\x04\x02\x04"), true)
	f.Fuzz(func(t *testing.T, ops []byte, pretty bool) {
		L, c, b := newJSONCodec(t)
		v := buildValue(L, ops)
		got, err := c.encode(b, v, pretty)
		want, ok := referenceJSON(v, pretty)
		if !ok {
			return // cycles, NaN: refused by both (checked by TestJSONEncode)
		}
		if err != nil || got != want {
			t.Fatalf("encode: %q %v\nencoding/json: %q", got, err, want)
		}
	})
}

// referenceJSON encodes v with encoding/json as the package did before it
// wrote JSON itself; false when that refused v.
func referenceJSON(v glua.LValue, pretty bool) (string, bool) {
	g, ok := referenceGo(v, 0, map[*glua.LTable]bool{})
	if !ok {
		return "", false
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if pretty {
		enc.SetIndent("", "  ")
	}
	if enc.Encode(g) != nil {
		return "", false
	}
	return strings.TrimSuffix(b.String(), "\n"), true
}

func referenceGo(v glua.LValue, depth int, onPath map[*glua.LTable]bool) (any, bool) {
	switch x := v.(type) {
	case *glua.LNilType:
		return nil, true
	case glua.LBool:
		return bool(x), true
	case glua.LString:
		return string(x), true
	case glua.LNumber:
		f := float64(x)
		return f, !math.IsNaN(f) && !math.IsInf(f, 0)
	case *glua.LTable:
		if depth >= jsonMaxDepth || onPath[x] {
			return nil, false
		}
		onPath[x] = true
		defer delete(onPath, x)
		n, maxIndex, indexOnly := 0, 0, true
		x.ForEach(func(k, _ glua.LValue) {
			n++
			if i, ok := arrayIndex(k); ok {
				maxIndex = max(maxIndex, i)
			} else {
				indexOnly = false
			}
		})
		ok := true
		if n > 0 && indexOnly && maxIndex == n {
			list := make([]any, n)
			for i := range list {
				list[i], ok = referenceGo(x.RawGetInt(i+1), depth+1, onPath)
				if !ok {
					return nil, false
				}
			}
			return list, true
		}
		m := map[string]any{}
		x.ForEach(func(k, val glua.LValue) {
			key := k.String()
			if num, isNum := k.(glua.LNumber); isNum {
				key = formatNumber(float64(num))
			}
			if _, dup := m[key]; dup {
				ok = false
			}
			var g any
			var gok bool
			if g, gok = referenceGo(val, depth+1, onPath); !gok {
				ok = false
			}
			m[key] = g
		})
		return m, ok
	}
	return nil, false
}
