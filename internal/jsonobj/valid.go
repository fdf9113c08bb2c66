package jsonobj

import "encoding/binary"

// valid reports whether b is exactly one JSON value, whitespace around it
// allowed: what json.Valid reports, byte for byte (FuzzValid checks it),
// including json.Valid's limit of maxDepth nested objects and arrays and
// its leniency about invalid UTF-8 inside strings (callers that care
// check UTF-8 themselves).
//
// It is one pass with no allocation below 32 levels of nesting.
// encoding/json's scanner calls a state function per byte and took 18%
// of the server's CPU on batch publishes, more than decoding the
// messages (BENCHMARKS.md, "Batch publishes"); this takes a few
// percent. json.Valid stays the reference: valid only has to be faster,
// and where it says no, start asks encoding/json for the error message.
func valid(b []byte) bool {
	var small [32]byte
	stack := small[:0] // the open containers, '{' or '['
	i := skipSpace(b, 0)
	ok := false
value:
	if i >= len(b) {
		return false
	}
	switch c := b[i]; {
	case c == '{' || c == '[':
		if len(stack) == maxDepth {
			return false
		}
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		if i = skipSpace(b, i+1); i < len(b) && b[i] == closing {
			i++
			goto after
		}
		stack = append(stack, c)
		if c == '{' {
			goto key
		}
		goto value
	case c == '"':
		if i, ok = stringLit(b, i); !ok {
			return false
		}
	case c == '-' || c >= '0' && c <= '9':
		if i, ok = number(b, i); !ok {
			return false
		}
	case c == 't':
		if i, ok = literal(b, i, "true"); !ok {
			return false
		}
	case c == 'f':
		if i, ok = literal(b, i, "false"); !ok {
			return false
		}
	case c == 'n':
		if i, ok = literal(b, i, "null"); !ok {
			return false
		}
	default:
		return false
	}
after:
	// A value ended at i: the end of the input, or what follows it in
	// the innermost open container.
	if i = skipSpace(b, i); len(stack) == 0 {
		return i == len(b)
	}
	if i >= len(b) {
		return false
	}
	switch top := stack[len(stack)-1]; {
	case b[i] == ',':
		i = skipSpace(b, i+1)
		if top == '{' {
			goto key
		}
		goto value
	case top == '{' && b[i] == '}', top == '[' && b[i] == ']':
		stack = stack[:len(stack)-1]
		i++
		goto after
	}
	return false
key:
	// A member of an object: its name, a colon, then its value.
	if i >= len(b) || b[i] != '"' {
		return false
	}
	if i, ok = stringLit(b, i); !ok {
		return false
	}
	if i = skipSpace(b, i); i >= len(b) || b[i] != ':' {
		return false
	}
	i = skipSpace(b, i+1)
	goto value
}

// maxDepth is encoding/json's limit of nested objects and arrays.
const maxDepth = 10000

// plainByte marks the bytes a JSON string holds as they are: all but the
// quote, the backslash and the control characters below 0x20.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// plainWord reports whether the eight bytes of x are all plainBytes: a
// word holds a quote, a backslash or a byte below 0x20 exactly when one
// of the three bit tests finds one (the usual "has a zero byte" and "has
// a byte less than n" tricks, exact about whether there is one). Most of
// a message is the bytes of its strings: they are skipped a word at a
// time, by valid and by plainString.
func plainWord(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	has := func(c byte) bool { y := x ^ (ones * uint64(c)); return (y-ones)&^y&highs != 0 }
	return (x-ones*0x20)&^x&highs == 0 && !has('"') && !has('\\')
}

// stringLit checks the string literal whose opening quote is b[i] and
// returns the index just past its closing quote.
func stringLit(b []byte, i int) (int, bool) {
	for i++; i < len(b); {
		for i+8 <= len(b) && plainWord(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		if i == len(b) {
			break
		}
		switch c := b[i]; {
		case plainByte[c]:
			i++
		case c == '"':
			return i + 1, true
		case c == '\\' && i+1 < len(b):
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return 0, false
				}
				i += 6
			default:
				return 0, false
			}
		default:
			return 0, false // a control character, or a backslash at the end
		}
	}
	return 0, false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// number checks the number that starts at b[i] (RFC 8259: -? int frac?
// exp?, no leading zero) and returns the index just past it.
func number(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		if j := digits(b, i+1); j > i+1 {
			i = j
		} else {
			return 0, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if j := digits(b, i); j > i {
			i = j
		} else {
			return 0, false
		}
	}
	return i, true
}

// digits returns the index past the run of decimal digits at b[i].
func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// literal checks that b holds word at i and returns the index past it.
func literal(b []byte, i int, word string) (int, bool) {
	if len(b)-i < len(word) || string(b[i:i+len(word)]) != word {
		return 0, false
	}
	return i + len(word), true
}
