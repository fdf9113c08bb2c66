package cluster

import (
	"strings"
	"testing"
	"unicode"

	"github.com/tinysse/tinysse/engine"
)

func TestSubjectToken(t *testing.T) {
	for _, c := range []struct{ topic, token string }{
		{"", "~"},
		{"news", "news"},
		{"a-b_C9", "a-b_C9"},
		{"a.b", "a~2Eb"},
		{"*", "~2A"},
		{">", "~3E"},
		{"~", "~7E"},
		{"~7E", "~7E7E"},
		{"a b", "a~20b"},
		{"é", "~C3~A9"},
	} {
		if got := subjectToken(c.topic); got != c.token {
			t.Errorf("subjectToken(%q) = %q, want %q", c.topic, got, c.token)
		}
		if back, err := topicOfToken(c.token); err != nil || back != c.topic {
			t.Errorf("topicOfToken(%q) = %q, %v; want %q", c.token, back, err, c.topic)
		}
	}
	for _, bad := range []string{"", "~2", "~G0", "a~", "~2e"} {
		if _, err := topicOfToken(bad); err == nil {
			t.Errorf("topicOfToken(%q) accepted", bad)
		}
	}
}

// FuzzSubjectToken: every topic maps to one valid subject token, and back.
func FuzzSubjectToken(f *testing.F) {
	for _, s := range []string{"", "news", "a.b.c", "*>~", "\x00\xff", "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		tok := subjectToken(topic)
		if tok == "" || strings.ContainsAny(tok, ".*>") || strings.ContainsFunc(tok, func(r rune) bool { return r > 0x7e || unicode.IsSpace(r) || r < 0x21 }) {
			t.Fatalf("subjectToken(%q) = %q is not a safe subject token", topic, tok)
		}
		back, err := topicOfToken(tok)
		if err != nil || back != topic {
			t.Fatalf("round trip %q -> %q -> %q, %v", topic, tok, back, err)
		}
	})
}

func TestWireRoundTrip(t *testing.T) {
	for _, m := range []*engine.Message{
		{Data: "x", HasData: true},
		{ID: "7", Event: "e", Data: "", HasData: true, Topics: []string{"news"}},
		{Comments: []string{"c1", "c2"}, Topics: []string{"a", "b"}},
		{Event: "e", Topics: []string{"a.b"}},
	} {
		b, err := encode(m, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := decode("s", subject("s", m.Topics), b)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != m.ID || got.Event != m.Event || got.Data != m.Data || got.HasData != m.HasData ||
			strings.Join(got.Comments, "|") != strings.Join(m.Comments, "|") || strings.Join(got.Topics, "|") != strings.Join(m.Topics, "|") {
			t.Errorf("round trip of %+v gave %+v", m, got)
		}
	}
	for _, c := range []struct{ subj, payload string }{
		{"s.t.a", "not json"},
		{"s.m", `{"data":"x","topics":["a"]}`},
		{"s.x.a", `{"data":"x"}`},
		{"s.t.a.b", `{"data":"x"}`},
		{"s.t.~Z", `{"data":"x"}`},
		{"s.t.a", `{"data":"x","comments":[null]}`},
		{"s.t.a", `{"data":"x","comments":["c",null]}`},
		{"s.t.a", `{"data":"x","comments":"c"}`},
		{"s.m", `{"data":"x","topics":["a",null]}`},
		{"s.m", `{"data":"x","topics":["a",1]}`},
	} {
		if _, _, err := decode("s", c.subj, []byte(c.payload)); err == nil {
			t.Errorf("decode(%s, %s) accepted", c.subj, c.payload)
		}
	}
}

// TestWireExactKeys: a payload in the stream (which any NATS client may
// write) is read by the HTTP publish's rule: keys matched exactly ("Data"
// is not data), each given once.
func TestWireExactKeys(t *testing.T) {
	for _, c := range []struct{ payload, data string }{
		{`{"data":"exact","Data":"folded","DATA":"upper"}`, "exact"},
		{`{"Data":"folded","data":"exact"}`, "exact"},
		{`{"data":"x","Comments":["c"],"Topics":["a","b"],"ID":"1","Event":"e","note":1}`, "x"},
	} {
		m, _, err := decode("s", "s.t.a", []byte(c.payload))
		if err != nil {
			t.Fatalf("decode(%s): %v", c.payload, err)
		}
		if m.Data != c.data || m.ID != "" || m.Event != "" || len(m.Comments) != 0 || strings.Join(m.Topics, "|") != "a" {
			t.Errorf("decode(%s) = %+v, want data %q and nothing else", c.payload, m, c.data)
		}
	}
	if m, _, err := decode("s", "s.t.a", []byte(`{"DATA":"x"}`)); err != nil || m.HasData {
		t.Errorf(`decode({"DATA":"x"}) = %+v, %v: want no data`, m, err)
	}
	for _, p := range []string{
		`{"data":"a","data":"b"}`,
		`{"data":"a","d\u0061ta":"b"}`,
		`{"id":"1","id":"2","data":"x"}`,
		`{"data":"x","state":{},"state":{"a":1}}`,
		`{"data":"x","note":1,"note":2}`,
	} {
		if _, _, err := decode("s", "s.t.a", []byte(p)); err == nil || !strings.Contains(err.Error(), "given twice") {
			t.Errorf("decode(%s): %v, want a key given twice", p, err)
		}
	}
}

func TestAtLeast(t *testing.T) {
	for v, want := range map[string]bool{"2.10.0": true, "2.15.2": true, "3.0.0": true, "2.9.10": false, "1.99.0": false, "": false, "x": false} {
		if got := atLeast(v, 2, 10); got != want {
			t.Errorf("atLeast(%q, 2, 10) = %v", v, got)
		}
	}
}
