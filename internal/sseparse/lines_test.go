package sseparse

import (
	"reflect"
	"testing"
)

// collect feeds the chunks to a Lines and returns each line with its
// terminator, the LF of a CRLF split across chunks joined to its line.
func collect(chunks ...[]byte) (lines []string, ends []string) {
	var l Lines
	for _, c := range chunks {
		l.Feed(c, func(line []byte, end string) {
			if line == nil {
				ends[len(ends)-1] += end
				return
			}
			lines = append(lines, string(line))
			ends = append(ends, end)
		})
	}
	return lines, ends
}

func TestLines(t *testing.T) {
	lines, ends := collect([]byte("\uFEFFa\r\nb\rc\n\nd"), []byte("\r"), []byte("\ne\r"), []byte("f"))
	if want := []string{"a", "b", "c", "", "d", "e"}; !reflect.DeepEqual(lines, want) {
		t.Errorf("lines %q, want %q", lines, want)
	}
	if want := []string{"\r\n", "\r", "\n", "\n", "\r\n", "\r"}; !reflect.DeepEqual(ends, want) {
		t.Errorf("ends %q, want %q", ends, want)
	}
	// A BOM split over two chunks, and a second BOM kept.
	if lines, _ := collect([]byte("\xEF\xBB"), []byte("\xBF\uFEFFx\n")); !reflect.DeepEqual(lines, []string{"\uFEFFx"}) {
		t.Errorf("BOM: lines %q", lines)
	}
}

func TestField(t *testing.T) {
	for _, c := range []struct {
		line, name, value string
		comment           bool
	}{
		{"data: x", "data", "x", false},
		{"data:  x", "data", " x", false},
		{"data:x:y", "data", "x:y", false},
		{"data", "data", "", false},
		{": ok", "", "ok", true},
		{":", "", "", true},
	} {
		n, v, comment := Field([]byte(c.line))
		if string(n) != c.name || string(v) != c.value || comment != c.comment {
			t.Errorf("Field(%q) = %q, %q, %v", c.line, n, v, comment)
		}
	}
}

// FuzzLines: however a stream is cut into chunks, the same lines come
// out with the same terminators.
func FuzzLines(f *testing.F) {
	f.Add([]byte("a\r\nb\rc\n\n"), uint8(1), uint8(3))
	f.Add([]byte("\uFEFFdata: x\r\r\n"), uint8(2), uint8(9))
	f.Fuzz(func(t *testing.T, b []byte, i, j uint8) {
		x, y := int(i)%(len(b)+1), int(j)%(len(b)+1)
		if x > y {
			x, y = y, x
		}
		l1, e1 := collect(b)
		l2, e2 := collect(b[:x], b[x:y], b[y:])
		if !reflect.DeepEqual(l1, l2) || !reflect.DeepEqual(e1, e2) {
			t.Fatalf("cut at %d, %d: %q %q, whole: %q %q", x, y, l2, e2, l1, e1)
		}
	})
}
