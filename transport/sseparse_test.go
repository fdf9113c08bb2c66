package transport

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// sseParser reads an event stream by the HTML Standard's rules
// ("Server-sent events", "Interpreting an event stream"): lines end at
// CRLF, LF or CR; a line starting with ':' is a comment; otherwise the
// field name runs to the first ':' and one space after it is dropped; an
// empty line dispatches. It also keeps what a test needs to assert and a
// browser would throw away: each block's raw bytes, lines and comments.
type sseParser struct {
	line    []byte // the line read so far, not yet terminated
	skipLF  bool   // the last byte was a CR: a following LF belongs to it
	started bool   // past the optional leading BOM
	cur     sseBlock
	blocks  []sseBlock // complete blocks, oldest first

	// The stream's state, as a browser keeps it.
	data        strings.Builder // data buffer
	eventType   string          // event type buffer
	lastEventID string          // last event ID buffer; survives dispatches
	retry       int64           // reconnection time in ms; -1 until set
}

// sseBlock is what the stream carried up to and including one empty line.
type sseBlock struct {
	Raw      string   // the bytes, terminators included
	Lines    []string // the lines, without terminators
	Comments []string // comment lines, ':' and one leading space removed
	Retry    int64    // the retry field's value in this block; -1 if none
	Event    *sseEvent
}

// sseEvent is a dispatched event, as a browser's EventSource sees it.
type sseEvent struct {
	Type        string
	Data        string
	LastEventID string
}

const bom = "\uFEFF"

func newSSEParser() *sseParser {
	p := &sseParser{retry: -1}
	p.cur.Retry = -1
	return p
}

// Feed parses b, which may end in the middle of a line.
func (p *sseParser) Feed(b []byte) {
	if !p.started {
		// One leading byte order mark is dropped; wait until we can tell.
		p.line = append(p.line, b...)
		if len(p.line) < len(bom) && strings.HasPrefix(bom, string(p.line)) {
			return
		}
		b = bytes.TrimPrefix(p.line, []byte(bom))
		p.line = nil
		p.started = true
	}
	for len(b) > 0 {
		if p.skipLF {
			p.skipLF = false
			if b[0] == '\n' {
				p.appendRaw("\n")
				b = b[1:]
				continue
			}
		}
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			p.line = append(p.line, b...)
			return
		}
		p.line = append(p.line, b[:i]...)
		p.cur.Raw += string(p.line) + string(b[i])
		p.skipLF = b[i] == '\r'
		p.processLine(string(p.line))
		p.line = p.line[:0]
		b = b[i+1:]
	}
}

func (p *sseParser) processLine(line string) {
	if line == "" {
		p.dispatch()
		return
	}
	p.cur.Lines = append(p.cur.Lines, line)
	if line[0] == ':' {
		p.cur.Comments = append(p.cur.Comments, strings.TrimPrefix(line[1:], " "))
		return
	}
	name, value := line, ""
	if i := strings.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], strings.TrimPrefix(line[i+1:], " ")
	}
	switch name {
	case "event":
		p.eventType = value
	case "data":
		p.data.WriteString(value)
		p.data.WriteByte('\n')
	case "id":
		if !strings.ContainsRune(value, 0) {
			p.lastEventID = value
		}
	case "retry":
		if n, err := strconv.ParseInt(value, 10, 64); err == nil && value != "" && strings.Trim(value, "0123456789") == "" {
			p.retry = n
			p.cur.Retry = n
		}
	}
}

// dispatch ends the current block; it carries an event only when the data
// buffer is not empty, as in the Standard.
func (p *sseParser) dispatch() {
	if p.data.Len() > 0 {
		typ := p.eventType
		if typ == "" {
			typ = "message"
		}
		p.cur.Event = &sseEvent{
			Type:        typ,
			Data:        strings.TrimSuffix(p.data.String(), "\n"),
			LastEventID: p.lastEventID,
		}
	}
	p.data.Reset()
	p.eventType = ""
	p.blocks = append(p.blocks, p.cur)
	p.cur = sseBlock{Retry: -1}
}

// appendRaw adds the LF of a CRLF to the block its CR ended.
func (p *sseParser) appendRaw(s string) {
	if p.cur.Raw == "" && len(p.blocks) > 0 {
		p.blocks[len(p.blocks)-1].Raw += s
		return
	}
	p.cur.Raw += s
}

// Next returns the oldest complete block, if any.
func (p *sseParser) Next() (sseBlock, bool) {
	if len(p.blocks) == 0 {
		return sseBlock{}, false
	}
	b := p.blocks[0]
	p.blocks = p.blocks[1:]
	return b, true
}

// parseAll feeds stream to a new parser in pieces of size n (0: at once).
func parseAll(stream string, n int) []sseBlock {
	p := newSSEParser()
	if n == 0 {
		p.Feed([]byte(stream))
	} else {
		for i := 0; i < len(stream); i += n {
			p.Feed([]byte(stream[i:min(i+n, len(stream))]))
		}
	}
	var out []sseBlock
	for b, ok := p.Next(); ok; b, ok = p.Next() {
		out = append(out, b)
	}
	return out
}

// The parser is the judge of the wire format, so it is checked against the
// Standard's own examples first.
func TestSSEParser(t *testing.T) {
	type ev = sseEvent
	cases := []struct {
		name, stream string
		events       []*ev // one per block; nil: no event
	}{
		{"standard: stock ticker", "data: YHOO\ndata: +2\ndata: 10\n\n", []*ev{{"message", "YHOO\n+2\n10", ""}}},
		{"standard: ids", ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
			[]*ev{nil, {"message", "first event", "1"}, {"message", "second event", ""}, {"message", " third event", ""}}},
		{"standard: empty data", "data\n\ndata\ndata\n\ndata:", []*ev{{"message", "", ""}, {"message", "\n", ""}}},
		{"standard: space after colon", "data:test\n\ndata: test\n\n", []*ev{{"message", "test", ""}, {"message", "test", ""}}},
		{"CRLF", "event: e\r\ndata: a\r\ndata: b\r\n\r\n", []*ev{{"e", "a\nb", ""}}},
		{"CR", "data: a\rdata: b\r\r", []*ev{{"message", "a\nb", ""}}},
		{"mixed", "data: a\r\ndata: b\rdata: c\n\r\n", []*ev{{"message", "a\nb\nc", ""}}},
		{"BOM", "\uFEFFdata: x\n\n", []*ev{{"message", "x", ""}}},
		{"second BOM is data", "\uFEFF\uFEFFdata: x\n\n", []*ev{nil}},
		{"NUL in id ignored", "id: 1\n\nid: a\x00b\ndata: x\n\n", []*ev{nil, {"message", "x", "1"}}},
		{"event without data", "event: e\n\ndata: x\n\n", []*ev{nil, {"message", "x", ""}}},
		{"unknown field", "foo: bar\ndata: x\n\n", []*ev{{"message", "x", ""}}},
		{"incomplete block", "data: x\n", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, n := range []int{0, 1, 2, 3, 7} {
				blocks := parseAll(c.stream, n)
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

	t.Run("comments and retry", func(t *testing.T) {
		b := parseAll(": ok\n:no space\n:  two spaces\nretry: 1500\n\nretry: 12a\n\nretry\n\n", 0)
		if len(b) != 3 {
			t.Fatalf("%d blocks", len(b))
		}
		if want := []string{"ok", "no space", " two spaces"}; !slices.Equal(b[0].Comments, want) {
			t.Errorf("comments %q, want %q", b[0].Comments, want)
		}
		if b[0].Retry != 1500 || b[1].Retry != -1 || b[2].Retry != -1 {
			t.Errorf("retries %d %d %d, want 1500 -1 -1", b[0].Retry, b[1].Retry, b[2].Retry)
		}
	})
}
