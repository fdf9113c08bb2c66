package engine_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/sseparse"
)

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
	p := sseparse.Parse("id: prev\nevent: old\ndata: old\n\n" + frame)
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
		if p.LastEventID() != wantID {
			t.Fatalf("frame %q: last event id %q, want %q", frame, p.LastEventID(), wantID)
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
