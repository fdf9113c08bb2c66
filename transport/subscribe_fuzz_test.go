package transport

import (
	"bufio"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tinysse/tinysse/engine"
	"github.com/valyala/fasthttp"
)

// FuzzSubscribeRequest reads a subscribe request's query string and
// Last-Event-ID header the way the server does: the raw request through
// fasthttp's parser, then the topics and the last event id. Whatever comes
// in, topics come out unique and checked, and are those of parameters
// named exactly topic; the id is either exactly the one a message could
// have been given (header first, then the first parameter named exactly
// last_event_id) or the marker that matches nothing.
// Seeds: testdata/fuzz/FuzzSubscribeRequest and the ones below.
func FuzzSubscribeRequest(f *testing.F) {
	for _, s := range [][2]string{
		{"", ""},
		{"topic=a&topic=b&topic=a", "7"},
		{"last_event_id=5", ""},
		{"last_event_id=5", "6"},
		{"last_event_id=%00", ""},
		{"last_event_id=%ff%fe", ""},
		{"last_event_id=1%0A2", ""},
		{"topic=&topic=%00", "\xff"},
		{"topic=" + strings.Repeat("t", 300), ""},
		{strings.Repeat("topic=x&", 70), ""},
		{"last_event_id=" + strings.Repeat("9", 257), strings.Repeat("8", 257)},
		{"%zz=%", "é\u2028"},
		{"topic=a;topic=b", " padded "},
		{"TOPIC=a&Topic=b&topic=c&topic%20=d", ""},
		{"Last_Event_ID=5&LAST_EVENT_ID=6", ""},
		{"last_event_id=&last_event_id=7", ""},
		{"top%69c=x&last%5Fevent%5Fid=8", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, query, header string) {
		raw := "GET /sse?" + query + " HTTP/1.1\r\nHost: x\r\nLast-Event-ID: " + header + "\r\n\r\n"
		var ctx fasthttp.RequestCtx
		if err := ctx.Request.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			return // refused before any of our code runs (the server answers 400)
		}
		// The keys that count are exactly "topic" and "last_event_id"
		// (after URL decoding): TOPIC, Topic or Last_Event_ID are other
		// parameters.
		var want []string
		param, hasParam := "", false
		ctx.QueryArgs().VisitAll(func(k, v []byte) {
			switch string(k) {
			case "topic":
				if !slices.Contains(want, string(v)) {
					want = append(want, string(v))
				}
			case "last_event_id":
				if !hasParam {
					param, hasParam = string(v), true
				}
			}
		})
		topics := uniqueTopics(queryTopics(&ctx))
		if !slices.Equal(topics, want) {
			t.Fatalf("query %q: topics %q, want those of the exact key topic: %q", query, topics, want)
		}
		for i, a := range topics {
			for _, b := range topics[:i] {
				if a == b {
					t.Fatalf("topic %q twice in %q", a, topics)
				}
			}
		}
		if err := checkTopics(topics); err == nil {
			if len(topics) > maxTopics {
				t.Fatalf("%d topics accepted", len(topics))
			}
			for _, tp := range topics {
				if len(tp) > maxTopicLen {
					t.Fatalf("topic of %d bytes accepted", len(tp))
				}
			}
		}

		id, has := lastEventID(&ctx)
		hdr := string(ctx.Request.Header.Peek("Last-Event-ID"))
		given := hdr
		if given == "" {
			given = param
		}
		if has != (given != "") {
			t.Fatalf("header %q, parameter %q: has %v", hdr, param, has)
		}
		if !has {
			return
		}
		valid := len(given) <= engine.MaxIDLen && utf8.ValidString(given) && !strings.ContainsAny(given, "\r\n\x00")
		switch {
		case valid && id != given:
			t.Fatalf("valid id %q read as %q", given, id)
		case !valid && id == given:
			t.Fatalf("invalid id %q kept as it is", given)
		case !valid && (&engine.Message{ID: id, Data: "x", HasData: true}).Validate() == nil:
			t.Fatalf("invalid id %q read as %q, which a message could have", given, id)
		}
	})
}
