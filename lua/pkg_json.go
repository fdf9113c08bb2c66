package lua

import (
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

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
		b := v.budget(L, "json.encode")
		s, err := c.encode(&b, L.Get(1), L.OptBool(2, false))
		if err != nil {
			L.RaiseError("json.encode: %v", err)
		}
		L.Push(glua.LString(s))
		return 1
	}
	printer := func(pretty bool) glua.LGFunction {
		return func(L *glua.LState) int {
			b := v.budget(L, "json.print")
			s, err := c.encode(&b, L.Get(1), pretty)
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
		b := v.budget(L, "json.decode")
		val, err := c.decode(&b, L, L.CheckString(1))
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

// encode writes val as JSON, indented by two spaces when pretty, as
// encoding/json writes it (keys sorted, no HTML escaping). It writes as it
// goes, polling the budget, so a value whose shared subtables make its text
// exponentially long is stopped at --script-memory or --script-timeout.
func (c *jsonCodec) encode(b *budget, val glua.LValue, pretty bool) (string, error) {
	e := jsonEncoder{c: c, b: b, pretty: pretty, onPath: make(map[*glua.LTable]bool)}
	if err := e.value(val, 0); err != nil {
		return "", err
	}
	return string(e.out), nil
}

// jsonEncoder writes Lua values as JSON into out.
type jsonEncoder struct {
	c      *jsonCodec
	b      *budget
	out    []byte
	pretty bool
	onPath map[*glua.LTable]bool // tables being encoded, to refuse cycles
}

// grew checks the output against the budget after a write.
func (e *jsonEncoder) grew() {
	e.b.step(1)
	if len(e.out) > e.b.max {
		e.b.overMemory()
	}
}

// newline starts a line indented for depth when pretty.
func (e *jsonEncoder) newline(depth int) {
	if e.pretty {
		e.out = append(e.out, '\n')
		for range depth {
			e.out = append(e.out, "  "...)
		}
	}
}

func (e *jsonEncoder) value(val glua.LValue, depth int) error {
	switch x := val.(type) {
	case *glua.LNilType:
		e.out = append(e.out, "null"...)
	case glua.LBool:
		e.out = strconv.AppendBool(e.out, bool(x))
	case glua.LString:
		e.b.fit(len(e.out) + len(x) + 2)
		e.out = appendJSONString(e.out, string(x), e.b)
	case glua.LNumber:
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("cannot encode %v", f)
		}
		e.out = appendJSONNumber(e.out, f)
	case *glua.LUserData:
		if _, ok := x.Value.(jsonNullValue); ok {
			e.out = append(e.out, "null"...)
			break
		}
		return errors.New("cannot encode a userdata")
	case *glua.LTable:
		if depth >= jsonMaxDepth {
			return fmt.Errorf("tables nested deeper than %d", jsonMaxDepth)
		}
		if e.onPath[x] {
			return errors.New("cannot encode a table that contains itself")
		}
		e.onPath[x] = true
		defer delete(e.onPath, x)
		return e.table(x, depth)
	default:
		return fmt.Errorf("cannot encode a %s", val.Type())
	}
	e.grew()
	return nil
}

// appendJSONNumber writes f as encoding/json writes a float64.
func appendJSONNumber(out []byte, f float64) []byte {
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	out = strconv.AppendFloat(out, f, format, -1, 64)
	if n := len(out); format == 'e' && n >= 4 && out[n-4] == 'e' && out[n-3] == '-' && out[n-2] == '0' {
		out[n-2] = out[n-1] // e-07 is written e-7
		out = out[:n-1]
	}
	return out
}

// appendJSONString writes s quoted as encoding/json does without HTML
// escaping: control characters escaped, invalid UTF-8 as \ufffd, U+2028
// and U+2029 escaped. It checks the budget every 64 KiB of s.
func appendJSONString(out []byte, s string, b *budget) []byte {
	const hex = "0123456789abcdef"
	out = append(out, '"')
	start, next := 0, 64<<10
	for i := 0; i < len(s); {
		if i >= next {
			next = i + 64<<10
			b.step(pollEvery)
			if len(out)+i-start > b.max {
				b.overMemory()
			}
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			out = append(out, s[start:i]...)
			switch c {
			case '"', '\\':
				out = append(out, '\\', c)
			case '\b':
				out = append(out, '\\', 'b')
			case '\f':
				out = append(out, '\\', 'f')
			case '\n':
				out = append(out, '\\', 'n')
			case '\r':
				out = append(out, '\\', 'r')
			case '\t':
				out = append(out, '\\', 't')
			default:
				out = append(out, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			out = append(out, s[start:i]...)
			out = append(out, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			out = append(out, s[start:i]...)
			out = append(out, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	out = append(out, s[start:]...)
	return append(out, '"')
}

// table encodes t as an array when it is marked as one or its keys are
// exactly 1..n, else as an object.
func (e *jsonEncoder) table(t *glua.LTable, depth int) error {
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
	e.b.step(n)
	switch {
	case marked && !indexOnly:
		return errors.New("a json.array() has a key that is not a positive integer")
	case marked || (n > 0 && indexOnly && maxIndex == n):
		if maxIndex > 2*n+16 {
			return fmt.Errorf("a json.array() with %d values up to index %d is too sparse", n, maxIndex)
		}
		e.out = append(e.out, '[')
		for i := 1; i <= maxIndex; i++ {
			if i > 1 {
				e.out = append(e.out, ',')
			}
			e.newline(depth + 1)
			if err := e.value(t.RawGetInt(i), depth+1); err != nil { // a hole in a json.array() is null
				return inPath(fmt.Sprintf("[%d]", i), err)
			}
		}
		if maxIndex > 0 {
			e.newline(depth)
		}
		e.out = append(e.out, ']')
		return nil
	}
	type member struct {
		key string
		val glua.LValue
	}
	members := make([]member, 0, n)
	seen := make(map[string]bool, n)
	var err error
	t.ForEach(func(k, val glua.LValue) {
		if err != nil {
			return
		}
		key, ok := stringOrNumber(k)
		if !ok {
			err = fmt.Errorf("cannot encode a %s key (object keys are strings or numbers)", k.Type())
			return
		}
		if seen[key] {
			err = fmt.Errorf("key %q appears both as a string and as a number", key)
			return
		}
		seen[key] = true
		members = append(members, member{key, val})
	})
	if err != nil {
		return err
	}
	sort.Slice(members, func(i, j int) bool { return members[i].key < members[j].key })
	e.out = append(e.out, '{')
	for i, m := range members {
		if i > 0 {
			e.out = append(e.out, ',')
		}
		e.newline(depth + 1)
		e.b.fit(len(e.out) + len(m.key) + 4)
		e.out = appendJSONString(e.out, m.key, e.b)
		e.out = append(e.out, ':')
		if e.pretty {
			e.out = append(e.out, ' ')
		}
		if err := e.value(m.val, depth+1); err != nil {
			return inPath(m.key, err)
		}
	}
	if len(members) > 0 {
		e.newline(depth)
	}
	e.out = append(e.out, '}')
	return nil
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

// stringOrNumber is v as a string when it is a string or a number (as
// formatNumber writes it); ok is false for any other value.
func stringOrNumber(v glua.LValue) (s string, ok bool) {
	switch x := v.(type) {
	case glua.LString:
		return string(x), true
	case glua.LNumber:
		return formatNumber(float64(x)), true
	}
	return "", false
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
// null json.null. It accepts what encoding/json accepts, with its error
// messages, and builds the Lua values as it reads, polling the budget and
// counting what it builds against --script-memory: "[{},{},...]" builds
// tables many times the size of its text.
func (c *jsonCodec) decode(b *budget, L *glua.LState, s string) (glua.LValue, error) {
	d := jsonDecoder{c: c, b: b, L: L, s: s}
	d.space()
	val, err := d.value(0)
	if err != nil {
		return glua.LNil, err
	}
	d.space()
	if d.i < len(s) {
		return glua.LNil, d.syntax("after top-level value")
	}
	if d.rangeErr != nil {
		return glua.LNil, d.rangeErr
	}
	return val, nil
}

// jsonDecoder reads one JSON text. Offsets are into s.
type jsonDecoder struct {
	c     *jsonCodec
	b     *budget
	L     *glua.LState
	s     string
	i     int
	built int // bytes of Lua values built so far, roughly
	// rangeErr is the first number out of float64's range: as for
	// encoding/json, it is the error only if the whole text is valid.
	rangeErr error
}

// Rough sizes of what decoding builds, for the budget.
const (
	jsonValueCost = 48  // a value in a table slot
	jsonTableCost = 128 // an empty table
)

func (d *jsonDecoder) cost(n int) {
	d.built += n
	d.b.step(1)
	if d.built > d.b.max {
		d.b.overMemory()
	}
}

var errJSONEnd = errors.New("unexpected end of JSON input")

// syntax is encoding/json's error for the character at d.i.
func (d *jsonDecoder) syntax(context string) error {
	if d.i >= len(d.s) {
		return errJSONEnd
	}
	return fmt.Errorf("invalid character %s %s", quoteJSONChar(d.s[d.i]), context)
}

// syntaxEOF is syntax where encoding/json, at the end of the text, sees
// the space it appends: inside a literal, a number or an escape.
func (d *jsonDecoder) syntaxEOF(context string) error {
	if d.i >= len(d.s) {
		return fmt.Errorf("invalid character ' ' %s", context)
	}
	return d.syntax(context)
}

// quoteJSONChar writes a byte as encoding/json's errors do.
func quoteJSONChar(c byte) string {
	switch c {
	case '\'':
		return `'\''`
	case '"':
		return `'"'`
	}
	q := strconv.Quote(string(rune(c)))
	return "'" + q[1:len(q)-1] + "'"
}

func (d *jsonDecoder) space() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *jsonDecoder) value(depth int) (glua.LValue, error) {
	if d.i >= len(d.s) {
		return glua.LNil, errJSONEnd
	}
	switch c := d.s[d.i]; {
	case c == '{':
		return d.object(depth)
	case c == '[':
		return d.array(depth)
	case c == '"':
		s, err := d.str()
		if err != nil {
			return glua.LNil, err
		}
		return glua.LString(s), nil
	case c == '-' || isDigit(c):
		return d.number()
	case c == 't':
		return glua.LTrue, d.literal("true")
	case c == 'f':
		return glua.LFalse, d.literal("false")
	case c == 'n':
		return d.c.null, d.literal("null")
	}
	return glua.LNil, d.syntax("looking for beginning of value")
}

func (d *jsonDecoder) literal(word string) error {
	for k := 1; k < len(word); k++ {
		d.i++
		if d.i >= len(d.s) || d.s[d.i] != word[k] {
			return d.syntaxEOF(fmt.Sprintf("in literal %s (expecting %s)", word, quoteJSONChar(word[k])))
		}
	}
	d.i++
	d.cost(jsonValueCost)
	return nil
}

func (d *jsonDecoder) number() (glua.LValue, error) {
	start := d.i
	digits := func() int {
		n := 0
		for d.i < len(d.s) && isDigit(d.s[d.i]) {
			d.i++
			n++
		}
		return n
	}
	if d.s[d.i] == '-' {
		d.i++
		if d.i >= len(d.s) || !isDigit(d.s[d.i]) {
			return glua.LNil, d.syntaxEOF("in numeric literal")
		}
	}
	if d.s[d.i] == '0' {
		d.i++
	} else {
		digits()
	}
	if d.i < len(d.s) && d.s[d.i] == '.' {
		d.i++
		if digits() == 0 {
			return glua.LNil, d.syntaxEOF("after decimal point in numeric literal")
		}
	}
	if d.i < len(d.s) && (d.s[d.i] == 'e' || d.s[d.i] == 'E') {
		d.i++
		if d.i < len(d.s) && (d.s[d.i] == '+' || d.s[d.i] == '-') {
			d.i++
		}
		if digits() == 0 {
			return glua.LNil, d.syntaxEOF("in exponent of numeric literal")
		}
	}
	text := d.s[start:d.i]
	f, err := strconv.ParseFloat(text, 64)
	if err != nil && d.rangeErr == nil {
		d.rangeErr = fmt.Errorf("json: cannot unmarshal number %s into Go value of type float64", text)
	}
	d.cost(jsonValueCost)
	return glua.LNumber(f), nil
}

// str reads a string at d.i (its opening quote) as encoding/json
// unquotes it: invalid UTF-8 and lone surrogates become U+FFFD.
func (d *jsonDecoder) str() (string, error) {
	d.i++
	start := d.i
	plain := true
	for {
		if d.i >= len(d.s) {
			return "", errJSONEnd
		}
		c := d.s[d.i]
		switch {
		case c == '"':
			raw := d.s[start:d.i]
			d.i++
			if plain {
				d.cost(jsonValueCost)
				return raw, nil // shares the text's memory
			}
			d.cost(jsonValueCost + len(raw))
			return unquoteJSON(raw), nil
		case c == '\\':
			plain = false
			d.i++
			if d.i >= len(d.s) {
				return "", d.syntaxEOF("in string escape code")
			}
			switch d.s[d.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.i++
			case 'u':
				d.i++
				for k := 0; k < 4; k++ {
					if d.i >= len(d.s) || !isHex(d.s[d.i]) {
						return "", d.syntaxEOF("in \\u hexadecimal character escape")
					}
					d.i++
				}
			default:
				return "", d.syntax("in string escape code")
			}
		case c < 0x20:
			return "", d.syntax("in string literal")
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(d.s[d.i:])
			if r == utf8.RuneError && size == 1 {
				plain = false
			}
			d.i += size
		default:
			d.i++
		}
		if d.i&0xffff == 0 {
			d.b.step(pollEvery)
		}
	}
}

func isHex(c byte) bool { return isDigit(c) || 'a' <= c|0x20 && c|0x20 <= 'f' }

// unquoteJSON decodes the escapes of a string already checked by str.
func unquoteJSON(s string) string {
	var out strings.Builder
	out.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			i++
			switch s[i] {
			case 'b':
				out.WriteByte('\b')
			case 'f':
				out.WriteByte('\f')
			case 'n':
				out.WriteByte('\n')
			case 'r':
				out.WriteByte('\r')
			case 't':
				out.WriteByte('\t')
			case 'u':
				r := hex4(s[i+1:])
				i += 4
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if i+6 < len(s)+0 && s[i+1] == '\\' && s[i+2] == 'u' {
						r2 = hex4(s[i+3:])
					}
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						r = dec
						i += 6
					} else {
						r = utf8.RuneError
					}
				}
				out.WriteRune(r)
			default: // " \ /
				out.WriteByte(s[i])
			}
			i++
		case c < utf8.RuneSelf:
			out.WriteByte(c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			out.WriteRune(r) // RuneError for an invalid byte
			i += size
		}
	}
	return out.String()
}

func hex4(s string) rune {
	n, _ := strconv.ParseUint(s[:4], 16, 32)
	return rune(n)
}

// open enters an array or an object: it checks the depth, makes and
// charges for the table, and says whether closing ends it at once.
func (d *jsonDecoder) open(depth int, closing byte) (t *glua.LTable, empty bool, err error) {
	if depth >= jsonMaxDepth {
		return nil, false, fmt.Errorf("nested deeper than %d", jsonMaxDepth)
	}
	d.i++
	d.cost(jsonTableCost)
	t = d.L.CreateTable(0, 0)
	d.space()
	if d.i < len(d.s) && d.s[d.i] == closing {
		d.i++
		return t, true, nil
	}
	return t, false, nil
}

func (d *jsonDecoder) array(depth int) (glua.LValue, error) {
	t, empty, err := d.open(depth, ']')
	if err != nil {
		return glua.LNil, err
	}
	t.Metatable = d.c.arrayMT
	if empty {
		return t, nil
	}
	for {
		d.space()
		val, err := d.value(depth + 1)
		if err != nil {
			return glua.LNil, err
		}
		t.Append(val)
		end, err := d.separator(']', "after array element")
		if err != nil {
			return glua.LNil, err
		}
		if end {
			return t, nil
		}
	}
}

// separator reads what follows an array element or an object member: a
// comma (more to come) or closing (the end); anything else is a syntax
// error, named after.
func (d *jsonDecoder) separator(closing byte, after string) (end bool, err error) {
	d.space()
	if d.i >= len(d.s) {
		return false, errJSONEnd
	}
	switch d.s[d.i] {
	case ',':
		d.i++
		return false, nil
	case closing:
		d.i++
		return true, nil
	}
	return false, d.syntax(after)
}

func (d *jsonDecoder) object(depth int) (glua.LValue, error) {
	t, empty, err := d.open(depth, '}')
	if err != nil {
		return glua.LNil, err
	}
	if empty {
		return t, nil
	}
	for {
		d.space()
		if d.i >= len(d.s) {
			return glua.LNil, errJSONEnd
		}
		if d.s[d.i] != '"' {
			return glua.LNil, d.syntax("looking for beginning of object key string")
		}
		key, err := d.str()
		if err != nil {
			return glua.LNil, err
		}
		d.space()
		if d.i >= len(d.s) {
			return glua.LNil, errJSONEnd
		}
		if d.s[d.i] != ':' {
			return glua.LNil, d.syntax("after object key")
		}
		d.i++
		d.space()
		val, err := d.value(depth + 1)
		if err != nil {
			return glua.LNil, err
		}
		t.RawSetString(key, val) // a repeated key: the last wins, as in encoding/json
		end, err := d.separator('}', "after object key:value pair")
		if err != nil {
			return glua.LNil, err
		}
		if end {
			return t, nil
		}
	}
}
