// Package jsonobj reads a JSON object whose member names are matched
// exactly and given at most once: the rule for every publish message
// tinysse decodes from JSON (HTTP bodies in transport, JetStream payloads
// in cluster). encoding/json alone matches a struct's field names without
// regard to case ("DATA" fills Data) and lets the last of two equal names
// win, so that two readers of one body (a proxy, a script, the server) can
// disagree about what it says.
//
// Decode checks the whole input first (valid: what json.Valid reports, in
// one faster pass), walks the object's members on the checked bytes, and hands each member's value to
// json.Unmarshal (a plain string straight to its string). Safe from any goroutine; it keeps no state.
package jsonobj

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"unicode/utf8"
)

// Errors Decode returns for input that is not one JSON object. Syntax
// errors are encoding/json's *json.SyntaxError.
var (
	ErrEmpty     = errors.New("jsonobj: empty input")
	ErrNotObject = errors.New("jsonobj: not a JSON object")
)

// DuplicateError says that the object names a member twice.
type DuplicateError struct {
	Name string
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("jsonobj: member %q given twice", e.Name)
}

// FieldError says that a member's value does not decode into the target
// the caller gave for it.
type FieldError struct {
	Name string
	Err  error // from json.Unmarshal or the target's UnmarshalJSON
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("jsonobj: member %q: %v", e.Name, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

// Decode reads b, which must be exactly one JSON object (whitespace around
// it allowed), member by member. For each member, field is called with its
// name (escapes decoded, nothing else changed: the caller compares it as
// it is, typically switch string(name); the bytes are valid only during
// the call) and returns where to decode the value, a pointer as for
// json.Unmarshal, or nil to skip the member. A name that appears twice is
// a *DuplicateError, whether or not field knows it; a value that does not
// decode into its target is a *FieldError. Nothing is decoded unless all
// of b is valid JSON.
func Decode(b []byte, field func(name []byte) any) error {
	i, err := start(b)
	if err != nil {
		return err
	}
	if b[i] != '{' {
		return ErrNotObject
	}
	return decodeObject(b, i, field)
}

// decodeObject is Decode on b, known to be valid JSON, from its '{' at i.
func decodeObject(b []byte, i int, field func(name []byte) any) error {
	// b is known to be one valid JSON value: the walk below only finds
	// where each name and value ends.
	var seen names
	i = skipSpace(b, i+1)
	if b[i] == '}' {
		return nil
	}
	for {
		end := stringEnd(b, i)
		name, err := decodeName(b[i:end])
		if err != nil {
			return err
		}
		if !seen.add(name) {
			return &DuplicateError{Name: string(name)}
		}
		i = skipSpace(b, skipSpace(b, end)+1) // past the ':'
		end = valueEnd(b, i)
		if target := field(name); target != nil {
			if err := unmarshal(b[i:end], target); err != nil {
				return &FieldError{Name: string(name), Err: err}
			}
		}
		i = skipSpace(b, end)
		if b[i] == '}' {
			return nil
		}
		i = skipSpace(b, i+1) // past the ','
	}
}

// unmarshal is json.Unmarshal(v, target), with short cuts for what a
// message's members decode into: a string without escapes into a string
// (json.Unmarshal would scan v once more to check it; Decode has), and a
// json.Unmarshaler called directly (json.Unmarshal would check v again,
// then call it with the same bytes).
func unmarshal(v []byte, target any) error {
	switch t := target.(type) {
	case *string:
		if s, ok := plainString(v); ok {
			*t = s
			return nil
		}
	case **string:
		if s, ok := plainString(v); ok {
			*t = &s
			return nil
		}
	case json.Unmarshaler:
		if p := reflect.ValueOf(t); p.Kind() != reflect.Pointer || !p.IsNil() {
			return t.UnmarshalJSON(v)
		}
		// A nil pointer: json.Unmarshal's error, not a nil dereference.
	}
	return json.Unmarshal(v, target)
}

// String returns the string a JSON value v stands for (a member's or an
// element's bytes, as a json.Unmarshaler is handed them); ok is false if
// v is not exactly one JSON string.
func String(v []byte) (s string, ok bool) {
	if s, ok := plainString(v); ok {
		return s, true
	}
	if n := len(v); n < 2 || v[0] != '"' || v[n-1] != '"' {
		return "", false // not a string, or something after it
	}
	var u string // escapes (json.Unmarshal takes its address): only here
	if err := json.Unmarshal(v, &u); err != nil {
		return "", false // json.Unmarshal checks what plainString did not
	}
	return u, true
}

// Strings reads b, one JSON array of strings (whitespace around it
// allowed); null is none (nil, true). An element that is not a string,
// null included (encoding/json would read it as ""), makes ok false, as
// does anything but an array or null.
func Strings(b []byte) (ss []string, ok bool) {
	i, err := start(b)
	if err != nil {
		return nil, false
	}
	if b[i] == 'n' {
		return nil, true // null: start checked that b is one value
	}
	if b[i] != '[' {
		return nil, false
	}
	ss = []string{}
	err = elements(b, i, func(_ int, v []byte) error {
		s, ok := String(v)
		if !ok {
			return ErrNotArray
		}
		ss = append(ss, s)
		return nil
	})
	if err != nil {
		return nil, false
	}
	return ss, true
}

// StringList is a []string read from a JSON list of strings by Strings'
// rule: null is none; an element that is not a string (null included),
// or anything but a list, is an error.
type StringList []string

func (l *StringList) UnmarshalJSON(b []byte) error {
	ss, ok := Strings(b)
	if !ok {
		return errors.New("must be a list of strings")
	}
	*l = ss
	return nil
}

// plainString returns the string a JSON string literal v stands for when
// that is its bytes between the quotes: nothing escaped, no control
// character, valid UTF-8 (json.Unmarshal turns invalid UTF-8 into
// U+FFFD). One pass, and safe on unchecked input: anything else is
// (nil, false).
func plainString(v []byte) (string, bool) {
	n := len(v)
	if n < 2 || v[0] != '"' || v[n-1] != '"' {
		return "", false
	}
	if !plainBytes(v[1:n-1]) || !utf8.Valid(v) {
		return "", false
	}
	return string(v[1 : n-1]), true
}

// plainBytes reports whether every byte of b is a plainByte (eight at a
// time, plainWord).
func plainBytes(b []byte) bool {
	for ; len(b) >= 8; b = b[8:] {
		if !plainWord(binary.LittleEndian.Uint64(b)) {
			return false
		}
	}
	for _, c := range b {
		if !plainByte[c] {
			return false
		}
	}
	return true
}

// names is the set of member names seen so far: a short list for the few
// members a message has, a map once a body lists many.
type names struct {
	list [namesListMax][]byte // the first n names (no slice into itself, so a names stays on its caller's stack)
	n    int
	set  map[string]struct{}
}

const namesListMax = 8

func (n *names) add(name []byte) bool {
	if n.set != nil {
		if _, ok := n.set[string(name)]; ok {
			return false
		}
		n.set[string(name)] = struct{}{}
		return true
	}
	for _, s := range n.list[:n.n] {
		if bytes.Equal(s, name) {
			return false
		}
	}
	if n.n < namesListMax {
		n.list[n.n] = name
		n.n++
		return true
	}
	n.set = make(map[string]struct{}, 4*namesListMax)
	for _, s := range n.list {
		n.set[string(s)] = struct{}{}
	}
	n.set[string(name)] = struct{}{}
	return true
}

// decodeName returns the name a quoted JSON name stands for, as
// json.Unmarshal reads it (invalid UTF-8 becomes U+FFFD): the bytes
// between the quotes when that is what they are.
func decodeName(q []byte) ([]byte, error) {
	if bytes.IndexByte(q, '\\') < 0 && utf8.Valid(q) {
		return q[1 : len(q)-1], nil
	}
	var s string
	err := json.Unmarshal(q, &s)
	return []byte(s), err
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the JSON string whose opening
// quote is b[i]: the first quote after it not escaped by a backslash.
func stringEnd(b []byte, i int) int {
	for i++; ; {
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			return len(b) // not valid JSON: Decode checked it is
		}
		i += q
		n := 0 // backslashes right before the quote
		for n < i && b[i-1-n] == '\\' {
			n++
		}
		if n%2 == 0 {
			return i + 1
		}
		i++
	}
}

// valueEnd returns the index just past the JSON value that starts at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = stringEnd(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	}
	// A number, true, false or null: it ends at the next delimiter.
	for i < len(b) {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}

// ErrNotArray is returned by Array for input that is not a JSON array.
var ErrNotArray = errors.New("jsonobj: not a JSON array")

// Array reads b, which must be exactly one JSON array (whitespace around
// it allowed), and calls elem with each element's index and bytes, in
// order, until elem returns an error (Array returns it). An element that
// is an object may be handed to DecodeElement, which does not check it
// again. Nothing is called unless all of b is valid JSON.
func Array(b []byte, elem func(i int, v []byte) error) error {
	i, err := start(b)
	if err != nil {
		return err
	}
	if b[i] != '[' {
		return ErrNotArray
	}
	return elements(b, i, elem)
}

// elements is Array on b, known to be valid JSON, from its '[' at i.
func elements(b []byte, i int, elem func(i int, v []byte) error) error {
	i = skipSpace(b, i+1)
	if b[i] == ']' {
		return nil
	}
	for n := 0; ; n++ {
		end := valueEnd(b, i)
		if err := elem(n, b[i:end]); err != nil {
			return err
		}
		i = skipSpace(b, end)
		if b[i] == ']' {
			return nil
		}
		i = skipSpace(b, i+1) // past the ','
	}
}

// DecodeElement is Decode for an element Array handed over (known to be
// valid JSON, so not checked again).
func DecodeElement(v []byte, field func(name []byte) any) error {
	if len(v) == 0 || v[0] != '{' {
		return ErrNotObject
	}
	return decodeObject(v, 0, field)
}

// start checks that b is one valid JSON value and returns where it begins
// (ErrEmpty for nothing but space; json.Unmarshal's *json.SyntaxError,
// which says where, for anything invalid).
func start(b []byte) (int, error) {
	i := skipSpace(b, 0)
	if i == len(b) {
		return 0, ErrEmpty
	}
	if !valid(b) {
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return 0, err
		}
		return 0, errors.New("jsonobj: invalid JSON") // valid and Unmarshal disagree: not expected (FuzzValid)
	}
	return i, nil
}
