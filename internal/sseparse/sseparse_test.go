package sseparse

import (
	"slices"
	"strings"
	"testing"
)

// blocksOf feeds stream to a new parser in pieces of size n (0: at once).
func blocksOf(stream string, n int) []Block {
	p := New()
	if n == 0 {
		p.Feed([]byte(stream))
	} else {
		for i := 0; i < len(stream); i += n {
			p.Feed([]byte(stream[i:min(i+n, len(stream))]))
		}
	}
	var out []Block
	for b, ok := p.Next(); ok; b, ok = p.Next() {
		out = append(out, b)
	}
	return out
}

// The parser is the judge of the wire format, so it is checked against the
// Standard's own examples first.
func TestStandardExamples(t *testing.T) {
	type ev = Event
	cases := []struct {
		name, stream string
		events       []*ev // one per block; nil: no event
	}{
		{"stock ticker", "data: YHOO\ndata: +2\ndata: 10\n\n", []*ev{{"message", "YHOO\n+2\n10", ""}}},
		{"ids", ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
			[]*ev{nil, {"message", "first event", "1"}, {"message", "second event", ""}, {"message", " third event", ""}}},
		{"empty data", "data\n\ndata\ndata\n\ndata:", []*ev{{"message", "", ""}, {"message", "\n", ""}}},
		{"space after colon", "data:test\n\ndata: test\n\n", []*ev{{"message", "test", ""}, {"message", "test", ""}}},
		{"CRLF", "event: e\r\ndata: a\r\ndata: b\r\n\r\n", []*ev{{"e", "a\nb", ""}}},
		{"CR", "data: a\rdata: b\r\r", []*ev{{"message", "a\nb", ""}}},
		{"mixed", "data: a\r\ndata: b\rdata: c\n\r\n", []*ev{{"message", "a\nb\nc", ""}}},
		{"BOM", "\uFEFFdata: x\n\n", []*ev{{"message", "x", ""}}},
		{"second BOM is data", "\uFEFF\uFEFFdata: x\n\n", []*ev{nil}},
		{"NUL in id ignored", "id: 1\n\nid: a\x00b\ndata: x\n\n", []*ev{nil, {"message", "x", "1"}}},
		{"id persists", "id: 5\ndata: y\n\ndata: z\n\n", []*ev{{"message", "y", "5"}, {"message", "z", "5"}}},
		{"event without data", "event: e\n\ndata: x\n\n", []*ev{nil, {"message", "x", ""}}},
		{"unknown field", "foo: bar\ndata: x\n\n", []*ev{{"message", "x", ""}}},
		{"incomplete block", "data: x\n", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, n := range []int{0, 1, 2, 3, 7} {
				blocks := blocksOf(c.stream, n)
				if len(blocks) != len(c.events) {
					t.Fatalf("pieces of %d: %d blocks, want %d", n, len(blocks), len(c.events))
				}
				raw := ""
				for i, b := range blocks {
					raw += b.Raw
					switch want := c.events[i]; {
					case want == nil && b.Event != nil:
						t.Errorf("pieces of %d, block %d: event %+v, want none", n, i, *b.Event)
					case want != nil && (b.Event == nil || *b.Event != *want):
						t.Errorf("pieces of %d, block %d: event %+v, want %+v", n, i, b.Event, *want)
					}
				}
				if !strings.HasPrefix(strings.TrimPrefix(c.stream, bom), raw) {
					t.Errorf("pieces of %d: raw %q is not the stream's start", n, raw)
				}
			}
		})
	}
}

func TestCommentsAndRetry(t *testing.T) {
	b := blocksOf(": ok\n:no space\n:  two spaces\nretry: 1500\n\nretry: 12a\n\nretry\n\n", 0)
	if len(b) != 3 {
		t.Fatalf("%d blocks", len(b))
	}
	if want := []string{"ok", "no space", " two spaces"}; !slices.Equal(b[0].Comments, want) {
		t.Errorf("comments %q, want %q", b[0].Comments, want)
	}
	if b[0].Retry != 1500 || b[1].Retry != -1 || b[2].Retry != -1 {
		t.Errorf("retries %d %d %d, want 1500 -1 -1", b[0].Retry, b[1].Retry, b[2].Retry)
	}
	for in, retry := range map[string]int64{"retry: 1234\n": 1234, "retry: 12a\n": -1, "retry:\n": -1, "retry: -1\n": -1, "retry:007\n": 7} {
		if p := Parse(in); p.Retry != retry {
			t.Errorf("%q: retry %d, want %d", in, p.Retry, retry)
		}
	}
}

func TestSplitAnywhere(t *testing.T) {
	stream := "id: 1\r\nevent: e\r\ndata: a\r\ndata: b\r\n\r\n"
	for i := range len(stream) + 1 {
		p := New()
		p.Feed([]byte(stream[:i]))
		p.Feed([]byte(stream[i:]))
		if len(p.Events) != 1 || p.Events[0] != (Event{Type: "e", Data: "a\nb", LastEventID: "1"}) {
			t.Fatalf("split at %d: %+v", i, p.Events)
		}
	}
}

func TestLastEventIDWithoutData(t *testing.T) {
	// A block with an id and no data dispatches nothing, yet sets the id
	// a browser sends back on reconnecting.
	if p := Parse("id: 7\n\n"); len(p.Events) != 0 || p.LastEventID() != "7" {
		t.Errorf("events %+v, last event id %q", p.Events, p.LastEventID())
	}
}

func TestInvalidUTF8(t *testing.T) {
	if p := Parse("data: a\xffb\n\n"); len(p.Events) != 1 || p.Events[0].Data != "a\uFFFDb" {
		t.Errorf("events %+v", p.Events)
	}
}
