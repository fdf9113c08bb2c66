package transport

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
)

func TestSubscribe(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		addr, eng, _ := p.startServer(t, engine.Config{}, Config{})

		t.Run("head", func(t *testing.T) {
			s := p.subscribe(t, addr, "/sse")
			if s.Status != http.StatusOK {
				t.Fatalf("status %d %s", s.Status, s.Body)
			}
			if ct := s.Header.Get("Content-Type"); ct != "text/event-stream" {
				t.Errorf("content type %q, want text/event-stream", ct)
			}
			if cc := s.Header.Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("cache control %q, want no-cache", cc)
			}
			s.expectOK()
			waitSubscribers(t, eng, "", 1)
			s.quiet(100 * time.Millisecond)
			s.conn.Close()
			waitSubscribers(t, eng, "", 0)
		})
		t.Run("bad topic", func(t *testing.T) {
			s := p.subscribe(t, addr, "/sse?topic=%01")
			wantError(t, answer{Status: s.Status, Header: s.Header, Body: s.Body}, http.StatusBadRequest)
		})
		t.Run("client talking is ignored", func(t *testing.T) {
			var s *sseClient
			var talk func([]byte) error
			if p.h2 {
				// Over HTTP/2 a client talks on its stream in DATA frames:
				// a GET whose body stays open.
				pr, pw := io.Pipe()
				defer pw.Close()
				s = p.subscribeBody(t, addr, "/sse?topic=chatty", pr)
				talk = func(b []byte) error { _, err := pw.Write(b); return err }
			} else {
				s = p.subscribe(t, addr, "/sse?topic=chatty")
				talk = func(b []byte) error { _, err := s.conn.(net.Conn).Write(b); return err }
			}
			s.expectOK()
			waitSubscribers(t, eng, "chatty", 1)
			if err := talk([]byte("hello?\r\n")); err != nil {
				t.Fatal(err)
			}
			p.publishTo(t, addr, "/sse?topic=chatty", `{"data":"still here"}`)
			s.expectLines("data: still here")
		})
	})
}

func TestKeepAlive(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		const every = 100 * time.Millisecond
		addr, _, _ := p.startServer(t, engine.Config{KeepAlive: every, KeepAliveText: "still here"}, Config{})
		s := p.subscribe(t, addr, "/sse")
		s.expectOK()
		start := time.Now()
		const n = 4
		for range n {
			s.expectLines(": still here")
		}
		// Each is due every after the last write; the sweep runs every/4.
		if el := time.Since(start); el < n*every-20*time.Millisecond || el > 3*time.Second {
			t.Errorf("%d keep-alives took %v, want about %v", n, el, n*every)
		}

		t.Run("messages postpone it", func(t *testing.T) {
			// Messages count as writes: while they flow, no keep-alive is due.
			const every = 500 * time.Millisecond
			addr, _, _ := p.startServer(t, engine.Config{KeepAlive: every}, Config{})
			s := p.subscribe(t, addr, "/sse")
			s.expectOK()
			for range 10 {
				p.publishJSON(t, addr, `{"data":"busy"}`)
				s.expectLines("data: busy")
				time.Sleep(every / 5)
			}
			s.expectLines(": keep-alive")
		})
		t.Run("multi-line text", func(t *testing.T) {
			addr, _, _ := p.startServer(t, engine.Config{KeepAlive: every, KeepAliveText: "one\ntwo"}, Config{})
			s := p.subscribe(t, addr, "/sse")
			s.expectOK()
			if b := s.mustNext(); b.Raw != ": one\n: two\n\n" {
				t.Fatalf("keep-alive %q", b.Raw)
			}
		})
		t.Run("off", func(t *testing.T) {
			addr, _, _ := p.startServer(t, engine.Config{KeepAlive: -1}, Config{})
			s := p.subscribe(t, addr, "/sse")
			s.expectOK()
			s.quiet(3 * every)
		})
	})
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		addr, eng, _ := p.startServer(t, engine.Config{Timeout: 300 * time.Millisecond, TimeoutRetry: 1500 * time.Millisecond}, Config{})
		start := time.Now()
		s := p.subscribe(t, addr, "/sse")
		s.expectOK()
		b := s.expectLines(": timeout", "retry: 1500")
		if el := time.Since(start); el < 290*time.Millisecond || el > 3*time.Second {
			t.Errorf("timed out after %v, want about 300ms", el)
		}
		if b.Retry != 1500 || b.Raw != ": timeout\nretry: 1500\n\n" {
			t.Errorf("block %q (retry %d)", b.Raw, b.Retry)
		}
		if rest := s.drain(wait); len(rest) != 0 {
			t.Errorf("after the timeout the stream carried %q", rest[0].Raw)
		}
		waitSubscribers(t, eng, "", 0)
	})
}

func TestTopics(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		addr, eng, _ := p.startServer(t, engine.Config{}, Config{})
		subs := map[string]*sseClient{
			"a":       p.subscribe(t, addr, "/sse?topic=a"),
			"b":       p.subscribe(t, addr, "/sse?topic=b"),
			"a+b":     p.subscribe(t, addr, "/sse?topic=a&topic=b"),
			"a+a":     p.subscribe(t, addr, "/sse?topic=a&topic=a"),
			"default": p.subscribe(t, addr, "/sse"),
		}
		for _, s := range subs {
			s.expectOK()
		}
		waitSubscribers(t, eng, "a", 3)
		waitSubscribers(t, eng, "b", 2)
		waitSubscribers(t, eng, "", 1)

		pubs := []struct {
			target, body string
			subscribers  int
		}{
			{"/sse?topic=a", `{"id":"1","data":"a"}`, 3},
			{"/sse?topic=b", `{"id":"2","data":"b"}`, 2},
			{"/sse", `{"id":"3","data":"default"}`, 1},
			{"/sse", `{"id":"4","data":"a by body","topic":"a"}`, 3},
			{"/sse", `{"id":"5","data":"b by body list","topic":["b"]}`, 2},
			{"/sse?topic=a&topic=a", `{"id":"6","data":"a twice","topic":"a"}`, 3},
			{"/sse?topic=nobody", `{"id":"7","data":"nobody"}`, 0},
		}
		for _, pub := range pubs {
			if r := p.publishTo(t, addr, pub.target, pub.body); r.Subscribers != pub.subscribers {
				t.Errorf("POST %s %s: subscribers %d, want %d", pub.target, pub.body, r.Subscribers, pub.subscribers)
			}
		}
		t.Run("a and b", func(t *testing.T) {
			// Four distinct subscribers read topic a or b; one of them reads
			// both. The answer is documented as a sum over the topics (an exact
			// count of distinct subscribers would cost a walk over them per
			// publish), so that one counts twice.
			r := p.publishTo(t, addr, "/sse?topic=a&topic=b", `{"id":"8","data":"a and b"}`)
			if r.Subscribers != 5 {
				t.Errorf("subscribers %d for a message to topics a and b, want 5 (3 on a + 2 on b)", r.Subscribers)
			}
		})
		p.publishTo(t, addr, "/sse", `{"id":"9","data":"a and b by body","topic":["a","b"]}`)
		for _, q := range []string{"topic=a", "topic=b", "topic=", "topic=nobody"} {
			p.publishTo(t, addr, "/sse?"+q, `{"data":"end"}`)
		}

		want := map[string][]string{
			"a":       {"1", "4", "6", "8", "9"},
			"b":       {"2", "5", "8", "9"},
			"a+b":     {"1", "2", "4", "5", "6", "8", "9"},
			"a+a":     {"1", "4", "6", "8", "9"},
			"default": {"3"},
		}
		for name, s := range subs {
			var ids []string
			for {
				b := s.mustNext()
				if b.Event == nil {
					t.Fatalf("%s: unexpected block %q", name, b.Raw)
				}
				if b.Event.Data == "end" {
					break
				}
				ids = append(ids, b.Event.LastEventID)
			}
			if !slices.Equal(ids, want[name]) {
				t.Errorf("subscriber of %s got ids %q, want %q", name, ids, want[name])
			}
		}
		t.Run("the empty topic is the default stream", func(t *testing.T) {
			p.publishTo(t, addr, "/sse?topic=", `{"data":"empty topic"}`)
			subs["default"].on(t).expectLines("data: empty topic")
		})
	})
}

func TestReplay(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		addr, _, _ := p.startServer(t, engine.Config{Capacity: 8}, Config{})
		// Each subtest has its topic, so they do not see each other's messages.
		publishN := func(t *testing.T, topic string, from, to int) {
			t.Helper()
			for i := from; i <= to; i++ {
				p.publishTo(t, addr, "/sse?topic="+topic, fmt.Sprintf(`{"id":"%d","data":"m%d"}`, i, i))
			}
		}
		expectIDs := func(t *testing.T, s *sseClient, ids ...int) {
			t.Helper()
			for _, id := range ids {
				s.expectLines("id: "+strconv.Itoa(id), "data: m"+strconv.Itoa(id))
			}
		}

		t.Run("header", func(t *testing.T) {
			publishN(t, "h", 1, 5)
			s := p.subscribe(t, addr, "/sse?topic=h", "Last-Event-ID", "3")
			s.expectOK()
			expectIDs(t, s, 4, 5)
			s.quiet(100 * time.Millisecond)
			publishN(t, "h", 6, 6)
			expectIDs(t, s, 6)
		})
		t.Run("query", func(t *testing.T) {
			publishN(t, "q", 1, 5)
			s := p.subscribe(t, addr, "/sse?topic=q&last_event_id=3")
			s.expectOK()
			expectIDs(t, s, 4, 5)
			publishN(t, "q", 6, 6)
			expectIDs(t, s, 6)
		})
		t.Run("header wins over query", func(t *testing.T) {
			publishN(t, "w", 1, 5)
			s := p.subscribe(t, addr, "/sse?topic=w&last_event_id=1", "Last-Event-ID", "4")
			s.expectOK()
			expectIDs(t, s, 5)
			s.quiet(100 * time.Millisecond)
		})
		t.Run("latest id", func(t *testing.T) {
			publishN(t, "l", 1, 3)
			s := p.subscribe(t, addr, "/sse?topic=l", "Last-Event-ID", "3")
			s.expectOK()
			s.quiet(100 * time.Millisecond)
			publishN(t, "l", 4, 4)
			expectIDs(t, s, 4)
		})
		t.Run("unknown id", func(t *testing.T) {
			publishN(t, "u", 1, 3)
			s := p.subscribe(t, addr, "/sse?topic=u", "Last-Event-ID", "nope")
			s.expectOK()
			s.expectLines(": replay-gap")
			s.quiet(100 * time.Millisecond)
			publishN(t, "u", 4, 4)
			expectIDs(t, s, 4)
		})
		t.Run("evicted id", func(t *testing.T) {
			publishN(t, "e", 1, 20) // the ring keeps 13..20
			s := p.subscribe(t, addr, "/sse?topic=e", "Last-Event-ID", "12")
			s.expectOK()
			s.expectLines(": replay-gap")
			s.quiet(100 * time.Millisecond)

			s = p.subscribe(t, addr, "/sse?topic=e", "Last-Event-ID", "13")
			s.expectOK()
			expectIDs(t, s, 14, 15, 16, 17, 18, 19, 20)
		})
		t.Run("id of another topic", func(t *testing.T) {
			publishN(t, "x1", 100, 101)
			publishN(t, "x2", 1, 2)
			s := p.subscribe(t, addr, "/sse?topic=x2", "Last-Event-ID", "100")
			s.expectOK()
			s.expectLines(": replay-gap")
		})
		t.Run("invalid ids match nothing", func(t *testing.T) {
			publishN(t, "i", 1, 2)
			for _, q := range []string{"last_event_id=%00", "last_event_id=%ff", "last_event_id=1%0A", "last_event_id=" + strings.Repeat("1", engine.MaxIDLen+1)} {
				s := p.subscribe(t, addr, "/sse?topic=i&"+q)
				s.expectOK()
				s.expectLines(": replay-gap")
			}
		})
		t.Run("empty id is no id", func(t *testing.T) {
			p.publishTo(t, addr, "/sse?topic=empty", `{"id":"1","data":"m1"}`)
			p.publishTo(t, addr, "/sse?topic=empty", `{"data":"no id"}`)
			publishN(t, "empty", 3, 3)
			for _, s := range []*sseClient{
				p.subscribe(t, addr, "/sse?topic=empty", "Last-Event-ID", ""),
				p.subscribe(t, addr, "/sse?topic=empty&last_event_id="),
			} {
				s := s.on(t)
				s.expectOK()
				s.quiet(100 * time.Millisecond)
			}
		})
		t.Run("id of 256 bytes", func(t *testing.T) {
			long := strings.Repeat("L", engine.MaxIDLen)
			p.publishTo(t, addr, "/sse?topic=long", `{"id":"`+long+`","data":"long"}`)
			p.publishTo(t, addr, "/sse?topic=long", `{"id":"after","data":"after"}`)
			s := p.subscribe(t, addr, "/sse?topic=long", "Last-Event-ID", long)
			s.expectOK()
			s.expectLines("id: after", "data: after")
		})
		t.Run("several topics", func(t *testing.T) {
			for _, m := range []string{"ma1", "mb1", "ma2", "mb2", "ma3"} {
				p.publishTo(t, addr, "/sse?topic="+m[:2], `{"id":"`+m+`","data":"`+m+`"}`)
			}
			s := p.subscribe(t, addr, "/sse?topic=ma&topic=mb", "Last-Event-ID", "ma2")
			s.expectOK()
			s.expectLines("id: mb2", "data: mb2")
			s.expectLines("id: ma3", "data: ma3")
			s.quiet(100 * time.Millisecond)
		})
	})
}

// TestReplaySeam subscribes with a Last-Event-ID while messages are being
// published: replay and live must join with no duplicate and no gap.
func TestReplaySeam(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		addr, _, _ := p.startServer(t, engine.Config{Capacity: 512}, Config{})
		const total = 300
		for round := range 3 {
			topic := fmt.Sprintf("seam%d", round)
			published := make(chan int, total)
			go func() {
				defer close(published)
				for i := 1; i <= total; i++ {
					body := fmt.Sprintf(`{"id":"%d","data":"x"}`, i)
					resp, err := httpClient.Post("http://"+addr+"/sse?topic="+topic, "application/json", strings.NewReader(body))
					if err != nil {
						t.Errorf("publish %d: %v", i, err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusAccepted {
						t.Errorf("publish %d: status %d", i, resp.StatusCode)
						return
					}
					published <- i
				}
			}()
			from := 50 + 40*round
			reached := false
			for i := range published {
				if i == from {
					reached = true
					break
				}
			}
			if !reached {
				t.Fatalf("round %d: publishing stopped before id %d", round, from)
			}
			s := p.subscribe(t, addr, "/sse?topic="+topic, "Last-Event-ID", strconv.Itoa(from))
			s.expectOK()
			for want := from + 1; want <= total; want++ {
				b := s.mustNext()
				if b.Event == nil || b.Event.LastEventID != strconv.Itoa(want) {
					t.Fatalf("round %d: got %q, want id %d", round, b.Raw, want)
				}
			}
			for range published {
			}
			s.quiet(50 * time.Millisecond)
		}
	})
}

func TestAutoID(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		addr, _, _ := p.startServer(t, engine.Config{AutoID: true}, Config{})
		live := p.subscribe(t, addr, "/sse?topic=auto")
		live.expectOK()
		var ids []string
		for i, body := range []string{`{"data":"one"}`, `{"data":"two"}`, `{"id":"mine","data":"three"}`, `{"comment":"four"}`, `{"data":"five"}`} {
			p.publishTo(t, addr, "/sse?topic=auto", body)
			p.publishTo(t, addr, "/sse?topic=elsewhere", `{"data":"moves the counter"}`)
			b := live.mustNext()
			if len(b.Lines) == 0 || !strings.HasPrefix(b.Lines[0], "id: ") {
				t.Fatalf("message %d: %q has no id", i, b.Raw)
			}
			ids = append(ids, strings.TrimPrefix(b.Lines[0], "id: "))
		}
		if ids[2] != "mine" {
			t.Errorf("a publisher's id became %q", ids[2])
		}
		prev := uint64(0)
		for _, id := range slices.Delete(slices.Clone(ids), 2, 3) {
			n, err := strconv.ParseUint(id, 10, 64)
			if err != nil || n <= prev {
				t.Fatalf("server ids %q are not increasing numbers", ids)
			}
			prev = n
		}
		s := p.subscribe(t, addr, "/sse?topic=auto", "Last-Event-ID", ids[1])
		s.expectOK()
		s.expectLines("id: mine", "data: three")
		s.expectLines("id: "+ids[3], ": four")
		s.expectLines("id: "+ids[4], "data: five")
		s.quiet(100 * time.Millisecond)
	})
}
