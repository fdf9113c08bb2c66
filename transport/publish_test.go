package transport

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/sseparse"
)

func TestPublish(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		addr, eng, _ := p.startServer(t, engine.Config{}, Config{})
		sub := subscribed(t, eng, p.subscribe(t, addr, "/sse"), "", 1)

		t.Run("json", func(t *testing.T) {
			sub := sub.on(t)
			r := p.publishJSON(t, addr, `{"id":"1","event":"greet","data":"hello"}`)
			if r.Subscribers != 1 || r.Queued < 1 {
				t.Errorf("reply %+v, want 1 subscriber and queued >= 1", r)
			}
			b := sub.mustNext()
			if b.Raw != "id: 1\nevent: greet\ndata: hello\n\n" {
				t.Fatalf("frame %q", b.Raw)
			}
			if *b.Event != (sseparse.Event{Type: "greet", Data: "hello", LastEventID: "1"}) {
				t.Errorf("event %+v", *b.Event)
			}
		})
		t.Run("json with charset", func(t *testing.T) {
			sub := sub.on(t)
			for _, ct := range []string{"application/json; charset=utf-8", "Application/JSON;charset=UTF-8", "application/json ; charset=\"utf-8\""} {
				a := p.post(t, addr, "/sse", ct, `{"data":"cs"}`)
				if a.Status != http.StatusAccepted {
					t.Fatalf("content type %q: status %d %s", ct, a.Status, a.Body)
				}
				if b := sub.mustNext(); b.Raw != "data: cs\n\n" {
					t.Fatalf("frame %q", b.Raw)
				}
			}
		})
		t.Run("form", func(t *testing.T) {
			sub := sub.on(t)
			a := p.post(t, addr, "/sse", "application/x-www-form-urlencoded; charset=UTF-8",
				"id=2&event=e&data=hello+world%21&comment=c1&comment=c%0A2")
			if a.Status != http.StatusAccepted {
				t.Fatalf("status %d %s", a.Status, a.Body)
			}
			// queued counts this message and, until the shard has finished the
			// pass that delivered the previous one, that one too.
			var r struct{ Queued, Subscribers int }
			if err := json.Unmarshal([]byte(a.Body), &r); err != nil || r.Subscribers != 1 || r.Queued < 1 || r.Queued > 2 {
				t.Errorf("body %s, want subscribers 1 and queued 1 (or 2 while the last pass ends)", a.Body)
			}
			if b := sub.mustNext(); b.Raw != "id: 2\nevent: e\ndata: hello world!\n: c1\n: c\n: 2\n\n" {
				t.Fatalf("frame %q", b.Raw)
			}
		})
		t.Run("no subscribers", func(t *testing.T) {
			sub := sub.on(t)
			a := p.post(t, addr, "/sse?topic=nobody", "application/json", `{"data":"x"}`)
			if a.Status != http.StatusAccepted || a.Body != `{"queued":0,"subscribers":0}` {
				t.Errorf("answer %d %s, want 202 {\"queued\":0,\"subscribers\":0}", a.Status, a.Body)
			}
			sub.quiet(100 * time.Millisecond) // another topic
		})
		t.Run("subscribers counted", func(t *testing.T) {
			sub := sub.on(t)
			other := p.subscribe(t, addr, "/sse")
			other.expectOK()
			subscribed(t, eng, p.subscribe(t, addr, "/sse?topic=elsewhere"), "", 2)
			waitSubscribers(t, eng, "elsewhere", 1)
			if r := p.publishJSON(t, addr, `{"data":"two"}`); r.Subscribers != 2 {
				t.Errorf("subscribers %d, want 2", r.Subscribers)
			}
			sub.expectLines("data: two")
			other.expectLines("data: two")
			other.conn.Close()
			waitSubscribers(t, eng, "", 1)
			if r := p.publishJSON(t, addr, `{"data":"one"}`); r.Subscribers != 1 {
				t.Errorf("subscribers %d after one left, want 1", r.Subscribers)
			}
			sub.expectLines("data: one")
		})
	})
}

// TestPublishQueued: "queued" counts the messages some subscriber has not
// read yet: it grows while one subscriber's socket is full, and falls back
// once that subscriber reads.
func TestPublishQueued(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		addr, eng, _ := p.startServer(t, engine.Config{Capacity: 1024, KeepAlive: -1}, Config{})
		stuck := p.subscribeStalling(t, addr, "/sse?topic=q")
		stuck.expectOK()
		waitSubscribers(t, eng, "q", 1)

		body := fmt.Sprintf(`{"data":%q}`, strings.Repeat("q", 32<<10))
		var r publishReply
		published := 0
		for i := 0; i < 500 && r.Queued < 20; i++ {
			r = p.publishTo(t, addr, "/sse?topic=q", body)
			published++
			if r.Subscribers != 1 {
				t.Fatalf("subscribers %d, want 1", r.Subscribers)
			}
		}
		if r.Queued < 20 {
			t.Fatalf("queued stayed at %d while the subscriber read nothing", r.Queued)
		}
		// Read everything published so far (counted, not judged by a pause:
		// a loaded machine pauses), then publish once more.
		for n := 0; n < published; n++ {
			if _, err := stuck.next(wait); err != nil {
				t.Fatalf("after %d of %d messages: %v", n, published, err)
			}
		}
		// The subscriber caught up on its own goroutine; the count knows it
		// once the shard's next pass has recomputed its lowest cursor
		// (queued is read from the shards' last passes, not computed under
		// a lock per publish), so a publish right after the last byte
		// arrived may still count some of the backlog. Each probe is read
		// before the next is sent.
		deadline := time.Now().Add(wait)
		for i := 0; ; i++ {
			r := p.publishTo(t, addr, "/sse?topic=q", fmt.Sprintf(`{"data":"last %d"}`, i))
			stuck.expectLines(fmt.Sprintf("data: last %d", i))
			if r.Queued == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("queued %d %v after the subscriber caught up, want 1 (the new message)", r.Queued, wait)
			}
		}
	})
}

func TestPublishRefused(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		addr, eng, _ := p.startServer(t, engine.Config{KeepAlive: 100 * time.Millisecond}, Config{MaxBodySize: 1024})
		sub := subscribed(t, eng, p.subscribe(t, addr, "/sse"), "", 1)

		const form = "application/x-www-form-urlencoded"
		const js = "application/json"
		long := strings.Repeat("i", engine.MaxIDLen+1)
		var topics []string
		for i := range 65 {
			topics = append(topics, fmt.Sprintf(`"t%d"`, i))
		}
		manyTopics := strings.Join(topics, ",")

		cases := []struct {
			name, ctype, body string
			status            int
		}{
			{"missing content type", "", `{"data":"x"}`, 415},
			{"text/plain", "text/plain", `{"data":"x"}`, 415},
			{"multipart", "multipart/form-data; boundary=x", "--x--", 415},
			{"json prefix only", "application/jsonx", `{"data":"x"}`, 415},

			{"malformed json", js, `{"data":`, 400},
			{"not json", js, `data=x`, 400},
			{"empty json body", js, ``, 400},
			{"trailing object", js, `{"data":"x"} {"data":"y"}`, 400},
			{"trailing garbage", js, `{"data":"x"}garbage`, 400},
			{"json array of numbers", js, `[1]`, 400}, // an array of messages is a batch (batch_test.go)
			{"json string", js, `"x"`, 400},
			{"json null", js, `null`, 400},
			{"data number", js, `{"data":5}`, 400},
			{"id number", js, `{"id":1,"data":"x"}`, 400},
			{"event bool", js, `{"event":true,"data":"x"}`, 400},
			{"data object", js, `{"data":{"a":1}}`, 400},
			{"comment number", js, `{"comment":5}`, 400},
			{"comment list of numbers", js, `{"comment":[1,2]}`, 400},
			{"topic object", js, `{"data":"x","topic":{}}`, 400},
			{"empty message", js, `{}`, 400},
			{"unknown fields only", js, `{"foo":"bar"}`, 400},
			{"null fields only", js, `{"id":null,"data":null,"comment":null}`, 400},
			{"invalid utf-8 json", js, "{\"data\":\"\xff\"}", 400},

			{"empty form", form, ``, 400},
			{"form without fields", form, `foo=bar`, 400},
			{"bad form escape", form, `data=%zz`, 400},
			{"truncated form escape", form, `data=%`, 400},
			{"invalid utf-8 form escape", form, `data=%ff`, 400},
			{"invalid utf-8 form bytes", form, "data=\xff", 400},
			{"invalid utf-8 form comment", form, `comment=%c3%28`, 400},

			{"LF in id", js, `{"id":"a\nb","data":"x"}`, 400},
			{"CR in id", js, `{"id":"a\rb","data":"x"}`, 400},
			{"NUL in id", js, `{"id":"a\u0000b","data":"x"}`, 400},
			{"LF in event", js, `{"event":"x\ndata: injected","data":"x"}`, 400},
			{"CRLF in event", js, `{"event":"a\r\nb","data":"x"}`, 400},
			{"NUL in event", js, `{"event":"\u0000","data":"x"}`, 400},
			{"CR in form id", form, `id=a%0Db&data=x`, 400},
			{"LF in form event", form, `event=a%0Aid:%202&data=x`, 400},
			{"NUL in form event", form, `event=%00&data=x`, 400},
			{"id of 257 bytes", js, `{"id":"` + long + `","data":"x"}`, 400},
			{"control character in topic", js, `{"data":"x","topic":"a\u0001"}`, 400},
			{"65 topics", js, `{"data":"x","topic":[` + manyTopics + `]}`, 400},

			{"body over the limit", js, `{"data":"` + strings.Repeat("x", 1100) + `"}`, 413},
		}
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				sub := sub.on(t)
				wantError(t, p.post(t, addr, "/sse", c.ctype, c.body), c.status)
				checkNothingPublished(t, addr, sub, i)
			})
		}

		t.Run("body at the limit", func(t *testing.T) {
			sub := sub.on(t)
			body := `{"data":"` + strings.Repeat("x", 1024-len(`{"data":""}`)) + `"}`
			p.publishJSON(t, addr, body)
			if b := sub.nextSkipping(isKeepAlive); b.Event == nil || len(b.Event.Data) != 1024-len(`{"data":""}`) {
				t.Fatalf("frame %.40q...", b.Raw)
			}
		})
		if p.h2 {
			t.Run("413 for a body of unknown length", func(t *testing.T) {
				// No content-length: DATA frames until the end of the
				// stream, refused once they pass the limit.
				sub := sub.on(t)
				body := `{"data":"` + strings.Repeat("x", 2000) + `"}`
				a := p.do(t, http.MethodPost, "http://"+addr+"/sse", "", "Content-Type", js, bodyOfUnknownLength, body)
				wantError(t, a, http.StatusRequestEntityTooLarge)
				checkNothingPublished(t, addr, sub, 1000)
			})
			t.Run("under the limit, unknown length, is accepted", func(t *testing.T) {
				sub := sub.on(t)
				a := p.do(t, http.MethodPost, "http://"+addr+"/sse", "", "Content-Type", js, bodyOfUnknownLength, `{"data":"streamed"}`)
				if a.Status != http.StatusAccepted {
					t.Fatalf("status %d %s", a.Status, a.Body)
				}
				sub.expectLines("data: streamed")
			})
			// The subtests below write HTTP/1.1 framing on a raw socket:
			// HTTP/2 has none of it (x/net parses HTTP/2's frames).
			return
		}
		t.Run("413 with content-length on a raw socket", func(t *testing.T) {
			sub := sub.on(t)
			body := `{"data":"` + strings.Repeat("x", 2000) + `"}`
			a := rawExchange(t, addr, "POST /sse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
				fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body))+body)
			wantError(t, a, http.StatusRequestEntityTooLarge)
			checkNothingPublished(t, addr, sub, 1000)
		})
		t.Run("413 with chunked transfer encoding", func(t *testing.T) {
			sub := sub.on(t)
			chunk := strings.Repeat("y", 700)
			body := fmt.Sprintf("9\r\n{\"data\":\"\r\n%x\r\n%s\r\n%x\r\n%s\r\n2\r\n\"}\r\n0\r\n\r\n", len(chunk), chunk, len(chunk), chunk)
			a := rawExchange(t, addr, "POST /sse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
				"Transfer-Encoding: chunked\r\n\r\n"+body)
			wantError(t, a, http.StatusRequestEntityTooLarge)
			checkNothingPublished(t, addr, sub, 1001)
		})
		t.Run("chunked under the limit is accepted", func(t *testing.T) {
			sub := sub.on(t)
			body := "5\r\n{\"dat\r\n9\r\na\":\"chunk\r\n2\r\n\"}\r\n0\r\n\r\n"
			a := rawExchange(t, addr, "POST /sse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
				"Transfer-Encoding: chunked\r\n\r\n"+body)
			if a.Status != http.StatusAccepted {
				t.Fatalf("status %d %s", a.Status, a.Body)
			}
			sub.nextSkipping(isKeepAlive)
		})
		t.Run("malformed request line", func(t *testing.T) {
			sub := sub.on(t)
			a := rawExchange(t, addr, "NONSENSE\r\n\r\n")
			wantError(t, a, http.StatusBadRequest)
			checkNothingPublished(t, addr, sub, 1002)
		})
	})
}

// checkNothingPublished publishes a marker and requires it to be the next
// thing the subscriber sees besides keep-alives: whatever a refused request
// might have published would come before it. It also shows the server
// still serves.
func checkNothingPublished(t *testing.T, addr string, sub *sseClient, i int) {
	t.Helper()
	publishJSON(t, addr, fmt.Sprintf(`{"id":"marker-%d","data":"marker"}`, i))
	want := fmt.Sprintf("id: marker-%d\ndata: marker\n\n", i)
	if b := sub.nextSkipping(isKeepAlive); b.Raw != want {
		t.Fatalf("subscriber got %q, want only the marker %q", b.Raw, want)
	}
}

// TestWireFormat publishes messages and reads exactly the bytes the
// subscriber gets and the event a browser would make of them.
func TestWireFormat(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		addr, eng, _ := p.startServer(t, engine.Config{}, Config{})
		sub := subscribed(t, eng, p.subscribe(t, addr, "/sse"), "", 1)

		id256 := strings.Repeat("7", engine.MaxIDLen)
		cases := []struct {
			name, body, raw string
			event           *sseparse.Event // nil: nothing dispatched
		}{
			{"field order", `{"comment":["x","y"],"data":"d","event":"ev","id":"7"}`,
				"id: 7\nevent: ev\ndata: d\n: x\n: y\n\n", &sseparse.Event{Type: "ev", Data: "d", LastEventID: "7"}},
			{"LF splits data", `{"data":"a\nb"}`, "data: a\ndata: b\n\n", &sseparse.Event{Type: "message", Data: "a\nb", LastEventID: "7"}},
			{"CRLF splits data", `{"data":"a\r\nb"}`, "data: a\ndata: b\n\n", &sseparse.Event{Type: "message", Data: "a\nb", LastEventID: "7"}},
			{"CR splits data", `{"data":"a\rb"}`, "data: a\ndata: b\n\n", &sseparse.Event{Type: "message", Data: "a\nb", LastEventID: "7"}},
			{"mixed line ends", `{"data":"a\nb\r\nc\rd"}`, "data: a\ndata: b\ndata: c\ndata: d\n\n", &sseparse.Event{Type: "message", Data: "a\nb\nc\nd", LastEventID: "7"}},
			{"CR CR is two line ends", `{"data":"a\r\rb"}`, "data: a\ndata: \ndata: b\n\n", &sseparse.Event{Type: "message", Data: "a\n\nb", LastEventID: "7"}},
			{"LF CR is two line ends", `{"data":"a\n\rb"}`, "data: a\ndata: \ndata: b\n\n", &sseparse.Event{Type: "message", Data: "a\n\nb", LastEventID: "7"}},
			{"trailing line end", `{"data":"a\n"}`, "data: a\ndata: \n\n", &sseparse.Event{Type: "message", Data: "a\n", LastEventID: "7"}},
			{"only a line end", `{"data":"\r\n"}`, "data: \ndata: \n\n", &sseparse.Event{Type: "message", Data: "\n", LastEventID: "7"}},
			{"empty data", `{"data":""}`, "data: \n\n", &sseparse.Event{Type: "message", Data: "", LastEventID: "7"}},
			{"leading space", `{"data":" x"}`, "data:  x\n\n", &sseparse.Event{Type: "message", Data: " x", LastEventID: "7"}},
			{"leading colon", `{"data":":x"}`, "data: :x\n\n", &sseparse.Event{Type: "message", Data: ":x", LastEventID: "7"}},
			{"looks like a field", `{"data":"id: 99\nevent: evil"}`, "data: id: 99\ndata: event: evil\n\n", &sseparse.Event{Type: "message", Data: "id: 99\nevent: evil", LastEventID: "7"}},
			{"unicode", `{"data":"héllo ✓ 🎉 \u2028 end","event":"ünï"}`, "event: ünï\ndata: héllo ✓ 🎉 \u2028 end\n\n", &sseparse.Event{Type: "ünï", Data: "héllo ✓ 🎉 \u2028 end", LastEventID: "7"}},
			{"NUL in data", `{"data":"a\u0000b"}`, "data: a\x00b\n\n", &sseparse.Event{Type: "message", Data: "a\x00b", LastEventID: "7"}},
			{"event with colon and spaces", `{"event":"a: b ","data":"x"}`, "event: a: b \ndata: x\n\n", &sseparse.Event{Type: "a: b ", Data: "x", LastEventID: "7"}},
			{"comment with line breaks", `{"comment":["one\ntwo\r\nthree\rfour"]}`, ": one\n: two\n: three\n: four\n\n", nil},
			{"comment list", `{"comment":["a","","b\nc"]}`, ": a\n: \n: b\n: c\n\n", nil},
			{"event without data", `{"event":"e"}`, "event: e\n\n", nil},
			{"id without data", `{"id":"8"}`, "id: 8\n\n", nil},
			{"id carries over", `{"data":"after 8"}`, "data: after 8\n\n", &sseparse.Event{Type: "message", Data: "after 8", LastEventID: "8"}},
			{"id with leading space", `{"id":" 9","data":"x"}`, "id:  9\ndata: x\n\n", &sseparse.Event{Type: "message", Data: "x", LastEventID: " 9"}},
			{"id of 256 bytes", `{"id":"` + id256 + `","data":"x"}`, "id: " + id256 + "\ndata: x\n\n", &sseparse.Event{Type: "message", Data: "x", LastEventID: id256}},
			{"form line ends", "", "data: a\ndata: b\ndata: c\n\n", &sseparse.Event{Type: "message", Data: "a\nb\nc", LastEventID: id256}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				sub := sub.on(t)
				if c.body == "" {
					a := p.post(t, addr, "/sse", "application/x-www-form-urlencoded", "data=a%0D%0Ab%0Dc")
					if a.Status != http.StatusAccepted {
						t.Fatalf("status %d %s", a.Status, a.Body)
					}
				} else {
					p.publishJSON(t, addr, c.body)
				}
				b := sub.mustNext()
				if b.Raw != c.raw {
					t.Fatalf("frame %q\nwant  %q", b.Raw, c.raw)
				}
				switch {
				case c.event == nil && b.Event != nil:
					t.Errorf("dispatched %+v, want no event", *b.Event)
				case c.event != nil && b.Event == nil:
					t.Errorf("no event dispatched, want %+v", *c.event)
				case c.event != nil && *b.Event != *c.event:
					t.Errorf("event %+v, want %+v", *b.Event, *c.event)
				}
			})
		}
	})
}

// TestPublishExactKeys: a JSON body's keys are matched exactly ("DATA" and
// "Data" are not data: they are unknown keys, ignored like any other) and
// each key may be given once, so a body cannot say one thing to a proxy or
// script that reads the first of two keys, or folds case, and another to
// the server. A key given twice is a 400 naming it, in JSON (even a key
// the server does not know) and, for the single fields, in a form.
func TestPublishExactKeys(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		addr, eng, _ := p.startServer(t, engine.Config{}, Config{})
		sub := p.subscribe(t, addr, "/sse")
		sub.expectOK()
		secret := subscribed(t, eng, p.subscribe(t, addr, "/sse?topic=secret"), "", 1)
		waitSubscribers(t, eng, "secret", 1)

		const js, form = "application/json", "application/x-www-form-urlencoded"
		refused := []struct {
			name, ctype, body, key string
		}{
			{"upper-case key only", js, `{"DATA":"x"}`, ""},
			{"mixed-case keys only", js, `{"Data":"x","Id":"1","Event":"e","Comment":"c"}`, ""},
			{"data twice", js, `{"data":"a","data":"b"}`, "data"},
			{"data twice, once escaped", js, `{"data":"a","d\u0061ta":"b"}`, "data"},
			{"id twice", js, `{"id":"1","id":"2","data":"x"}`, "id"},
			{"event twice", js, `{"event":"a","data":"x","event":"b"}`, "event"},
			{"comment twice", js, `{"comment":["a"],"comment":["b"]}`, "comment"},
			{"topic twice", js, `{"data":"x","topic":"a","topic":"secret"}`, "topic"},
			{"null then a value", js, `{"data":null,"data":"x"}`, "data"},
			{"unknown key twice", js, `{"data":"x","note":1,"note":2}`, "note"},
			{"form data twice", form, `data=a&data=b`, "data"},
			{"form id twice", form, `id=1&data=x&id=2`, "id"},
			{"form event twice", form, `event=a&event=b&data=x`, "event"},
		}
		for i, c := range refused {
			t.Run(c.name, func(t *testing.T) {
				sub := sub.on(t)
				a := p.post(t, addr, "/sse", c.ctype, c.body)
				wantError(t, a, http.StatusBadRequest)
				if c.key != "" && !strings.Contains(a.Body, `key \"`+c.key+`\" given twice`) {
					t.Errorf("error %s does not name the key %q", a.Body, c.key)
				}
				checkNothingPublished(t, addr, sub, 2000+i)
			})
		}

		// Accepted: only the exact keys count.
		for _, c := range []struct {
			name, ctype, body, raw string
		}{
			{"exact key first", js, `{"data":"exact","Data":"folded","DATA":"upper"}`, "data: exact\n\n"},
			{"exact key last", js, `{"Data":"folded","data":"exact"}`, "data: exact\n\n"},
			{"case variants of every field", js, `{"ID":"9","Event":"x","data":"d","Comment":"c","ID ":"8"}`, "data: d\n\n"},
			{"unknown keys ignored", js, `{"data":"d","note":{"data":"nested"},"extra":[1,2]}`, "data: d\n\n"},
			{"form keys are exact too", form, `data=exact&Data=folded&DATA=upper`, "data: exact\n\n"},
			{"form comments repeat", form, `data=d&comment=a&comment=b`, "data: d\n: a\n: b\n\n"},
		} {
			t.Run(c.name, func(t *testing.T) {
				sub := sub.on(t)
				if a := p.post(t, addr, "/sse", c.ctype, c.body); a.Status != http.StatusAccepted {
					t.Fatalf("status %d %s, want 202", a.Status, a.Body)
				}
				if b := sub.mustNext(); b.Raw != c.raw {
					t.Fatalf("frame %q, want %q", b.Raw, c.raw)
				}
			})
		}
		// "Topic" is not topic: the message goes to the default topic only.
		t.Run("Topic is not topic", func(t *testing.T) {
			sub := sub.on(t)
			p.publishJSON(t, addr, `{"data":"to the default topic","Topic":"secret","TOPIC":["secret"]}`)
			sub.expectLines("data: to the default topic")
			secret.on(t).quiet(100 * time.Millisecond)
		})
	})
}
