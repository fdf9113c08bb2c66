package engine_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/tinysse/tinysse/engine"
)

func TestMessageValidate(t *testing.T) {
	long := strings.Repeat("x", engine.MaxIDLen)
	cases := []struct {
		name string
		m    engine.Message
		ok   bool
	}{
		{"empty", engine.Message{}, false},
		{"topics only", engine.Message{Topics: []string{"a"}}, false},
		{"id only", engine.Message{ID: "1"}, true},
		{"event only", engine.Message{Event: "e"}, true},
		{"empty data", engine.Message{HasData: true}, true},
		{"data without HasData", engine.Message{Data: "x"}, false},
		{"comment only", engine.Message{Comments: []string{""}}, true},
		{"all fields", engine.Message{ID: "1", Event: "e", Data: "d", HasData: true, Comments: []string{"c"}}, true},
		{"id 256 bytes", engine.Message{ID: long}, true},
		{"id 257 bytes", engine.Message{ID: long + "x"}, false},
		{"id 256 bytes of multi-byte UTF-8", engine.Message{ID: strings.Repeat("é", engine.MaxIDLen/2)}, true},
		{"id LF", engine.Message{ID: "a\nb"}, false},
		{"id CR", engine.Message{ID: "a\rb"}, false},
		{"id CRLF", engine.Message{ID: "a\r\n"}, false},
		{"id NUL", engine.Message{ID: "a\x00b"}, false},
		{"event LF", engine.Message{Event: "\nx"}, false},
		{"event CR", engine.Message{Event: "x\r"}, false},
		{"event NUL", engine.Message{Event: "\x00"}, false},
		{"id invalid UTF-8", engine.Message{ID: "\xff"}, false},
		{"event invalid UTF-8", engine.Message{Event: "a\xc3"}, false},
		{"data invalid UTF-8", engine.Message{Data: "\xed\xa0\x80", HasData: true}, false}, // a surrogate
		{"comment invalid UTF-8", engine.Message{Comments: []string{"ok", "\x80"}}, false},
		{"data line breaks and NUL", engine.Message{Data: "a\r\nb\rc\nd\x00", HasData: true}, true},
		{"comment line breaks", engine.Message{Comments: []string{"a\nb\r\nc"}}, true},
		{"unicode line separator in event", engine.Message{Event: "a\u2028b"}, true},
		{"event with colon and spaces", engine.Message{Event: " a: b "}, true},
	}
	for _, c := range cases {
		err := c.m.Validate()
		if c.ok && err != nil {
			t.Errorf("%s: Validate() = %v, want nil", c.name, err)
		}
		if !c.ok && !errors.Is(err, engine.ErrInvalid) {
			t.Errorf("%s: Validate() = %v, want ErrInvalid", c.name, err)
		}
	}
}

func TestMessageEmpty(t *testing.T) {
	if !(&engine.Message{Topics: []string{"a"}, Data: "x"}).Empty() {
		t.Error("a message with only topics and Data without HasData is not Empty")
	}
	if (&engine.Message{HasData: true}).Empty() {
		t.Error("a message with empty data is Empty")
	}
}

func TestAppendFrame(t *testing.T) {
	cases := []struct {
		name string
		m    engine.Message
		want string
	}{
		{"field order", engine.Message{ID: "7", Event: "ev", Data: "d", HasData: true, Comments: []string{"c1", "c2"}},
			"id: 7\nevent: ev\ndata: d\n: c1\n: c2\n\n"},
		{"id only", engine.Message{ID: "x"}, "id: x\n\n"},
		{"event only", engine.Message{Event: "e"}, "event: e\n\n"},
		{"comment only", engine.Message{Comments: []string{"hi"}}, ": hi\n\n"},
		{"empty comment", engine.Message{Comments: []string{""}}, ": \n\n"},
		{"empty data", engine.Message{HasData: true}, "data: \n\n"},
		{"data LF", engine.Message{Data: "a\nb", HasData: true}, "data: a\ndata: b\n\n"},
		{"data CRLF", engine.Message{Data: "a\r\nb", HasData: true}, "data: a\ndata: b\n\n"},
		{"data CR", engine.Message{Data: "a\rb", HasData: true}, "data: a\ndata: b\n\n"},
		{"data trailing LF", engine.Message{Data: "a\n", HasData: true}, "data: a\ndata: \n\n"},
		{"data trailing CRLF", engine.Message{Data: "a\r\n", HasData: true}, "data: a\ndata: \n\n"},
		{"data trailing CR", engine.Message{Data: "a\r", HasData: true}, "data: a\ndata: \n\n"},
		{"data leading LF", engine.Message{Data: "\na", HasData: true}, "data: \ndata: a\n\n"},
		{"data only LF", engine.Message{Data: "\n", HasData: true}, "data: \ndata: \n\n"},
		{"data LF LF", engine.Message{Data: "a\n\nb", HasData: true}, "data: a\ndata: \ndata: b\n\n"},
		{"data CRLF alone", engine.Message{Data: "\r\n", HasData: true}, "data: \ndata: \n\n"},
		{"data LF CR is two breaks", engine.Message{Data: "a\n\rb", HasData: true}, "data: a\ndata: \ndata: b\n\n"},
		{"data CR CR", engine.Message{Data: "a\r\rb", HasData: true}, "data: a\ndata: \ndata: b\n\n"},
		{"data CR CRLF", engine.Message{Data: "a\r\r\nb", HasData: true}, "data: a\ndata: \ndata: b\n\n"},
		{"data with leading space kept", engine.Message{Data: " a", HasData: true}, "data:  a\n\n"},
		{"data with fields inside", engine.Message{Data: "x\nid: 9\nevent: e\n\ndata: y", HasData: true},
			"data: x\ndata: id: 9\ndata: event: e\ndata: \ndata: data: y\n\n"},
		{"comment split", engine.Message{Comments: []string{"a\nb\r\nc\rd"}}, ": a\n: b\n: c\n: d\n\n"},
		{"comment trailing LF", engine.Message{Comments: []string{"a\n"}}, ": a\n: \n\n"},
		{"comment injection", engine.Message{Comments: []string{"x\n\ndata: evil"}}, ": x\n: \n: data: evil\n\n"},
		{"data unset but Data set", engine.Message{ID: "1", Data: "ignored"}, "id: 1\n\n"},
		{"data NUL", engine.Message{Data: "a\x00b", HasData: true}, "data: a\x00b\n\n"},
	}
	for _, c := range cases {
		if err := c.m.Validate(); err != nil {
			t.Errorf("%s: Validate: %v", c.name, err)
			continue
		}
		if got := string(engine.AppendFrame(nil, &c.m)); got != c.want {
			t.Errorf("%s: AppendFrame = %q, want %q", c.name, got, c.want)
		}
	}
	// AppendFrame appends.
	m := engine.Message{ID: "1"}
	if got := string(engine.AppendFrame([]byte("prev"), &m)); got != "previd: 1\n\n" {
		t.Errorf("AppendFrame onto a prefix = %q", got)
	}
}

func TestAppendComment(t *testing.T) {
	cases := map[string]string{
		"ok":         ": ok\n\n",
		"":           ": \n\n",
		"keep-alive": ": keep-alive\n\n",
		"a\nb":       ": a\n: b\n\n",
		"a\r\nb\r":   ": a\n: b\n: \n\n",
	}
	for in, want := range cases {
		if got := string(engine.AppendComment(nil, in)); got != want {
			t.Errorf("AppendComment(%q) = %q, want %q", in, got, want)
		}
	}
	if got := string(engine.AppendComment([]byte("x"), "y")); got != "x: y\n\n" {
		t.Errorf("AppendComment onto a prefix = %q", got)
	}
}

func TestAppendRetry(t *testing.T) {
	cases := []struct {
		comment string
		ms      int64
		want    string
	}{
		{"timeout", 1234, ": timeout\nretry: 1234\n\n"},
		{"lagged", 0, ": lagged\nretry: 0\n\n"},
		{"shut\ndown", 5000, ": shut\n: down\nretry: 5000\n\n"},
	}
	for _, c := range cases {
		if got := string(engine.AppendRetry(nil, c.comment, c.ms)); got != c.want {
			t.Errorf("AppendRetry(%q, %d) = %q, want %q", c.comment, c.ms, got, c.want)
		}
	}
	if got := string(engine.AppendRetry([]byte("HTTP\r\n\r\n"), "x", 1)); got != "HTTP\r\n\r\n: x\nretry: 1\n\n" {
		t.Errorf("AppendRetry onto a prefix = %q", got)
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	m := engine.Message{ID: "12345", Event: "update", Data: strings.Repeat("x", 100), HasData: true}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(int64(len(engine.AppendFrame(nil, &m))))
	for b.Loop() {
		buf = engine.AppendFrame(buf[:0], &m)
	}
}
