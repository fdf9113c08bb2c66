package jsonobj

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// members decodes b with every member's raw value kept by name.
func members(b []byte) (map[string]json.RawMessage, []string, error) {
	got := map[string]json.RawMessage{}
	var order []string
	err := Decode(b, func(nb []byte) any {
		name := string(nb)
		order = append(order, name)
		got[name] = nil
		return &rawInto{name: name, m: got}
	})
	return got, order, err
}

// rawInto stores the raw value it is given under its name.
type rawInto struct {
	name string
	m    map[string]json.RawMessage
}

func (r *rawInto) UnmarshalJSON(b []byte) error {
	r.m[r.name] = append(json.RawMessage(nil), b...)
	return nil
}

func TestDecode(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string // the members as name=value, in order, or the error
	}{
		{`{}`, ``},
		{` { } `, ``},
		{`{"a":1}`, `a=1`},
		{"\t{ \"a\" :\n\"x\" , \"b\":[1,{\"c\":\"}\"}] ,\"d\":{\"e\":null}}\r\n", `a="x" b=[1,{"c":"}"}] d={"e":null}`},
		{`{"q":"a\"b\\","r":"\\\\","s":"\\\"}"}`, `q="a\"b\\" r="\\\\" s="\\\"}"`},
		{`{"a":true,"b":false,"c":null,"d":-1.5e3}`, `a=true b=false c=null d=-1.5e3`},
		{`{"d\u0061ta":"x"}`, `data="x"`},
		{`{"DATA":"x","Data":"y","data":"z"}`, `DATA="x" Data="y" data="z"`},
		{`{"":1}`, `=1`},
		{`{"a":1,"a":2}`, `member "a" given twice`},
		{`{"data":"x","d\u0061ta":"y"}`, `member "data" given twice`},
		{"{\"\xff\":1,\"\\ufffd\":2}", "member \"\ufffd\" given twice"}, // as encoding/json reads names
		{`{"a":{"x":1,"x":2}}`, `a={"x":1,"x":2}`},                      // nested objects are the target's business
		{``, `empty input`},
		{" \n", `empty input`},
		{`null`, `not a JSON object`},
		{`[]`, `not a JSON object`},
		{`"x"`, `not a JSON object`},
		{`1`, `not a JSON object`},
		{`{"a":1} {"b":2}`, `invalid character '{' after top-level value`},
		{`{"a":1}x`, `invalid character 'x' after top-level value`},
		{`{"a":1`, `unexpected end of JSON input`},
		{`{"a" 1}`, `invalid character '1' after object key`},
		{`{a:1}`, `invalid character 'a' looking for beginning of object key string`},
		{`{"a":1,}`, `invalid character '}' looking for beginning of object key string`},
		{`{"a":tru}`, `invalid character '}' in literal true (expecting 'e')`},
		{"{\"a\":\"\x01\"}", `invalid character '\x01' in string literal`},
	} {
		m, order, err := members([]byte(c.in))
		var got string
		if err != nil {
			got = strings.TrimPrefix(err.Error(), "jsonobj: ")
		} else {
			var parts []string
			for _, n := range order {
				parts = append(parts, n+"="+string(m[n]))
			}
			got = strings.Join(parts, " ")
		}
		if got != c.want {
			t.Errorf("Decode(%q): %s\nwant %s", c.in, got, c.want)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	err := Decode([]byte(`{"a":1,"b":2,"a":3}`), func([]byte) any { return nil })
	var dup *DuplicateError
	if !errors.As(err, &dup) || dup.Name != "a" {
		t.Errorf("duplicate: %v, want a *DuplicateError for a", err)
	}
	var s string
	err = Decode([]byte(`{"a":1}`), func([]byte) any { return &s })
	var fe *FieldError
	var te *json.UnmarshalTypeError
	if !errors.As(err, &fe) || fe.Name != "a" || !errors.As(err, &te) {
		t.Errorf("wrong type: %v, want a *FieldError for a wrapping a *json.UnmarshalTypeError", err)
	}
	var se *json.SyntaxError
	if err := Decode([]byte(`{"a":}`), func([]byte) any { return &s }); !errors.As(err, &se) {
		t.Errorf("syntax: %v, want a *json.SyntaxError", err)
	}
	if err := Decode([]byte(`[1]`), func([]byte) any { return &s }); !errors.Is(err, ErrNotObject) {
		t.Errorf("array: %v, want ErrNotObject", err)
	}
	if err := Decode(nil, func([]byte) any { return &s }); !errors.Is(err, ErrEmpty) {
		t.Errorf("nothing: %v, want ErrEmpty", err)
	}
	// Nothing is decoded from a body that is not valid JSON as a whole.
	s = "untouched"
	if err := Decode([]byte(`{"a":"x","b":`), func([]byte) any { return &s }); err == nil || s != "untouched" {
		t.Errorf("truncated: %v, s %q", err, s)
	}
}

// TestDecodeManyNames: past the short list of names seen, duplicates are
// still found (in the map), and many distinct names are fine.
func TestDecodeManyNames(t *testing.T) {
	var b strings.Builder
	b.WriteString("{")
	for i := range 1000 {
		fmt.Fprintf(&b, `"k%d":%d,`, i, i)
	}
	distinct := b.String()
	if _, _, err := members([]byte(strings.TrimSuffix(distinct, ",") + "}")); err != nil {
		t.Fatalf("1000 names: %v", err)
	}
	for _, again := range []string{"k0", "k7", "k8", "k999"} {
		_, _, err := members([]byte(distinct + `"` + again + `":0}`))
		var dup *DuplicateError
		if !errors.As(err, &dup) || dup.Name != again {
			t.Errorf("%s twice among 1001: %v", again, err)
		}
	}
}

// FuzzDecode judges Decode by encoding/json: what Decode accepts is an
// object encoding/json reads with the same members and values, and no name
// twice; what it refuses as a duplicate is an object that names one twice;
// what it refuses otherwise, encoding/json refuses too.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":1}`, `{"a":1,"a":2}`, `{"a":"\"","b":"\\"}`, `{"a":[{"b":"]"}]}`,
		`{"d\u0061ta":1,"data":2}`, `{"DATA":1,"data":2}`, `[]`, `null`, ``, `{"a":1}x`,
		`{"a":"\\\""}`, ` {"a" : { "b" : [ 1 , 2 ] } } `, "{\"\xff\":1}", `{"\ud800":1,"\udbff":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, order, err := members(b)
		var want map[string]json.RawMessage
		werr := json.Unmarshal(b, &want)
		var dup *DuplicateError
		switch {
		case err == nil:
			if werr != nil {
				t.Fatalf("Decode accepted %q, encoding/json: %v", b, werr)
			}
			if len(order) != len(want) || len(got) != len(want) {
				t.Fatalf("%q: members %q, encoding/json has %d", b, order, len(want))
			}
			for name, v := range want {
				if !bytes.Equal(compact(t, got[name]), compact(t, v)) {
					t.Fatalf("%q: member %q is %s, encoding/json says %s", b, name, got[name], v)
				}
			}
		case errors.As(err, &dup):
			if werr != nil {
				t.Fatalf("%q: duplicate %q, but encoding/json refuses it: %v", b, dup.Name, werr)
			}
			if n := countMembers(t, b); n <= len(want) {
				t.Fatalf("%q: duplicate %q, but %d members have %d names", b, dup.Name, n, len(want))
			}
		default:
			if werr == nil && want != nil {
				t.Fatalf("Decode refused %q (%v), encoding/json read it", b, err)
			}
		}
	})
}

func compact(t *testing.T, b []byte) []byte {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatalf("compact %q: %v", b, err)
	}
	return out.Bytes()
}

// countMembers counts the members of the object b with encoding/json's
// tokenizer, each name counted however often it appears.
func countMembers(t *testing.T, b []byte) int {
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for dec.More() {
		if _, err := dec.Token(); err != nil {
			t.Fatal(err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if _, err := dec.Token(); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return n
}

func TestArray(t *testing.T) {
	var got []string
	err := Array([]byte(` [ {"a":"1"} , 2,"x" ,[3], {"b":{"c":[1,2]}} ] `), func(i int, v []byte) error {
		got = append(got, fmt.Sprintf("%d=%s", i, v))
		return nil
	})
	want := `0={"a":"1"} 1=2 2="x" 3=[3] 4={"b":{"c":[1,2]}}`
	if err != nil || strings.Join(got, " ") != want {
		t.Fatalf("Array: %v %q, want %q", err, strings.Join(got, " "), want)
	}
	for _, bad := range []string{``, `  `, `{}`, `[1,]`, `[1] [2]`, `"["`} {
		called := false
		if err := Array([]byte(bad), func(int, []byte) error { called = true; return nil }); err == nil || called {
			t.Errorf("Array(%q): err %v, called %v", bad, err, called)
		}
	}
	if err := Array([]byte(`[]`), func(int, []byte) error { return errors.New("called") }); err != nil {
		t.Errorf("empty array: %v", err)
	}
	stop := errors.New("stop")
	n := 0
	if err := Array([]byte(`[1,2,3]`), func(int, []byte) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("stopping: %v after %d", err, n)
	}
	var v struct{ A string }
	if err := DecodeElement([]byte(`{"A":"x"}`), func(name []byte) any { return &v.A }); err != nil || v.A != "x" {
		t.Errorf("DecodeElement: %v %q", err, v.A)
	}
	if err := DecodeElement([]byte(`[1]`), func([]byte) any { return nil }); !errors.Is(err, ErrNotObject) {
		t.Errorf("DecodeElement of an array: %v", err)
	}
}

// validCases are inputs at the edges of JSON's grammar, each checked
// against json.Valid by TestValid and seeding FuzzValid.
var validCases = []string{
	``, ` `, `{}`, `[]`, ` { } `, `[ ]`, `{"a":1}`, `{"a" : [1, 2.5, -0.1e+3, 1E9, true, false, null, "x"]}`,
	`"\u00e9\n\"\\\/\b\f\r\t"`, `"\u00G0"`, `"\u12"`, `"\x"`, `"\`, `"abc`, "\"a\x01\"", "\"a\x7f\xff\xfe\"",
	`0`, `-0`, `01`, `-`, `1.`, `.5`, `1e`, `1e+`, `1.5e-07`, `+1`, `--1`, `1 2`, `1,`, `[1,]`, `[,1]`, `{"a":1,}`,
	`{"a"}`, `{"a":}`, `{1:2}`, `{"a":1 "b":2}`, `[1 2]`, `tru`, `true1`, `nul`, `nulll`, `falsey`, `[true,false,null]`,
	`{"a":{"b":{"c":[[[]]]}}}`, `[}`, `{]`, `]`, `}`, `[`, `{`, `{"a":1}}`, `[[1]]]`, "\ufeff{}", "{}\x00", "\t\r\n[\n]\r\n",
	strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth),
	strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1),
	strings.Repeat(`{"a":`, maxDepth) + "1" + strings.Repeat("}", maxDepth),
	strings.Repeat(`{"a":`, maxDepth) + "{}" + strings.Repeat("}", maxDepth),
	strings.Repeat("[", maxDepth-1) + "{}" + strings.Repeat("]", maxDepth-1),
}

// TestValid: valid says what json.Valid says at the grammar's edges,
// nesting limit included.
func TestValid(t *testing.T) {
	for _, c := range validCases {
		if got, want := valid([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("valid(%.60q) = %v, json.Valid says %v", c, got, want)
		}
	}
}

// FuzzValid: valid and json.Valid agree on any input.
func FuzzValid(f *testing.F) {
	for _, c := range validCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := valid(b), json.Valid(b); got != want {
			t.Fatalf("valid(%q) = %v, json.Valid says %v", b, got, want)
		}
	})
}

// BenchmarkValid: valid against json.Valid (the baseline it replaced) on
// a batch publish's body, 100 messages of 200 bytes of data.
func BenchmarkValid(b *testing.B) {
	var body bytes.Buffer
	body.WriteByte('[')
	for i := range 100 {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"id":"%d","event":"tick","topic":["prices"],"data":"%s"}`, i, strings.Repeat("x", 200))
	}
	body.WriteByte(']')
	in := body.Bytes()
	for _, c := range []struct {
		name string
		fn   func([]byte) bool
	}{{"valid", valid}, {"json.Valid", json.Valid}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if !c.fn(in) {
					b.Fatal("not valid")
				}
			}
		})
	}
}

// TestStrings: an array of strings (escapes decoded as encoding/json
// decodes them, invalid UTF-8 as U+FFFD), null as none, and anything else
// refused, a null element included.
func TestStrings(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		ok   bool
	}{
		{`["a","b"]`, []string{"a", "b"}, true},
		{` [ "a" , "\u00e9\n" ] `, []string{"a", "é\n"}, true},
		{"[\"\xff\"]", []string{"\uFFFD"}, true},
		{`[]`, []string{}, true},
		{`null`, nil, true},
		{` null `, nil, true},
		{`[null]`, nil, false},
		{`["a",null]`, nil, false},
		{`["a",1]`, nil, false},
		{`[["a"]]`, nil, false},
		{`"a"`, nil, false},
		{`{"a":"b"}`, nil, false},
		{`["a"`, nil, false},
		{`["a"] x`, nil, false},
		{``, nil, false},
	} {
		got, ok := Strings([]byte(c.in))
		if ok != c.ok || ok && (got == nil) != (c.want == nil) || fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("Strings(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
	for in, want := range map[string]string{`"a"`: "a", `"\"q\""`: `"q"`, `"\ud83d\ude00"`: "😀", "\"\xfe\"": "\uFFFD"} {
		if got, ok := String([]byte(in)); !ok || got != want {
			t.Errorf("String(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{`1`, `null`, `["a"]`, ``, `"`, `"abc`, `"a"b"`, `"a" `, "\"a\x01\"", `"\x"`, `"\u12"`, `"a\"`} {
		if got, ok := String([]byte(in)); ok {
			t.Errorf("String(%q) = %q, ok; want not a string", in, got)
		}
	}
}

// TestDecodeNilUnmarshaler: a field target that is a nil pointer to a
// json.Unmarshaler is json.Unmarshal's error (a FieldError), not a nil
// dereference. (Found by review.)
func TestDecodeNilUnmarshaler(t *testing.T) {
	err := Decode([]byte(`{"a":["x"]}`), func(name []byte) any { return (*StringList)(nil) })
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Name != "a" {
		t.Errorf("Decode into a nil *StringList: %v, want a FieldError for a", err)
	}
}

// TestPlainBytes: the word-at-a-time scan says what the byte table says,
// for every byte value at every place in and around a word.
func TestPlainBytes(t *testing.T) {
	for n := range 20 {
		for pos := range n {
			for c := range 256 {
				b := bytes.Repeat([]byte{'a'}, n)
				b[pos] = byte(c)
				if got, want := plainBytes(b), plainByte[c]; got != want {
					t.Fatalf("plainBytes(%q) = %v, want %v", b, got, want)
				}
			}
		}
	}
}
