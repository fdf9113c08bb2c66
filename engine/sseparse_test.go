package engine_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tinysse/tinysse/engine"
)

// sseEvent is one event dispatched by sseParser.
type sseEvent struct {
	Type        string // the event type: "message" when no event field was given
	RawType     string // the event type buffer as it was at dispatch
	Data        string
	LastEventID string
}

// sseParser interprets an event stream exactly as the HTML Standard's
// "Server-sent events" section says (9.2.6 "Interpreting an event
// stream"). It is written from the standard, not from our encoder, so that
// a round trip through it checks the encoder against what a browser reads.
type sseParser struct {
	Events []sseEvent
	// Retry is the last valid reconnection time (-1: none seen).
	Retry int64
	// Comments are the comment lines seen, without the leading colon.
	Comments []string

	data        strings.Builder // the data buffer
	eventType   string          // the event type buffer
	lastIDBuf   string          // the last event ID buffer
	lastEventID string          // the event source's last event ID string
	started     bool            // the leading BOM has been dealt with
	pendingCR   bool            // the previous chunk ended in CR: a following LF belongs to it
	line        []byte          // an incomplete line carried between chunks
}

func newSSEParser() *sseParser { return &sseParser{Retry: -1} }

// Feed parses the next chunk of the stream; chunks may split lines (and
// CRLF pairs) anywhere.
func (p *sseParser) Feed(b []byte) {
	for _, c := range b {
		if p.pendingCR {
			p.pendingCR = false
			if c == '\n' {
				continue // the LF of a CRLF pair
			}
		}
		switch c {
		case '\r':
			p.pendingCR = true
			p.processLine()
		case '\n':
			p.processLine()
		default:
			p.line = append(p.line, c)
		}
	}
}

// decode turns the line's bytes into text as the UTF-8 decode algorithm
// does, with U+FFFD for malformed bytes (Go replaces byte by byte where the
// standard replaces maximal subparts; our frames are valid UTF-8, so the
// difference never matters here) and with the BOM removed once at the
// start of the stream.
func (p *sseParser) decode() string {
	s := string(p.line)
	p.line = p.line[:0]
	if !p.started {
		p.started = true
		s = strings.TrimPrefix(s, "\uFEFF")
	}
	if !utf8.ValidString(s) {
		var b strings.Builder
		for _, r := range s {
			b.WriteRune(r) // an invalid byte decodes to utf8.RuneError
		}
		s = b.String()
	}
	return s
}

func (p *sseParser) processLine() {
	line := p.decode()
	switch {
	case line == "":
		p.dispatch()
	case line[0] == ':':
		p.Comments = append(p.Comments, line[1:])
	default:
		field, value := line, ""
		if i := strings.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			value = strings.TrimPrefix(value, " ") // one space only
		}
		p.processField(field, value)
	}
}

func (p *sseParser) processField(field, value string) {
	switch field {
	case "event":
		p.eventType = value
	case "data":
		p.data.WriteString(value)
		p.data.WriteByte('\n')
	case "id":
		if !strings.ContainsRune(value, 0) {
			p.lastIDBuf = value
		}
	case "retry":
		if value != "" && strings.Trim(value, "0123456789") == "" {
			var n int64
			for _, d := range value {
				n = n*10 + int64(d-'0') // overflow is the user agent's business
			}
			p.Retry = n
		}
	}
	// any other field is ignored
}

func (p *sseParser) dispatch() {
	p.lastEventID = p.lastIDBuf
	if p.data.Len() == 0 {
		p.eventType = ""
		return
	}
	data := strings.TrimSuffix(p.data.String(), "\n")
	typ := p.eventType
	if typ == "" {
		typ = "message"
	}
	p.Events = append(p.Events, sseEvent{Type: typ, RawType: p.eventType, Data: data, LastEventID: p.lastEventID})
	p.data.Reset()
	p.eventType = ""
}

// parseSSE parses a whole stream; an unfinished event at the end is
// discarded, as the standard says.
func parseSSE(s string) *sseParser {
	p := newSSEParser()
	p.Feed([]byte(s))
	return p
}

func TestSSEParser(t *testing.T) {
	// Examples from the HTML Standard's section on the event stream format.
	p := parseSSE("data: YHOO\ndata: +2\ndata: 10\n\n")
	if len(p.Events) != 1 || p.Events[0].Data != "YHOO\n+2\n10" || p.Events[0].Type != "message" {
		t.Fatalf("stock example: %+v", p.Events)
	}
	p = parseSSE(": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n")
	if len(p.Events) != 2 {
		t.Fatalf("ids example: %+v", p.Events)
	}
	if e := p.Events[0]; e.Data != "first event" || e.LastEventID != "1" {
		t.Errorf("first event: %+v", e)
	}
	if e := p.Events[1]; e.Data != "second event" || e.LastEventID != "" {
		t.Errorf("second event: %+v", e)
	}
	if len(p.Comments) != 1 || p.Comments[0] != " test stream" {
		t.Errorf("comments: %q", p.Comments)
	}
	p = parseSSE("data\n\ndata\ndata\n\ndata:\n")
	if len(p.Events) != 2 || p.Events[0].Data != "" || p.Events[1].Data != "\n" {
		t.Fatalf("empty data example: %+v", p.Events)
	}
	p = parseSSE("data:test\n\ndata: test\n\n")
	if len(p.Events) != 2 || p.Events[0].Data != "test" || p.Events[1].Data != "test" {
		t.Fatalf("space example: %+v", p.Events)
	}

	// Line endings, BOM, event type, retry, NUL in id, id persisting.
	p = parseSSE("\uFEFFevent: a\r\ndata: x\r\rid: 5\rdata: y\r\n\r\nid: a\x00b\ndata: z\n\n")
	want := []sseEvent{
		{Type: "a", RawType: "a", Data: "x"},
		{Type: "message", Data: "y", LastEventID: "5"},
		{Type: "message", Data: "z", LastEventID: "5"},
	}
	if len(p.Events) != len(want) {
		t.Fatalf("events %+v, want %+v", p.Events, want)
	}
	for i := range want {
		if p.Events[i] != want[i] {
			t.Errorf("event %d: %+v, want %+v", i, p.Events[i], want[i])
		}
	}
	for in, retry := range map[string]int64{"retry: 1234\n": 1234, "retry: 12a\n": -1, "retry:\n": -1, "retry: -1\n": -1, "retry:007\n": 7} {
		if p := parseSSE(in); p.Retry != retry {
			t.Errorf("%q: retry %d, want %d", in, p.Retry, retry)
		}
	}
	// Split anywhere, a CRLF pair included, the stream reads the same.
	stream := "id: 1\r\nevent: e\r\ndata: a\r\ndata: b\r\n\r\n"
	for i := range len(stream) + 1 {
		p := newSSEParser()
		p.Feed([]byte(stream[:i]))
		p.Feed([]byte(stream[i:]))
		if len(p.Events) != 1 || p.Events[0] != (sseEvent{Type: "e", RawType: "e", Data: "a\nb", LastEventID: "1"}) {
			t.Fatalf("split at %d: %+v", i, p.Events)
		}
	}
	// An event without its blank line is not dispatched.
	if p := parseSSE("data: x\n"); len(p.Events) != 0 {
		t.Errorf("unterminated event dispatched: %+v", p.Events)
	}
}

// normalizeLines is what a data field becomes on the wire and back: every
// CRLF, CR and LF is one LF.
func normalizeLines(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

func fuzzMessage(id, event, data string, hasData bool, comments string, nComments uint8) *engine.Message {
	m := &engine.Message{ID: id, Event: event, Data: data, HasData: hasData}
	switch nComments % 3 {
	case 1:
		m.Comments = []string{comments}
	case 2:
		m.Comments = strings.SplitN(comments, "|", 2)
	}
	if !hasData {
		m.Data = ""
	}
	return m
}

// checkRoundTrip publishes m through AppendFrame and reads it back with
// the standard's parser, after prefix (earlier frames on the same stream).
func checkRoundTrip(t *testing.T, m *engine.Message) {
	t.Helper()
	err := m.Validate()
	if err != nil {
		if !errors.Is(err, engine.ErrInvalid) {
			t.Fatalf("Validate error %v does not wrap ErrInvalid", err)
		}
		singleLineBad := strings.ContainsAny(m.ID, "\r\n\x00") || strings.ContainsAny(m.Event, "\r\n\x00")
		badUTF8 := !utf8.ValidString(m.ID) || !utf8.ValidString(m.Event) || !utf8.ValidString(m.Data)
		for _, c := range m.Comments {
			badUTF8 = badUTF8 || !utf8.ValidString(c)
		}
		if !singleLineBad && !badUTF8 && !m.Empty() && len(m.ID) <= engine.MaxIDLen {
			t.Fatalf("Validate refused a writable message %+v: %v", m, err)
		}
		return
	}
	frame := string(engine.AppendFrame(nil, m))
	if !strings.HasSuffix(frame, "\n\n") || strings.Contains(frame[:len(frame)-2], "\n\n") || strings.Contains(frame, "\r") {
		t.Fatalf("frame %q is not one event block", frame)
	}
	// Parse after an earlier event on the same stream, so a frame must also
	// reset what it does not set: the previous id persists by the standard.
	p := parseSSE("id: prev\nevent: old\ndata: old\n\n" + frame)
	if len(p.Events) == 0 || p.Events[0].Data != "old" {
		t.Fatalf("the earlier event was lost: %+v", p.Events)
	}
	got := p.Events[1:]
	wantID := m.ID
	if wantID == "" {
		wantID = "prev"
	}
	if !m.HasData {
		if len(got) != 0 {
			t.Fatalf("frame %q without data dispatched %+v", frame, got)
		}
		if p.lastEventID != wantID {
			t.Fatalf("frame %q: last event id %q, want %q", frame, p.lastEventID, wantID)
		}
		return
	}
	if len(got) != 1 {
		t.Fatalf("frame %q dispatched %d events: %+v", frame, len(got), got)
	}
	e := got[0]
	if want := normalizeLines(m.Data); e.Data != want {
		t.Fatalf("frame %q: data %q, want %q", frame, e.Data, want)
	}
	if e.RawType != m.Event {
		t.Fatalf("frame %q: event type %q, want %q", frame, e.RawType, m.Event)
	}
	if wantType := m.Event; (wantType == "" && e.Type != "message") || (wantType != "" && e.Type != wantType) {
		t.Fatalf("frame %q: dispatched type %q for event %q", frame, e.Type, m.Event)
	}
	if e.LastEventID != wantID {
		t.Fatalf("frame %q: last event id %q, want %q", frame, e.LastEventID, wantID)
	}
	if p.Retry != -1 {
		t.Fatalf("frame %q set a retry", frame)
	}
	nComments := 0
	for _, c := range m.Comments {
		nComments += strings.Count(normalizeLines(c), "\n") + 1
	}
	if len(p.Comments) != nComments {
		t.Fatalf("frame %q: %d comment lines, want %d", frame, len(p.Comments), nComments)
	}
}

func FuzzFrameRoundTrip(f *testing.F) {
	type seed struct {
		id, event, data string
		hasData         bool
		comments        string
		nComments       uint8
	}
	seeds := []seed{
		{"1", "", "hello", true, "", 0},
		{"", "", "", true, "", 0},
		{"", "", "", false, "", 0},
		{"", "", "", false, "just a comment", 1},
		{"42", "update", "line1\nline2\r\nline3\rline4", true, "c1|c2\nc3", 2},
		{"", "", "a\n", true, "", 0},
		{"", "", "\r\n\r\n", true, "", 0},
		{"", "", "\n\r", true, "", 0},
		{"", "", "\r\r\n\n", true, "", 0},
		{"", "", " leading space", true, "", 0},
		{"  spaced id", " spaced event", "  two spaces", true, "", 0},
		{"", "", "data: injected\n\nevent: x", true, "\n\ndata: evil", 1},
		{"id\nwith break", "", "x", true, "", 0},
		{"id\rbreak", "", "x", true, "", 0},
		{"nul\x00id", "", "x", true, "", 0},
		{"", "ev\nent", "x", true, "", 0},
		{"", "ev\x00", "x", true, "", 0},
		{"\xff", "", "x", true, "", 0},
		{"", "", "bad \xc3", true, "", 0},
		{"", "", "", false, "bad \xed\xa0\x80", 1},
		{strings.Repeat("i", 256), "", "x", true, "", 0},
		{strings.Repeat("i", 257), "", "x", true, "", 0},
		{"\uFEFFbom", "\uFEFF", "\uFEFFdata", true, "\uFEFF", 1},
		{"", "message", "x", true, "", 0},
		{"id: 5", "event: e", "retry: 10", true, "retry: 10", 1},
		{"", "", "nul\x00in data", true, "nul\x00|in comment", 2},
		{"é", "日本", "emoji 😀\u2028\u0085", true, "", 0},
		{":", ":", ":", true, ":", 1},
	}
	for _, s := range seeds {
		f.Add(s.id, s.event, s.data, s.hasData, s.comments, s.nComments)
	}
	f.Fuzz(func(t *testing.T, id, event, data string, hasData bool, comments string, nComments uint8) {
		checkRoundTrip(t, fuzzMessage(id, event, data, hasData, comments, nComments))
	})
}
