package lua

import (
	"encoding/binary"

	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tinysse/tinysse/engine"
	glua "github.com/yuin/gopher-lua"
)

// FuzzMessageTable: a message turned into the msg table hooks see and read
// back (readMsg) is the same message, whatever keys that differ only in
// case or spaces the table also holds (keys are matched exactly), and a table holding what HTTP would
// refuse is refused by Validate the same way.
// Seeds: testdata/fuzz/FuzzMessageTable and the ones below.
func FuzzMessageTable(f *testing.F) {
	f.Add("1", "e", "data", true, "c1\x1fc2")
	f.Add("", "", "", true, "")
	f.Add("", "", "", false, "only\ncomment")
	f.Add("a\nb", "e\r", "x", true, "")
	f.Add("\xff", "\x00", "\xed\xa0\x80", true, "\xff")
	f.Add(strings.Repeat("i", 257), "é", "multi\r\nline\rdata\n", true, "")
	f.Fuzz(func(t *testing.T, id, event, data string, hasData bool, comments string) {
		m := &engine.Message{ID: id, Event: event, Data: data, HasData: hasData}
		if comments != "" {
			m.Comments = strings.Split(comments, "\x1f")
		}
		if !hasData {
			m.Data = ""
		}
		L := glua.NewState(glua.Options{SkipOpenLibs: true})
		defer L.Close()
		var out engine.Message
		tbl := msgTable(L, m)
		// Keys are matched exactly: other spellings are not the fields.
		for _, k := range []string{"ID", "Id", "EVENT", "Event", "DATA", "Data", "COMMENT", "Comment", " data", "data "} {
			tbl.RawSetString(k, glua.LString("not "+k))
		}
		if err := readMsg(L, tbl, &out); err != nil {
			t.Fatalf("readMsg of msgTable(%+v): %v", m, err)
		}
		if out.ID != m.ID || out.Event != m.Event || out.Data != m.Data || out.HasData != m.HasData || !slices.Equal(out.Comments, m.Comments) {
			t.Fatalf("round trip %+v -> %+v", m, out)
		}
		if (m.Validate() == nil) != (out.Validate() == nil) {
			t.Fatalf("Validate disagrees: %v vs %v", m.Validate(), out.Validate())
		}
	})
}

// FuzzLuaValue builds a Lua value from the fuzzer's bytes (nested tables,
// strings, numbers, booleans, cycles) and copies it to Go and back, as a
// value crossing VMs through the shared package does. toGo must refuse
// cycles, deep nesting and huge values with an error instead of failing,
// and what it accepts must survive fromGo and toGo again unchanged.
// Seeds: testdata/fuzz/FuzzLuaValue and the ones below.
func FuzzLuaValue(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x00abc"))
	f.Add([]byte("\x02\x00abc\x01k\x05\x04\x03\x01x\x07\x00\x00\x00\x00\x00\x00\xf0\x3f"))
	f.Add([]byte("\x02\x06\x00"))                         // a table that holds itself
	f.Add([]byte(strings.Repeat("\x02", 40)))             // nesting deeper than maxDepth
	f.Add([]byte("\x07\xff\xff\xff\xff\xff\xff\xff\x7f")) // NaN
	f.Add([]byte("\x03\x01\x01\x02\x02\x03"))
	f.Fuzz(func(t *testing.T, ops []byte) {
		L := glua.NewState(glua.Options{SkipOpenLibs: true})
		defer L.Close()
		v := buildValue(L, ops)
		g, err := toGo(v)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without text")
			}
			return
		}
		again, err := toGo(fromGo(L, g, 0))
		if err != nil {
			t.Fatalf("toGo(fromGo(%v)): %v", g, err)
		}
		if !equalNaN(g, again) {
			t.Fatalf("round trip changed the value:\n%#v\n%#v", g, again)
		}
	})
}

// buildValue interprets ops as a little program that builds a table:
// 0 append a string, 1 set a numeric field, 2 open a nested list item,
// 3 open a nested field, 4 close, 5 append a boolean, 6 append a table
// already open (a cycle), 7 append a number from the next 8 bytes.
func buildValue(L *glua.LState, ops []byte) glua.LValue {
	root := L.NewTable()
	stack := []*glua.LTable{root}
	next := func(n int) []byte {
		if n > len(ops) {
			n = len(ops)
		}
		b := ops[:n]
		ops = ops[n:]
		return b
	}
	for len(ops) > 0 {
		op := next(1)[0]
		top := stack[len(stack)-1]
		switch op % 8 {
		case 0:
			top.Append(glua.LString(next(3)))
		case 1:
			k := next(1)
			if len(k) == 1 {
				top.RawSetString(string(k), glua.LNumber(float64(k[0])/3))
			}
		case 2, 3:
			t := L.NewTable()
			if op%8 == 2 {
				top.Append(t)
			} else {
				top.RawSetString("t"+string(rune('a'+len(stack))), t)
			}
			stack = append(stack, t)
		case 4:
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
		case 5:
			top.Append(glua.LBool(len(ops)%2 == 0))
		case 6:
			k := next(1)
			if len(k) == 1 {
				top.Append(stack[int(k[0])%len(stack)])
			}
		case 7:
			b := next(8)
			if len(b) == 8 {
				top.Append(glua.LNumber(math.Float64frombits(binary.LittleEndian.Uint64(b))))
			}
		}
	}
	return root
}

// equalNaN is reflect.DeepEqual with NaN equal to NaN.
func equalNaN(a, b any) bool {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		return ok && (x == y || math.IsNaN(x) && math.IsNaN(y))
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equalNaN(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if w, ok := y[k]; !ok || !equalNaN(v, w) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

// FuzzNumberToMS: a retry hint read from a hook is never negative and
// beyond 2^31-1 ms (about 24 days), whether it came as a number or as a
// string.
func FuzzNumberToMS(f *testing.F) {
	f.Add(1500.0, "1500")
	f.Add(-1.0, "-1")
	f.Add(math.NaN(), "NaN")
	f.Add(math.Inf(1), "99999999999999999999")
	f.Add(2.5, " 7")
	f.Add(0.0, "9999999999999")
	f.Fuzz(func(t *testing.T, n float64, s string) {
		for _, v := range []glua.LValue{glua.LNumber(n), glua.LString(s)} {
			ms, ok := numberToMS(v)
			if ok && (ms < 0 || ms > math.MaxInt32) {
				t.Fatalf("numberToMS(%v) = %d", v, ms)
			}
		}
	})
}
