package main

import (
	"testing"
)

func TestPayloadRoundTrip(t *testing.T) {
	for _, size := range []int{0, 10, 100, 1000} {
		b := appendPayload([]byte("prefix "), 3, 12345, 1732400000123456789, size)
		if got := len(b) - len("prefix "); got < size {
			t.Errorf("size %d: payload is %d bytes", size, got)
		}
		pub, seq, sent, ok := parsePayload(append([]byte(`{"x":"`), append(b, `"}`...)...))
		if !ok || pub != 3 || seq != 12345 || sent != 1732400000123456789 {
			t.Errorf("size %d: parsed %d %d %d %v", size, pub, seq, sent, ok)
		}
	}
}

func TestParsePayloadRejects(t *testing.T) {
	for _, s := range []string{
		"", "hello", "LT1 ", "LT1 1", "LT1 1 2", "LT1 x 2 3", "LT1 1 2 x",
		"LT1 99999999 1 2 ", "LT1 1 99999999999999999999 2 ",
	} {
		if _, _, _, ok := parsePayload([]byte(s)); ok {
			t.Errorf("%q: parsed", s)
		}
	}
	if _, _, _, ok := parsePayload([]byte("LT1 1 2 3")); !ok {
		t.Error("payload without padding refused")
	}
}

func TestWindow(t *testing.T) {
	var w window
	steps := []struct {
		seq  uint64
		want verdict
	}{
		{1, inOrder}, {2, inOrder}, {2, duplicate}, {5, inOrder}, // 3, 4 missing so far
		{4, late}, {4, duplicate}, {3, late}, {1, duplicate},
		{100, inOrder}, {37, late}, {36, tooLate}, {100, duplicate}, {200, inOrder}, {137, late},
	}
	for i, s := range steps {
		if got := w.see(s.seq); got != s.want {
			t.Fatalf("step %d: see(%d) = %d, want %d", i, s.seq, got, s.want)
		}
	}
}

func TestExpectedAfter(t *testing.T) {
	tl := timeline{{10, 20, 30}, {15, 25}, nil}
	for _, c := range []struct {
		ready int64
		want  int64
	}{{0, 5}, {10, 5}, {11, 4}, {20, 3}, {26, 1}, {31, 0}} {
		if got := tl.expectedAfter(c.ready); got != c.want {
			t.Errorf("expectedAfter(%d) = %d, want %d", c.ready, got, c.want)
		}
	}
}
