package transport

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinysse/tinysse/auth"
	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/testjwt"
)

// Pattern subscriptions (issue 17) over HTTP/1.1 and HTTP/2 on loopback.

func TestPatternSubscribe(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		addr, eng, _ := p.startServer(t, engine.Config{AutoID: true}, Config{})
		one := p.subscribe(t, addr, "/sse?topic=sports/*")
		one.expectOK()
		// Overlapping subscriptions: each message once.
		many := subscribed(t, eng, p.subscribe(t, addr, "/sse?topic=sports/**&topic=sports/a&topic=*/a"), "sports/*", 1)
		waitSubscribers(t, eng, "*/a", 1)
		for _, pub := range []struct{ topics, data string }{
			{"topic=sports/a", "a"},
			{"topic=news/a", "news"},
			{"topic=sports/b/c", "deep"},
			{"topic=sports/a&topic=sports/b", "both"},
			{"topic=other", "other"},
			{"topic=sports/b", "b"},
		} {
			p.publishTo(t, addr, "/sse?"+pub.topics, `{"data":"`+pub.data+`"}`)
		}
		one.expectLines("id: 1", "data: a")
		one.expectLines("id: 4", "data: both")
		one.expectLines("id: 6", "data: b")
		for _, want := range []struct{ id, data string }{{"1", "a"}, {"2", "news"}, {"3", "deep"}, {"4", "both"}, {"6", "b"}} {
			many.expectLines("id: "+want.id, "data: "+want.data)
		}
		one.quiet(100 * time.Millisecond)
		many.quiet(100 * time.Millisecond)

		// Last-Event-ID: the matching topics' messages merged in id order.
		back := p.subscribe(t, addr, "/sse?topic=sports/**", "Last-Event-ID", "1")
		back.expectOK()
		for _, want := range []struct{ id, data string }{{"3", "deep"}, {"4", "both"}, {"6", "b"}} {
			back.expectLines("id: "+want.id, "data: "+want.data)
		}
		gap := p.subscribe(t, addr, "/sse?topic=sports/*", "Last-Event-ID", "5")
		gap.expectOK()
		if b := gap.mustNext(); b.Raw != ": replay-gap\n\n" {
			t.Fatalf("got %q, want a replay gap (id 5 is in no matching topic)", b.Raw)
		}
	})
}

func TestPatternRefusals(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		addr, eng, _ := p.startServer(t, engine.Config{}, Config{})
		for _, bad := range []string{"a/**/b", "a*", "**/a", "a//*", "/*", "a/*/"} {
			s := p.subscribe(t, addr, "/sse?topic=ok&topic="+url.QueryEscape(bad))
			a := answer{Status: s.Status, Header: s.Header, Body: s.Body}
			wantError(t, a, http.StatusBadRequest)
			var e struct{ Error string }
			if json.Unmarshal([]byte(a.Body), &e); !strings.Contains(e.Error, strconv.Quote(bad)) {
				t.Errorf("%q: error %q does not name the pattern", bad, e.Error)
			}
		}
		var q []string
		for i := range engine.MaxPatternsPerSubscriber + 1 {
			q = append(q, "topic=p"+strconv.Itoa(i)+"/*")
		}
		s := p.subscribe(t, addr, "/sse?"+strings.Join(q, "&"))
		wantError(t, answer{Status: s.Status, Header: s.Header, Body: s.Body}, http.StatusBadRequest)
		if !strings.Contains(s.Body, "patterns") {
			t.Errorf("too many patterns: %s", s.Body)
		}
		// The limit itself is fine, and nothing was left behind by the refusals.
		subscribed(t, eng, p.subscribe(t, addr, "/sse?"+strings.Join(q[:engine.MaxPatternsPerSubscriber], "&")), "p0/*", 1)
		if _, held := eng.Topic("ok"); held {
			t.Errorf("a refused subscription left its topic behind")
		}
	})
}

func TestPatternAuth(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		addr, _, _ := p.startServer(t, engine.Config{}, Config{Auth: newAuth(t, auth.Config{
			Keys: []auth.Key{secretKey(t, testSecret)}, Anonymous: true, PublicTopics: []string{"public/**", "lobby/*"},
		})})
		tok := func(subscribe ...string) []string {
			return bearerHeader(testjwt.HS256(t, testSecret, testjwt.Claims(time.Hour, testjwt.Topics(nil, subscribe))))
		}
		sports := tok("sports/**")
		for _, ok := range []string{"sports/*", "sports/**", "sports/a/*", "sports/*/x/**"} {
			wantStream(t, p.subscribe(t, addr, "/sse?topic="+ok, sports...), http.StatusOK, "")
		}
		for _, no := range []string{"*", "**", "*/a", "sportsx/*"} {
			wantStream(t, p.subscribe(t, addr, "/sse?topic="+url.QueryEscape(no), sports...), http.StatusForbidden, strconv.Quote(no))
		}
		// "sports/*" covers one segment: not "sports/**", which reads deeper.
		one := tok("sports/*")
		wantStream(t, p.subscribe(t, addr, "/sse?topic=sports/*", one...), http.StatusOK, "")
		wantStream(t, p.subscribe(t, addr, "/sse?topic=sports/**", one...), http.StatusForbidden, `"sports/**"`)
		// A claim naming the literal topic "sports/*" does not cover the pattern's deeper reach.
		everything := tok("*")
		wantStream(t, p.subscribe(t, addr, "/sse?topic=**&topic=a/*", everything...), http.StatusOK, "")
		// Anonymous: a pattern only if public topics cover all it could match.
		wantStream(t, p.subscribe(t, addr, "/sse?topic=public/*"), http.StatusOK, "")
		wantStream(t, p.subscribe(t, addr, "/sse?topic=lobby/*"), http.StatusOK, "")
		wantStream(t, p.subscribe(t, addr, "/sse?topic=lobby/**"), http.StatusUnauthorized, `"lobby/**"`)
		wantStream(t, p.subscribe(t, addr, "/sse?topic=*"), http.StatusUnauthorized, `"*"`)
	})
}

// TestPatternHookSeesPatterns: the subscribe hook gets the patterns as
// given in sub.Topics, may set others, and a bad one it sets is refused.
func TestPatternHookSeesPatterns(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		seen := make(chan []string, 4)
		hooks := engine.Hooks{Subscribe: func(s *engine.Subscriber) (bool, error) {
			seen <- append([]string(nil), s.Topics...)
			q, _ := url.ParseQuery(s.Request.Query)
			switch q.Get("to") {
			case "news":
				s.Topics = []string{"news/*"}
			case "bad":
				s.Topics = []string{"news/**/x"}
			}
			return true, nil
		}}
		addr, eng, _ := p.startServer(t, engine.Config{Hooks: hooks}, Config{})
		s := p.subscribe(t, addr, "/sse?topic=room/*&to=news")
		s.expectOK()
		if got := <-seen; strings.Join(got, ",") != "room/*" {
			t.Errorf("hook saw %q, want [room/*]", got)
		}
		waitSubscribers(t, eng, "news/*", 1)
		p.publishTo(t, addr, "/sse?topic=room/1", `{"data":"room"}`)
		p.publishTo(t, addr, "/sse?topic=news/1", `{"data":"news"}`)
		s.expectLines("data: news")
		bad := p.subscribe(t, addr, "/sse?topic=room/*&to=bad")
		<-seen
		wantError(t, answer{Status: bad.Status, Header: bad.Header, Body: bad.Body}, http.StatusInternalServerError)
		if !strings.Contains(bad.Body, `news/**/x`) {
			t.Errorf("error %s does not name the pattern", bad.Body)
		}
	})
}

// TestPatternAPI: GET topics lists a pattern that subscribers hold
// (pattern: true, its own subscribers), presence?topic=PATTERN lists them
// with the patterns as given, history?topic=PATTERN reads the matching
// topics merged, and disconnect by a pattern ends its streams. Every
// answer is checked against docs/api.yaml.
func TestPatternAPI(t *testing.T) {
	addr, eng, _ := startAPI(t, engine.Config{}, Config{})
	publishTo(t, addr, "/sse?topic=s/a", `{"id":"1","data":"a"}`)
	publishTo(t, addr, "/sse?topic=news", `{"id":"2","data":"n"}`)
	publishTo(t, addr, "/sse?topic=s/b", `{"id":"3","data":"b"}`)
	s := subscribed(t, eng, subscribe(t, addr, "/sse?topic=s/*&topic=news"), "s/*", 1)

	// One message after the pattern was made: its published counts that
	// one (the two backfilled were published before it existed), not the
	// room its ring keeps below them for the backfill.
	publishTo(t, addr, "/sse?topic=s/c", `{"id":"4","data":"c"}`)
	s.expectLines("id: 4", "data: c")

	var all struct {
		Topics []struct {
			Name        string
			Subscribers int64
			Messages    int
			Published   uint64
			Pattern     bool
		}
		Total int
	}
	apiGet(t, addr, "topics", &all)
	var pats []string
	for _, tp := range all.Topics {
		if tp.Pattern {
			pats = append(pats, tp.Name)
			if tp.Subscribers != 1 || tp.Messages != 3 || tp.Published != 1 {
				t.Errorf("pattern %+v, want 1 subscriber, the 3 messages of s/a, s/b and s/c, and 1 published since it was made", tp)
			}
		}
	}
	if strings.Join(pats, ",") != "s/*" || all.Total != 5 {
		t.Errorf("patterns listed %q, total %d (s/a, news, s/b, s/c and s/*)", pats, all.Total)
	}
	for _, p := range eng.Stats().Patterns {
		if p.Published != 1 {
			t.Errorf("engine stats: pattern %q published %d, want 1", p.Name, p.Published)
		}
	}

	var p presenceAnswer
	apiGet(t, addr, "presence?topic="+url.QueryEscape("s/*"), &p)
	if p.Count != 1 || len(p.Subscribers) != 1 || strings.Join(p.Subscribers[0].Topics, ",") != "s/*,news" {
		t.Errorf("presence of the pattern: %+v", p)
	}
	var h historyAnswer
	apiGet(t, addr, "history?topic="+url.QueryEscape("s/*"), &h)
	if len(h.Messages) != 3 || h.Messages[0].ID != "1" || h.Messages[1].ID != "3" || h.Messages[2].ID != "4" {
		t.Errorf("history of the pattern: %+v", h)
	}

	a := apiDo(t, addr, http.MethodPost, "disconnect", `{"topic":"s/*"}`, "Content-Type", "application/json")
	if a.Status != http.StatusOK || !strings.Contains(a.Body, `"disconnected":1`) {
		t.Fatalf("disconnect: %d %s", a.Status, a.Body)
	}
	s.drain(wait)
	waitSubscribers(t, eng, "s/*", 0)
	waitFor(t, wait, "the pattern to go with its last subscriber", func() bool {
		var after struct{ Topics []struct{ Pattern bool } }
		apiGet(t, addr, "topics", &after)
		for _, tp := range after.Topics {
			if tp.Pattern {
				return false
			}
		}
		return true
	})
}

// TestPatternAPISharedName: a topic may have a "*" in its name (publishing
// takes it as a plain character) and so share its name with a pattern
// that subscribers hold; GET topics in pages of one still lists both, the
// topic first (a cursor after the topic skipped the pattern).
func TestPatternAPISharedName(t *testing.T) {
	addr, _, _ := startAPI(t, engine.Config{}, Config{})
	publishTo(t, addr, "/sse?topic="+url.QueryEscape("s/*"), `{"id":"1","data":"literal"}`)
	publishTo(t, addr, "/sse?topic=s/a", `{"id":"2","data":"a"}`)
	s := subscribe(t, addr, "/sse?topic=s/*")
	s.expectOK() // registered, pattern made, before ": ok" goes out
	var seen []string
	endpoint := "topics?limit=1"
	for range 10 {
		var page struct {
			Topics []struct {
				Name    string
				Pattern bool
			}
			NextCursor string `json:"next_cursor"`
		}
		apiGet(t, addr, endpoint, &page)
		for _, tp := range page.Topics {
			seen = append(seen, fmt.Sprintf("%s:%v", tp.Name, tp.Pattern))
		}
		if page.NextCursor == "" {
			break
		}
		endpoint = "topics?limit=1&cursor=" + url.QueryEscape(page.NextCursor)
	}
	if got, want := strings.Join(seen, ","), "s/*:false,s/*:true,s/a:false"; got != want {
		t.Errorf("pages of one listed %q, want %q", got, want)
	}
	// The topic s/* can have no subscriber of its own (a subscriber's s/*
	// is the pattern): presence and disconnect by that name reach the
	// pattern's subscribers, and history reads the pattern's ring, which
	// holds the topic's messages too.
	var p presenceAnswer
	apiGet(t, addr, "presence?topic="+url.QueryEscape("s/*"), &p)
	if p.Count != 1 || len(p.Subscribers) != 1 {
		t.Errorf("presence of s/*: %+v, want the pattern's subscriber", p)
	}
	var h historyAnswer
	apiGet(t, addr, "history?topic="+url.QueryEscape("s/*"), &h)
	if len(h.Messages) != 2 {
		t.Errorf("history of s/*: %+v, want the pattern's 2 messages", h)
	}
	a := apiDo(t, addr, http.MethodPost, "disconnect", `{"topic":"s/*"}`, "Content-Type", "application/json")
	if a.Status != http.StatusOK || !strings.Contains(a.Body, `"disconnected":1`) {
		t.Fatalf("disconnect: %d %s", a.Status, a.Body)
	}
	s.drain(wait)
}

// TestPatternAPIRate: a pattern's publish_rate in GET topics counts the
// messages of its topics published since it was made, not its backfill
// (what the rings held when the first subscriber came): 0 after the
// subscribe, the rate of the new messages over one to two windows, 0
// again when they stop.
func TestPatternAPIRate(t *testing.T) {
	const window = 200 * time.Millisecond
	addr, eng, _ := startAPI(t, engine.Config{Capacity: 64}, Config{APIRateWindow: window})
	for i := range 20 {
		publishTo(t, addr, "/sse?topic=r/"+strconv.Itoa(i%2), fmt.Sprintf(`{"data":"old %d"}`, i))
	}
	time.Sleep(2*window + 50*time.Millisecond) // the topics' own rates settle; the backfill is old news
	s := subscribe(t, addr, "/sse?topic=r/*")
	s.expectOK()
	waitSubscribers(t, eng, "r/*", 1)
	rate := func() (float64, bool) {
		var a struct {
			Topics []struct {
				Name        string
				Pattern     bool
				Published   uint64
				PublishRate float64 `json:"publish_rate"`
			}
		}
		apiGet(t, addr, "topics", &a)
		for _, tp := range a.Topics {
			if tp.Pattern && tp.Name == "r/*" {
				return tp.PublishRate, true
			}
		}
		return 0, false
	}
	if r, ok := rate(); !ok || r != 0 {
		t.Fatalf("just made, with 20 messages backfilled: rate %v (listed %v), want 0", r, ok)
	}
	time.Sleep(window) // a sample has the pattern now
	start := time.Now()
	for i := range 10 {
		publishTo(t, addr, "/sse?topic=r/"+strconv.Itoa(i%2), fmt.Sprintf(`{"data":"new %d"}`, i))
	}
	waitFor(t, wait, "the pattern's rate over whole windows", func() bool {
		r, _ := rate()
		// 10 messages over at most the time since they were published
		// plus a window (and no less than one window), as a topic's.
		low := 10 / (time.Since(start) + 2*window).Seconds()
		return r >= low && r <= 10/window.Seconds()+0.001
	})
	waitFor(t, wait, "the pattern's rate back to 0 once two windows passed without a publish", func() bool {
		r, _ := rate()
		return r == 0
	})
	for i := range 10 { // and the stream had them
		s.expectLines(fmt.Sprintf("data: new %d", i))
	}
}
