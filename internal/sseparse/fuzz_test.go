package sseparse

import (
	"slices"
	"strings"
	"testing"
)

// The fuzz tests hold the parser to the Standard's "Interpreting an event
// stream" (9.2.6) on any input: a second reading of the rules, written
// here on whole strings the plainest way (split into lines first, then
// each line in order), must give the same events, last event ID and
// reconnection time as the incremental parser fed in pieces split
// anywhere. Then the rules one at a time, as properties.

// reference interprets a whole stream by the Standard's steps.
func reference(stream string) (events []Event, lastEventID string, retry int64) {
	retry = -1
	stream = strings.TrimPrefix(stream, bom) // one leading BOM is dropped
	var data strings.Builder
	var eventType, idBuf string
	for {
		// A line ends at CRLF, a lone CR or a lone LF; what follows the last
		// terminator is an incomplete line, which is never processed.
		i := strings.IndexAny(stream, "\r\n")
		if i < 0 {
			break
		}
		line := string([]rune(stream[:i])) // UTF-8 decode, U+FFFD for bad bytes
		if stream[i] == '\r' && i+1 < len(stream) && stream[i+1] == '\n' {
			i++
		}
		stream = stream[i+1:]

		if line == "" { // dispatch
			lastEventID = idBuf
			if data.Len() == 0 {
				eventType = ""
				continue
			}
			typ := eventType
			if typ == "" {
				typ = "message"
			}
			events = append(events, Event{Type: typ, Data: strings.TrimSuffix(data.String(), "\n"), LastEventID: lastEventID})
			data.Reset()
			eventType = ""
			continue
		}
		if strings.HasPrefix(line, ":") { // a comment
			continue
		}
		field, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ") // a single leading space only
		}
		switch field {
		case "event":
			eventType = value
		case "data":
			data.WriteString(value)
			data.WriteString("\n")
		case "id":
			if !strings.Contains(value, "\x00") {
				idBuf = value
			}
		case "retry":
			if value != "" && strings.Trim(value, "0123456789") == "" {
				var n int64
				for _, d := range value {
					n = n*10 + int64(d-'0')
				}
				retry = n
			}
		}
	}
	return events, lastEventID, retry // an event not ended by a blank line is dropped
}

// parseIn feeds stream to a new parser in the pieces cut at cuts.
func parseIn(stream string, cuts ...int) *Parser {
	p := New()
	prev := 0
	for _, c := range cuts {
		c = min(max(c, prev), len(stream))
		p.Feed([]byte(stream[prev:c]))
		prev = c
	}
	p.Feed([]byte(stream[prev:]))
	return p
}

func sameAsReference(t *testing.T, stream string, p *Parser) {
	t.Helper()
	events, lastID, retry := reference(stream)
	if !slices.Equal(p.Events, events) {
		t.Fatalf("%q: events %q, the Standard's %q", stream, p.Events, events)
	}
	if p.LastEventID() != lastID || p.Retry != retry {
		t.Fatalf("%q: last event ID %q, retry %d; the Standard's %q, %d", stream, p.LastEventID(), p.Retry, lastID, retry)
	}
}

// seeds cover each rule of 9.2.6 at least once.
var seeds = []string{
	"data: YHOO\ndata: +2\ndata: 10\n\n",                       // data lines joined with LF
	"\uFEFFdata: a\n\n",                                        // a leading BOM
	"\uFEFF\uFEFFdata: a\n\n",                                  // a second BOM is part of the line
	"data: a\r\ndata: b\r\n\r\n",                               // CRLF
	"data: a\rdata: b\r\r",                                     // CR
	"data: a\r\n\rdata: b\n\r\n",                               // all three mixed
	"data\n\ndata\ndata\n\n",                                   // a field without a colon
	"data:  two spaces\n\ndata:none\n\n",                       // one leading space stripped
	"id: 1\ndata: x\n\nid: a\x00b\ndata: y\n\nid\ndata: z\n\n", // NUL ignored, empty id resets
	"retry: 1000\n\nretry: 10a\n\nretry:\n\nretry: -1\n\n",     // digits only
	"event: e\ndata: d\n\nevent: no data\n\ndata: m\n\n",       // dispatched on a blank line only
	"data: incomplete",                                         // discarded at EOF
	"data: incomplete\n",                                       // still no blank line
	": comment\n\n:\n\nfield: ignored\n\n",                     // comments, unknown fields
	"data: \xff\xfe bad UTF-8\n\n",                             // decoded with U+FFFD
}

// FuzzParse: the parser, fed in three pieces cut anywhere, reads what the
// Standard's steps read from the whole stream.
func FuzzParse(f *testing.F) {
	for i, s := range seeds {
		f.Add(s, uint16(i), uint16(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, stream string, a, b uint16) {
		sameAsReference(t, stream, parseIn(stream, int(a)%(len(stream)+1), int(b)%(len(stream)+1)))
	})
}

// FuzzLineEndings: CR, LF and CRLF end lines alike, so a stream of data
// and fields gives the same events whichever one ends its lines.
func FuzzLineEndings(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stream string) {
		if strings.ContainsAny(stream, "\r\n") {
			return // the fuzzer's lines are the fields below
		}
		lines := strings.Split(stream, "|")
		var want []Event
		for i, eol := range []string{"\n", "\r", "\r\n"} {
			p := Parse(strings.Join(lines, eol) + eol + eol)
			if i == 0 {
				want = p.Events
			} else if !slices.Equal(p.Events, want) {
				t.Fatalf("%q with %q line ends: %q, with LF: %q", lines, eol, p.Events, want)
			}
		}
	})
}

// TestRulesAsProperties checks the rules named in 9.2.6 one by one on
// their seeds, against the parser alone (not the reference), so that the
// reference cannot share a mistake with it unnoticed.
func TestRulesAsProperties(t *testing.T) {
	one := func(stream string) []Event { return Parse(stream).Events }
	for _, c := range []struct {
		name, stream string
		want         []Event
	}{
		{"BOM dropped once", "\uFEFFdata: a\n\n", []Event{{"message", "a", ""}}},
		{"second BOM kept", "\uFEFF\uFEFFdata: a\n\n", nil}, // the field is named "\uFEFFdata"
		{"CR, LF, CRLF", "data: a\rdata: b\ndata: c\r\n\n", []Event{{"message", "a\nb\nc", ""}}},
		{"no colon: the line is the field name", "data\n\n", []Event{{"message", "", ""}}},
		{"one leading space stripped", "data:  x\n\n", []Event{{"message", " x", ""}}},
		{"id with NUL ignored", "id: 7\ndata: a\n\nid: 8\x00\ndata: b\n\n", []Event{{"message", "a", "7"}, {"message", "b", "7"}}},
		{"data joined with LF", "data: a\ndata:\ndata: b\n\n", []Event{{"message", "a\n\nb", ""}}},
		{"dispatched only on a blank line", "data: a\n", nil},
		{"incomplete event discarded at EOF", "data: a\n\ndata: b", []Event{{"message", "a", ""}}},
		{"no data, no event", "event: e\nid: 1\n\n", nil},
	} {
		if got := one(c.stream); !slices.Equal(got, c.want) {
			t.Errorf("%s: %q gives %q, want %q", c.name, c.stream, got, c.want)
		}
	}
	for stream, want := range map[string]int64{"retry: 1500\n": 1500, "retry: 15a\n": -1, "retry: \n": -1, "retry: -3\n": -1, "retry:007\n": 7} {
		if got := Parse(stream).Retry; got != want {
			t.Errorf("%q: retry %d, want %d", stream, got, want)
		}
	}
}
