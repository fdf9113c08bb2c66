package transport

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/tinysse/tinysse/engine"
	"github.com/valyala/fasthttp"
)

// publishContentTypes are the content types FuzzDecodePublish picks from by
// index; the last slot takes the fuzzer's own string.
var publishContentTypes = []string{
	"application/json",
	"application/x-www-form-urlencoded",
	"application/json; charset=utf-8",
	"Application/X-WWW-Form-Urlencoded ; charset=utf-8",
}

func FuzzDecodePublish(f *testing.F) {
	const js, form = 0, 1
	seeds := []struct {
		ct   uint8
		raw  string
		body string
	}{
		{js, "", `{"id":"1","event":"e","data":"hello","comment":["a","b"],"topic":"t"}`},
		{js, "", `{"data":""}`},
		{js, "", `{"comment":"one"}`},
		{js, "", `{"topic":["a","b"],"data":"x"}`},
		{js, "", `{}`},
		{js, "", `null`},
		{js, "", `[]`},
		{js, "", `"string"`},
		{js, "", ``},
		{js, "", `{"data":1}`},
		{js, "", `{"data":true}`},
		{js, "", `{"id":{"nested":"x"}}`},
		{js, "", `{"comment":[1,2]}`},
		{js, "", `{"comment":[["nested"]]}`},
		{js, "", `{"topic":{"a":1}}`},
		{js, "", `{"data":1e999999}`},
		{js, "", `{"id":123456789012345678901234567890}`},
		{js, "", `{"data":"x"} {"data":"y"}`},
		{js, "", `{"data":"x"}garbage`},
		{js, "", `{"data":"x"`},
		{js, "", `{"data":"\u0000\ud800\n"}`},
		{js, "", `{"id":"a\nb","data":"x"}`},
		{js, "", "{\"data\":\"\xff\"}"},
		{js, "", `{"DATA":"case","Id":"x"}`},
		{js, "", `{"data":null,"id":null,"comment":null}`},
		{js, "", `{"data":"a","data":"b"}`},
		{js, "", `{"data":"a","d\u0061ta":"b"}`},
		{js, "", `{"Data":"folded","data":"exact","TOPIC":"t"}`},
		{js, "", `{"data":"x","note":1,"note":2}`},
		{js, "", `{"data":"x","\u0000":1,"\ud800":2,"\udc00":3}`},
		{js, "", "{\"data\":\"x\",\"i\u0307d\":\"1\",\"\u212Aey\":1}"},
		{form, "", `id=1&event=e&data=hello&comment=a&comment=b&topic=t`},
		{form, "", `data=`},
		{form, "", `data`},
		{form, "", ``},
		{form, "", `data=%ZZ`},
		{form, "", `data=%00%0A&id=%0D`},
		{form, "", `data=%ff`},
		{form, "", "data=\xff"},
		{form, "", `data=a;b`},
		{form, "", `=&&=x`},
		{form, "", `data=a+b&data=c`},
		{form, "", `data=exact&DATA=upper&Data=folded`},
		{form, "", `id=1&id=1&data=x`},
		{form, "", `comment=a&comment=b&topic=a&topic=b&data=x`},
		{2, "", `{"data":"x"}`},
		{3, "", `data=x`},
		{4, "text/plain", `data=x`},
		{4, "", `{"data":"x"}`},
		{4, "application/json;", `{"data":"x"}`},
		{4, "APPLICATION/JSON", `{"data":"x"}`},
		{4, "multipart/form-data; boundary=x", "--x\r\n"},
		{4, "\xff;\x00", `{}`},
	}
	for _, s := range seeds {
		f.Add(s.ct, s.raw, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, ct uint8, raw string, body []byte) {
		contentType := raw
		if int(ct) < len(publishContentTypes) {
			contentType = publishContentTypes[ct]
		}
		m, status, err := decodePublish([]byte(contentType), body)
		if err != nil && strings.Contains(err.Error(), "given twice") {
			checkGivenTwice(t, mediaType([]byte(contentType)), body, err)
		}
		if err != nil {
			if m != nil {
				t.Fatalf("decodePublish(%q, %q) returned a message with error %v", contentType, body, err)
			}
			if status != fasthttp.StatusBadRequest && status != fasthttp.StatusUnsupportedMediaType {
				t.Fatalf("decodePublish(%q, %q) failed with status %d: %v", contentType, body, status, err)
			}
			if err.Error() == "" {
				t.Fatalf("decodePublish(%q, %q): empty error text", contentType, body)
			}
			return
		}
		if m == nil {
			t.Fatalf("decodePublish(%q, %q): nil message and no error", contentType, body)
		}
		if status != 0 {
			t.Fatalf("decodePublish(%q, %q): status %d without error", contentType, body, status)
		}
		if mt := mediaType([]byte(contentType)); mt != "application/json" && mt != "application/x-www-form-urlencoded" {
			t.Fatalf("decodePublish accepted content type %q", contentType)
		}
		if err := m.Validate(); err != nil && !errors.Is(err, engine.ErrInvalid) {
			t.Fatalf("decodePublish(%q, %q): Validate returned %v, not ErrInvalid", contentType, body, err)
		}
		if !m.HasData && m.Data != "" {
			t.Fatalf("decodePublish(%q, %q): data %q without HasData", contentType, body, m.Data)
		}
		checkExactKeys(t, mediaType([]byte(contentType)), body, m)
		// Whatever was accepted and validates must also encode as one frame.
		if m.Validate() == nil {
			frame := engine.AppendFrame(nil, m)
			if len(frame) < 2 || string(frame[len(frame)-2:]) != "\n\n" {
				t.Fatalf("frame %q does not end an event", frame)
			}
		}
	})
}

// checkExactKeys judges an accepted body by encoding/json and net/url,
// which keep keys as they are written: each field of m is what the body
// gives under exactly its own key (a key differing in case counts for
// nothing), and no single field is given twice.
func checkExactKeys(t *testing.T, mt string, body []byte, m *engine.Message) {
	t.Helper()
	var id, event, data *string
	var comments, topics []string
	switch mt {
	case "application/json":
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", body, err)
		}
		if n := countMembers(t, body); n != len(raw) {
			t.Fatalf("accepted %q, which has %d members and %d distinct keys", body, n, len(raw))
		}
		str := func(k string) *string {
			var s *string
			if v, ok := raw[k]; ok {
				if err := json.Unmarshal(v, &s); err != nil {
					t.Fatalf("accepted %q, whose %s is %s", body, k, v)
				}
			}
			return s
		}
		list := func(k string) []string {
			var l stringList
			if v, ok := raw[k]; ok {
				if err := json.Unmarshal(v, &l); err != nil {
					t.Fatalf("accepted %q, whose %s is %s", body, k, v)
				}
			}
			return l
		}
		id, event, data, comments, topics = str("id"), str("event"), str("data"), list("comment"), list("topic")
	case "application/x-www-form-urlencoded":
		v, err := url.ParseQuery(string(body))
		if err != nil {
			t.Fatalf("accepted form %q, which net/url refuses: %v", body, err)
		}
		one := func(k string) *string {
			switch len(v[k]) {
			case 0:
				return nil
			case 1:
				return &v[k][0]
			}
			t.Fatalf("accepted form %q, which gives %s %d times", body, k, len(v[k]))
			return nil
		}
		id, event, data, comments, topics = one("id"), one("event"), one("data"), v["comment"], v["topic"]
	default:
		return
	}
	deref := func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	}
	if m.ID != deref(id) || m.Event != deref(event) || m.Data != deref(data) || m.HasData != (data != nil) ||
		!slices.Equal(m.Comments, comments) || !slices.Equal(m.Topics, topics) {
		t.Fatalf("%s %q read as id %q event %q data %q (%v) comments %q topics %q; its exact keys say id %q event %q data %q comments %q topics %q",
			mt, body, m.ID, m.Event, m.Data, m.HasData, m.Comments, m.Topics, deref(id), deref(event), deref(data), comments, topics)
	}
}

// checkGivenTwice: a body refused for a key given twice does give it twice.
func checkGivenTwice(t *testing.T, mt string, body []byte, err error) {
	t.Helper()
	switch mt {
	case "application/json":
		var raw map[string]json.RawMessage
		if jerr := json.Unmarshal(body, &raw); jerr != nil {
			t.Fatalf("%q refused as %v, but it is not a JSON object: %v", body, err, jerr)
		}
		if n := countMembers(t, body); n == len(raw) {
			t.Fatalf("%q refused as %v, but its %d keys are distinct", body, err, n)
		}
	case "application/x-www-form-urlencoded":
		v, _ := url.ParseQuery(string(body))
		if len(v["id"]) < 2 && len(v["event"]) < 2 && len(v["data"]) < 2 {
			t.Fatalf("form %q refused as %v, but gives no single field twice", body, err)
		}
	default:
		t.Fatalf("%s %q refused as %v", mt, body, err)
	}
}

// countMembers counts the members of the JSON object b with encoding/json's
// tokenizer, a key counted as often as it appears.
func countMembers(t *testing.T, b []byte) int {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for dec.More() {
		var v json.RawMessage
		if _, err := dec.Token(); err != nil {
			t.Fatal(err)
		}
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}
