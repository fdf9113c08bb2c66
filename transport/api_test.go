package transport

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tinysse/tinysse/auth"
	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/apispec"
	"github.com/tinysse/tinysse/internal/testjwt"
	"github.com/valyala/fasthttp"
)

// The server API end to end: a real server on 127.0.0.1, real HTTP
// requests, and every answer (refusals included) checked against
// docs/api.yaml with kin-openapi (internal/apispec).

const apiPath = "/_tinysse/api/"

// apiDo sends one API request and checks the answer against the spec.
// endpoint is e.g. "topics?limit=2"; headers are name, value pairs.
func apiDo(t testing.TB, addr, method, endpoint, body string, headers ...string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+addr+apiPath+endpoint, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, endpoint, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	name, _, _ := strings.Cut(endpoint, "?")
	apispec.Check(t, req, name, resp.StatusCode, resp.Header, b)
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

// apiGet is a GET that must answer 200; it decodes the answer into v.
func apiGet(t testing.TB, addr, endpoint string, v any, headers ...string) {
	t.Helper()
	a := apiDo(t, addr, http.MethodGet, endpoint, "", headers...)
	if a.Status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", endpoint, a.Status, a.Body)
	}
	if err := json.Unmarshal([]byte(a.Body), v); err != nil {
		t.Fatalf("GET %s: %v in %s", endpoint, err, a.Body)
	}
}

// wantAPIError checks a refusal: its status and a JSON error containing
// want.
func wantAPIError(t testing.TB, a answer, status int, want string) {
	t.Helper()
	var e struct{ Error string }
	if a.Status != status || json.Unmarshal([]byte(a.Body), &e) != nil || !strings.Contains(e.Error, want) {
		t.Errorf("answer %d %s, want %d with an error containing %q", a.Status, a.Body, status, want)
	}
}

func startAPI(t testing.TB, ecfg engine.Config, tcfg Config) (string, *engine.Engine, *Server) {
	t.Helper()
	tcfg.APIPath = apiPath
	return startServer(t, ecfg, tcfg)
}

type topicsAnswer struct {
	Topics []struct {
		Name        string
		Subscribers int64
		Messages    int
		Bytes       int64
		Published   uint64
		PublishRate float64 `json:"publish_rate"`
		LastID      string  `json:"last_id"`
		LastCursor  string  `json:"last_cursor"`
	}
	Total      int
	NextCursor string `json:"next_cursor"`
}

// TestAPITopics: every topic with its subscribers, messages and bytes
// held, publishes, rate and last id; pages in name order with a cursor.
func TestAPITopics(t *testing.T) {
	addr, eng, _ := startAPI(t, engine.Config{Capacity: 4}, Config{APIRateWindow: 200 * time.Millisecond})
	s := subscribed(t, eng, subscribe(t, addr, "/sse?topic=news"), "news", 1)
	for i := range 6 {
		publishTo(t, addr, "/sse?topic=news", fmt.Sprintf(`{"id":"n%d","data":"%d"}`, i, i))
		// Read before the next: six into a ring of four while a loaded
		// machine's shard pass is late would lap the subscriber (closed
		// as lagged, and news would have no subscriber).
		s.expectLines(fmt.Sprintf("id: n%d", i), fmt.Sprintf("data: %d", i))
	}
	publishTo(t, addr, "/sse", `{"data":"default"}`)
	publishTo(t, addr, "/sse?topic=a&topic=b", `{"event":"both"}`)

	var all topicsAnswer
	apiGet(t, addr, "topics", &all)
	var names []string
	for _, tp := range all.Topics {
		names = append(names, tp.Name)
	}
	if !slices.Equal(names, []string{"", "a", "b", "news"}) || all.Total != 4 || all.NextCursor != "" {
		t.Fatalf("topics %q total %d next %q", names, all.Total, all.NextCursor)
	}
	news := all.Topics[3]
	frame := len("id: n5\ndata: 5\n\n")
	if news.Subscribers != 1 || news.Messages != 4 || news.Published != 6 || news.LastID != "n5" || news.Bytes != int64(4*frame) {
		t.Errorf("news: %+v (frames of %d bytes)", news, frame)
	}
	if news.LastCursor == "" || all.Topics[1].LastID != "" {
		t.Errorf("last_cursor %q, a's last_id %q", news.LastCursor, all.Topics[1].LastID)
	}

	// Pages of two, each after the last name of the one before.
	var got []string
	endpoint := "topics?limit=2"
	for range 5 {
		var page topicsAnswer
		apiGet(t, addr, endpoint, &page)
		if len(page.Topics) > 2 {
			t.Fatalf("page of %d", len(page.Topics))
		}
		for _, tp := range page.Topics {
			got = append(got, tp.Name)
		}
		if page.NextCursor == "" {
			break
		}
		endpoint = "topics?limit=2&cursor=" + url.QueryEscape(page.NextCursor)
	}
	if !slices.Equal(got, names) {
		t.Errorf("pages gave %q, want %q", got, names)
	}

	// The rate: 10 more within a window, measured over one to two windows.
	for i := range 10 {
		publishTo(t, addr, "/sse?topic=rated", fmt.Sprintf(`{"data":"%d"}`, i))
	}
	start := time.Now()
	waitFor(t, wait, "a rate over whole windows", func() bool {
		var a topicsAnswer
		apiGet(t, addr, "topics", &a)
		for _, tp := range a.Topics {
			if tp.Name == "rated" {
				// 10 messages over at most the time since they were
				// published plus a window (and no less than one window).
				low := 10 / (time.Since(start) + 2*200*time.Millisecond).Seconds()
				return tp.PublishRate >= low && tp.PublishRate <= 10/0.2+0.001
			}
		}
		return false
	})
	time.Sleep(500 * time.Millisecond) // more than two windows: nothing published since
	var quiet topicsAnswer
	apiGet(t, addr, "topics", &quiet)
	for _, tp := range quiet.Topics {
		if tp.PublishRate != 0 {
			t.Errorf("%q: rate %v after two quiet windows", tp.Name, tp.PublishRate)
		}
	}
}

// TestAPITopicsRefused: bad limits and cursors are 400s.
func TestAPITopicsRefused(t *testing.T) {
	addr, _, _ := startAPI(t, engine.Config{}, Config{})
	for _, q := range []string{"limit=0", "limit=1001", "limit=ten", "limit=-1", "limit=1.5"} {
		wantAPIError(t, apiDo(t, addr, http.MethodGet, "topics?"+q, ""), http.StatusBadRequest, "limit must be")
	}
	wantAPIError(t, apiDo(t, addr, http.MethodGet, "topics?cursor=%21%21", ""), http.StatusBadRequest, "bad cursor")
	wantAPIError(t, apiDo(t, addr, http.MethodGet, "topics?cursor=YQ", ""), http.StatusBadRequest, "bad cursor") // base64 of "a": no tag
	wantAPIError(t, apiDo(t, addr, http.MethodGet, "topics?cursor=a&cursor=b", ""), http.StatusBadRequest, "more than once")
	// limit too: read once one way here, another by a proxy in front.
	for _, e := range []string{"topics?x=1", "history?topic=a", "presence?x=1"} {
		wantAPIError(t, apiDo(t, addr, http.MethodGet, e+"&limit=1&limit=1000", ""), http.StatusBadRequest, "limit is given more than once")
	}
	var ok topicsAnswer
	apiGet(t, addr, "topics?limit=1000", &ok)
}

type historyAnswer struct {
	Topic    string
	Messages []struct {
		ID       string
		Event    string
		Data     *string
		Comments []string
		Topics   []string
		Cursor   string
	}
	NextCursor string `json:"next_cursor"`
	More       bool
	Gap        bool
	Source     string
}

func (h historyAnswer) ids() []string {
	var out []string
	for _, m := range h.Messages {
		out = append(out, m.ID)
	}
	return out
}

// TestAPIHistory: the newest N, what follows an id or a cursor, paging
// and polling with next_cursor, and the gap once the ring lapped.
func TestAPIHistory(t *testing.T) {
	addr, _, _ := startAPI(t, engine.Config{Capacity: 8}, Config{})
	for i := 1; i <= 5; i++ {
		publishTo(t, addr, "/sse?topic=t", fmt.Sprintf(`{"id":"m%d","data":"d%d"}`, i, i))
		publishTo(t, addr, "/sse?topic=other", `{"data":"x"}`)
	}
	var h historyAnswer
	apiGet(t, addr, "history?topic=t&limit=2", &h)
	if !slices.Equal(h.ids(), []string{"m4", "m5"}) || h.Gap || h.Source != "ring" || h.Topic != "t" {
		t.Fatalf("newest 2: %+v", h)
	}
	if *h.Messages[0].Data != "d4" || !slices.Equal(h.Messages[0].Topics, []string{"t"}) {
		t.Errorf("m4: %+v", h.Messages[0])
	}
	poll := h.NextCursor

	apiGet(t, addr, "history?topic=t&since=m1&limit=2", &h)
	if !slices.Equal(h.ids(), []string{"m2", "m3"}) || !h.More || h.Gap {
		t.Fatalf("since m1: %+v", h)
	}
	apiGet(t, addr, "history?topic=t&limit=2&cursor="+h.NextCursor, &h)
	if !slices.Equal(h.ids(), []string{"m4", "m5"}) || h.More {
		t.Fatalf("next page: %+v", h)
	}
	apiGet(t, addr, "history?topic=t&cursor="+h.NextCursor, &h)
	if len(h.Messages) != 0 || h.More || h.Gap || h.NextCursor != poll {
		t.Fatalf("past the end: %+v (poll cursor %s)", h, poll)
	}

	// Polling: what is published next comes with the cursor of before.
	publishTo(t, addr, "/sse?topic=t", `{"id":"m6","event":"e","data":"","comment":["c1","c2"]}`)
	publishTo(t, addr, "/sse?topic=t&topic=other", `{"id":"m7"}`)
	apiGet(t, addr, "history?topic=t&cursor="+poll, &h)
	if !slices.Equal(h.ids(), []string{"m6", "m7"}) {
		t.Fatalf("polled: %+v", h)
	}
	m6, m7 := h.Messages[0], h.Messages[1]
	if m6.Event != "e" || m6.Data == nil || *m6.Data != "" || !slices.Equal(m6.Comments, []string{"c1", "c2"}) {
		t.Errorf("m6: %+v", m6)
	}
	if m7.Data != nil || !slices.Equal(m7.Topics, []string{"t", "other"}) {
		t.Errorf("m7: %+v", m7)
	}
	apiGet(t, addr, "history?topic=t&cursor="+m6.Cursor, &h)
	if !slices.Equal(h.ids(), []string{"m7"}) {
		t.Errorf("after m6's cursor: %q", h.ids())
	}

	// An id nobody published: everything held, with the gap.
	apiGet(t, addr, "history?topic=t&since=nope", &h)
	if len(h.Messages) != 7 || !h.Gap {
		t.Errorf("unknown since: %d messages, gap %v", len(h.Messages), h.Gap)
	}
	// The default stream, and a topic nobody used.
	publishTo(t, addr, "/sse", `{"data":"plain"}`)
	apiGet(t, addr, "history", &h)
	if len(h.Messages) != 1 || *h.Messages[0].Data != "plain" || !slices.Equal(h.Messages[0].Topics, []string{""}) {
		t.Errorf("default stream: %+v", h)
	}
	apiGet(t, addr, "history?topic=never", &h)
	if len(h.Messages) != 0 || h.Gap {
		t.Errorf("unknown topic: %+v", h)
	}

	// The ring keeps 8: after 10 more, an old cursor finds a gap.
	for i := 8; i < 18; i++ {
		publishTo(t, addr, "/sse?topic=t", fmt.Sprintf(`{"id":"m%d"}`, i))
	}
	apiGet(t, addr, "history?topic=t&cursor="+poll, &h)
	if !h.Gap || len(h.Messages) != 8 || h.Messages[0].ID != "m10" {
		t.Errorf("after lapping: %q gap %v", h.ids(), h.Gap)
	}
	apiGet(t, addr, "history?topic=t&since=m15", &h)
	if h.Gap || !slices.Equal(h.ids(), []string{"m16", "m17"}) {
		t.Errorf("since m15: %q gap %v", h.ids(), h.Gap)
	}
}

// TestAPIHistoryRefused: since with cursor, bad cursors, topics and
// limits are 400s.
func TestAPIHistoryRefused(t *testing.T) {
	addr, _, _ := startAPI(t, engine.Config{}, Config{})
	for q, want := range map[string]string{
		"since=a&cursor=1":                   "not both",
		"cursor=abc":                         "bad cursor",
		"cursor=-1":                          "bad cursor",
		"topic=a&topic=b":                    "more than once",
		"topic=" + url.QueryEscape("a\x01b"): "control character",
		"topic=" + strings.Repeat("x", 257):  "longer than",
		"limit=1001":                         "limit must be",
		"since=a&since=b":                    "more than once",
	} {
		wantAPIError(t, apiDo(t, addr, http.MethodGet, "history?"+q, ""), http.StatusBadRequest, want)
	}
}

// TestAPIHistoryStored: with Config.APIHistory (cluster mode), what the
// ring cannot show whole comes from it, ids given from Seq with auto
// ids; its failure is a 503.
func TestAPIHistoryStored(t *testing.T) {
	var asked []uint64
	fail := false
	stored := func(topic string, after uint64, limit int) (StoredHistory, error) {
		asked = append(asked, after)
		if fail {
			return StoredHistory{}, errors.New("no stream")
		}
		return StoredHistory{Messages: []*engine.Message{{Data: "from the stream", HasData: true, Seq: after + 1, Topics: []string{topic}}}, Next: after + 1, More: true}, nil
	}
	addr, eng, _ := startAPI(t, engine.Config{AutoID: true}, Config{APIHistory: stored})
	eng.AdvanceSeq(100) // as a node joining a stream of 100 messages
	publishTo(t, addr, "/sse?topic=t", `{"data":"in the ring"}`)
	var h historyAnswer
	apiGet(t, addr, "history?topic=t&since=100", &h)
	if h.Source != "ring" || !slices.Equal(h.ids(), []string{"101"}) || len(asked) != 0 {
		t.Errorf("covered by the ring: %+v, asked %v", h, asked)
	}
	apiGet(t, addr, "history?topic=t&since=50&limit=3", &h)
	if h.Source != "stream" || !slices.Equal(h.ids(), []string{"51"}) || *h.Messages[0].Data != "from the stream" || !h.More || h.NextCursor != "51" {
		t.Errorf("from the stream: %+v", h)
	}
	if !slices.Equal(asked, []uint64{50}) {
		t.Errorf("asked the stream for %v", asked)
	}
	apiGet(t, addr, "history?topic=t&cursor=101", &h)
	if h.Source != "ring" || len(h.Messages) != 0 {
		t.Errorf("at the head: %+v", h)
	}
	fail = true
	wantAPIError(t, apiDo(t, addr, http.MethodGet, "history?topic=t&cursor=7", ""), http.StatusServiceUnavailable, "no stream")
}

type presenceAnswer struct {
	Topic       *string
	Count       int64
	Subscribers []struct {
		ID            uint64
		Remote        string
		ConnectedAt   time.Time `json:"connected_at"`
		Topics        []string
		Keys          map[string]any
		KeysTruncated bool `json:"keys_truncated"`
	}
	NextCursor string `json:"next_cursor"`
}

// TestAPIPresence: the subscribers of a topic (or all), in id order a
// page at a time, with address, start, topics and hook keys.
func TestAPIPresence(t *testing.T) {
	keys := func(subs []*engine.Subscriber) []SubscriberKeys {
		out := make([]SubscriberKeys, len(subs))
		for i, s := range subs {
			out[i] = SubscriberKeys{Values: map[string]any{"user": fmt.Sprint("u", s.ID)}, Truncated: s.ID%2 == 0}
		}
		return out
	}
	addr, eng, _ := startAPI(t, engine.Config{Shards: 2}, Config{APIKeys: keys})
	before := time.Now()
	var locals []string
	for _, q := range []string{"topic=a", "topic=a&topic=b", "topic=b", "", "topic=a"} {
		s := subscribe(t, addr, "/sse?"+q)
		s.expectOK()
		locals = append(locals, s.conn.(net.Conn).LocalAddr().String()) // HTTP/1.1 here: a raw socket
	}
	waitSubscribers(t, eng, "a", 3)
	waitSubscribers(t, eng, "", 1)

	var p presenceAnswer
	apiGet(t, addr, "presence?topic=a", &p)
	if p.Topic == nil || *p.Topic != "a" || p.Count != 3 || len(p.Subscribers) != 3 || p.NextCursor != "" {
		t.Fatalf("topic a: %+v", p)
	}
	first := p.Subscribers[0]
	if first.Remote != locals[0] || !slices.Equal(first.Topics, []string{"a"}) || first.ConnectedAt.Before(before.Add(-time.Second)) ||
		first.Keys["user"] != fmt.Sprint("u", first.ID) || first.KeysTruncated != (first.ID%2 == 0) {
		t.Errorf("first subscriber: %+v (client at %s)", first, locals[0])
	}
	if !slices.Equal(p.Subscribers[1].Topics, []string{"a", "b"}) {
		t.Errorf("second: %+v", p.Subscribers[1])
	}

	var ids []uint64
	endpoint := "presence?limit=2"
	for range 5 {
		var page presenceAnswer
		apiGet(t, addr, endpoint, &page)
		if page.Topic != nil || page.Count != 5 || len(page.Subscribers) > 2 {
			t.Fatalf("page: %+v", page)
		}
		for _, s := range page.Subscribers {
			ids = append(ids, s.ID)
		}
		if page.NextCursor == "" {
			break
		}
		endpoint = "presence?limit=2&cursor=" + page.NextCursor
	}
	if len(ids) != 5 || !slices.IsSorted(ids) {
		t.Errorf("every subscriber by pages: %v", ids)
	}

	apiGet(t, addr, "presence?topic=", &p)
	if p.Count != 1 || len(p.Subscribers) != 1 || !slices.Equal(p.Subscribers[0].Topics, []string{""}) {
		t.Errorf("default stream: %+v", p)
	}
	apiGet(t, addr, "presence?topic=nobody", &p)
	if p.Count != 0 || len(p.Subscribers) != 0 {
		t.Errorf("unknown topic: %+v", p)
	}
	for q, want := range map[string]string{"cursor=x": "bad cursor", "limit=0": "limit must be", "topic=a&topic=b": "more than once"} {
		wantAPIError(t, apiDo(t, addr, http.MethodGet, "presence?"+q, ""), http.StatusBadRequest, want)
	}
}

// TestAPIDisconnect: by subscriber id (with and without a retry hint)
// and by topic; the others stay; every bad body is refused.
func TestAPIDisconnect(t *testing.T) {
	addr, eng, _ := startAPI(t, engine.Config{}, Config{})
	post := func(body string) answer {
		return apiDo(t, addr, http.MethodPost, "disconnect", body, "Content-Type", "application/json")
	}
	var streams []*sseClient
	for _, q := range []string{"topic=a", "topic=a", "topic=b&topic=a", "topic=b"} {
		s := subscribe(t, addr, "/sse?"+q)
		s.expectOK()
		streams = append(streams, s)
	}
	waitSubscribers(t, eng, "a", 3)
	var p presenceAnswer
	apiGet(t, addr, "presence?topic=a", &p)
	one := p.Subscribers[0].ID

	if a := post(fmt.Sprintf(`{"subscriber":%d,"retry":2500}`, one)); a.Status != http.StatusOK || a.Body != `{"disconnected":1}` {
		t.Fatalf("disconnect one: %d %s", a.Status, a.Body)
	}
	streams[0].expectLines(": disconnected", "retry: 2500")
	streams[0].drain(wait)
	wantAPIError(t, post(fmt.Sprintf(`{"subscriber":%d}`, one)), http.StatusNotFound, "no subscriber")

	if a := post(`{"topic":"a"}`); a.Status != http.StatusOK || a.Body != `{"disconnected":2}` {
		t.Fatalf("disconnect topic a: %d %s", a.Status, a.Body)
	}
	for _, s := range streams[1:3] {
		s.expectLines(": disconnected")
		s.drain(wait)
	}
	waitSubscribers(t, eng, "a", 0)
	if a := post(`{"topic":"a"}`); a.Body != `{"disconnected":0}` {
		t.Errorf("again: %s", a.Body)
	}
	if c := eng.Stats().Closed.Disconnected; c != 3 {
		t.Errorf("counted %d disconnected, want 3", c)
	}
	publishTo(t, addr, "/sse?topic=b", `{"data":"still"}`)
	streams[3].expectLines("data: still")

	for body, want := range map[string]string{
		`{}`:                                  "give one of",
		`{"subscriber":1,"topic":"a"}`:        "give one of",
		`{"subscriber":"1"}`:                  "subscriber must be a whole number",
		`{"subscriber":-1}`:                   "subscriber must be a whole number",
		`{"subscriber":1.5}`:                  "subscriber must be a whole number",
		`{"topic":5}`:                         "topic must be a string",
		`{"topic":"a","retry":-1}`:            "retry must be",
		`{"topic":"a","retry":86400001}`:      "retry must be",
		`{"topic":"a","retry":"1s"}`:          "retry must be a whole number",
		`{"topic":"a","topics":["b"]}`:        `unknown key "topics"`,
		`{"topic":"a","topic":"b"}`:           "given twice",
		`{"topic":"a\u0001"}`:                 "control character",
		`[1]`:                                 "JSON object",
		`{"topic":`:                           "malformed JSON",
		``:                                    "empty body",
		`{"subscriber":99999999999999999999}`: "subscriber must be a whole number",
	} {
		wantAPIError(t, post(body), http.StatusBadRequest, want)
	}
	wantAPIError(t, apiDo(t, addr, http.MethodPost, "disconnect", `{"topic":"a"}`), http.StatusUnsupportedMediaType, "application/json")
	wantAPIError(t, apiDo(t, addr, http.MethodPost, "disconnect", `topic=a`, "Content-Type", "application/x-www-form-urlencoded"), http.StatusUnsupportedMediaType, "application/json")
	streams[3].quiet(100 * time.Millisecond) // no refused request touched it
}

// TestAPIPublish: POST publish is the publish handler: the same answers
// and refusals, counted as publishes.
func TestAPIPublish(t *testing.T) {
	addr, eng, srv := startAPI(t, engine.Config{}, Config{MaxBodySize: 64})
	s := subscribed(t, eng, subscribe(t, addr, "/sse?topic=t"), "t", 1)
	a := apiDo(t, addr, http.MethodPost, "publish?topic=t", `{"id":"1","data":"via the API"}`, "Content-Type", "application/json")
	if a.Status != http.StatusAccepted || a.Body != `{"queued":0,"subscribers":1}` && a.Body != `{"queued":1,"subscribers":1}` {
		t.Fatalf("publish: %d %s", a.Status, a.Body)
	}
	s.expectLines("id: 1", "data: via the API")
	a = apiDo(t, addr, http.MethodPost, "publish", "data=form&topic=t", "Content-Type", "application/x-www-form-urlencoded")
	if a.Status != http.StatusAccepted {
		t.Fatalf("form publish: %d %s", a.Status, a.Body)
	}
	s.expectLines("data: form")

	before := srv.Stats().PublishRejected
	wantAPIError(t, apiDo(t, addr, http.MethodPost, "publish", `{"data":"x"}`), http.StatusUnsupportedMediaType, "content type missing")
	wantAPIError(t, apiDo(t, addr, http.MethodPost, "publish", `{}`, "Content-Type", "application/json"), http.StatusBadRequest, "no id, event, data or comment")
	wantAPIError(t, apiDo(t, addr, http.MethodPost, "publish", `{"data":"`+strings.Repeat("x", 100)+`"}`, "Content-Type", "application/json"), http.StatusRequestEntityTooLarge, "larger than 64 bytes")
	after := srv.Stats().PublishRejected
	if after[RejectMediaType]-before[RejectMediaType] != 1 || after[RejectBadRequest]-before[RejectBadRequest] != 1 || after[RejectTooLarge]-before[RejectTooLarge] != 1 {
		t.Errorf("refusals counted: before %v after %v", before, after)
	}
	if n := eng.Stats().Publishes; n != 2 {
		t.Errorf("%d publishes, want 2", n)
	}
	s.quiet(100 * time.Millisecond)
}

// TestAPIRoutes: unknown endpoints are 404s, wrong methods 405s with
// Allow, all in JSON; OPTIONS is a CORS preflight.
func TestAPIRoutes(t *testing.T) {
	addr, _, _ := startAPI(t, engine.Config{}, Config{})
	for _, e := range []string{"", "nope", "topics/x", "Topics"} {
		wantAPIError(t, apiDo(t, addr, http.MethodGet, e, ""), http.StatusNotFound, "no such API endpoint")
	}
	wantAPIError(t, answerOf(t, "http://"+addr+strings.TrimSuffix(apiPath, "/")), http.StatusNotFound, "no such API endpoint")
	for _, c := range []struct{ method, endpoint, allow string }{
		{http.MethodPost, "topics", "GET, OPTIONS"},
		{http.MethodDelete, "history", "GET, OPTIONS"},
		{http.MethodPut, "presence", "GET, OPTIONS"},
		{http.MethodGet, "disconnect", "POST, OPTIONS"},
		{http.MethodGet, "publish", "POST, OPTIONS"},
	} {
		a := apiDo(t, addr, c.method, c.endpoint, "")
		wantAPIError(t, a, http.StatusMethodNotAllowed, "method not allowed")
		if got := a.Header.Get("Allow"); got != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.endpoint, got, c.allow)
		}
	}
	a := do(t, http.MethodOptions, "http://"+addr+apiPath+"topics", "")
	if a.Status != http.StatusNoContent || a.Header.Get("Access-Control-Allow-Methods") == "" {
		t.Errorf("OPTIONS: %d %v", a.Status, a.Header)
	}
	if a := apiDo(t, addr, http.MethodGet, "topics", ""); a.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", a.Header.Get("Cache-Control"))
	}
}

func answerOf(t testing.TB, u string) answer {
	t.Helper()
	return do(t, http.MethodGet, u, "")
}

// TestAPIAccess: with the admin token or JWT keys, every endpoint needs
// admin rights (publish included); a token in the cookie or the query
// works as in the rest of the server.
func TestAPIAccess(t *testing.T) {
	endpoints := []struct{ method, endpoint, body string }{
		{http.MethodGet, "topics", ""}, {http.MethodGet, "history", ""}, {http.MethodGet, "presence", ""},
		{http.MethodPost, "disconnect", `{"topic":"x"}`}, {http.MethodPost, "publish", `{"data":"x"}`},
	}
	json := []string{"Content-Type", "application/json"}
	t.Run("admin token", func(t *testing.T) {
		authz := newAuth(t, auth.Config{AdminToken: "let-me-in"})
		addr, _, _ := startAPI(t, engine.Config{}, Config{Auth: authz})
		for _, e := range endpoints {
			a := apiDo(t, addr, e.method, e.endpoint, e.body, json...)
			wantAnswer(t, a, http.StatusUnauthorized, "admin token is required")
			a = apiDo(t, addr, e.method, e.endpoint, e.body, append(json, bearerHeader("wrong")...)...)
			wantAnswer(t, a, http.StatusForbidden, "no admin rights")
			a = apiDo(t, addr, e.method, e.endpoint, e.body, append(json, bearerHeader("let-me-in")...)...)
			if a.Status >= 300 {
				t.Errorf("%s %s with the admin token: %d %s", e.method, e.endpoint, a.Status, a.Body)
			}
		}
		a := apiDo(t, addr, http.MethodGet, "topics?authorization=let-me-in", "")
		wantAnswer(t, a, http.StatusOK, "")
		a = apiDo(t, addr, http.MethodGet, "topics", "", "Cookie", DefaultTokenCookie+"=let-me-in")
		wantAnswer(t, a, http.StatusOK, "")
	})
	t.Run("JWT keys", func(t *testing.T) {
		authz := newAuth(t, auth.Config{Keys: []auth.Key{secretKey(t, testSecret)}})
		addr, _, _ := startAPI(t, engine.Config{}, Config{Auth: authz})
		admin := bearerHeader(testjwt.HS256(t, testSecret, testjwt.Claims(time.Hour, map[string]any{"admin": true})))
		user := bearerHeader(testjwt.HS256(t, testSecret, testjwt.Claims(time.Hour, testjwt.Topics([]string{"*"}, []string{"*"}))))
		for _, e := range endpoints {
			wantAnswer(t, apiDo(t, addr, e.method, e.endpoint, e.body, json...), http.StatusUnauthorized, "token is required")
			wantAnswer(t, apiDo(t, addr, e.method, e.endpoint, e.body, append(json, user...)...), http.StatusForbidden, "no admin rights")
			if a := apiDo(t, addr, e.method, e.endpoint, e.body, append(json, admin...)...); a.Status >= 300 {
				t.Errorf("%s %s with an admin JWT: %d %s", e.method, e.endpoint, a.Status, a.Body)
			}
		}
	})
}

// TestAPILoopbackOnly: without Auth the API answers loopback clients
// only. No packet leaves this machine: the request is handed to the
// server's handler with another client address, as fasthttp would.
func TestAPILoopbackOnly(t *testing.T) {
	eng, err := engine.New(engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close(t.Context()) })
	srv, err := New(Config{APIPath: apiPath}, eng)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ip     net.IP
		status int
	}{{net.IPv4(192, 0, 2, 7), http.StatusForbidden}, {net.IPv6loopback, http.StatusOK}, {net.IPv4(127, 0, 0, 1), http.StatusOK}} {
		var req fasthttp.Request
		req.SetRequestURI(apiPath + "topics")
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, &net.TCPAddr{IP: c.ip, Port: 4000}, nil)
		srv.handle(&ctx)
		if got := ctx.Response.StatusCode(); got != c.status {
			t.Errorf("client %v: %d %s, want %d", c.ip, got, ctx.Response.Body(), c.status)
		}
		if c.status == http.StatusForbidden && !strings.Contains(string(ctx.Response.Body()), "loopback clients only") {
			t.Errorf("refusal: %s", ctx.Response.Body())
		}
	}
}

// TestAPIConfig: the API path must be a directory, must not hide the
// API's own paths nor sit above a route; a route above it (the
// dashboard's) does not hide it.
func TestAPIConfig(t *testing.T) {
	eng, err := engine.New(engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close(t.Context()) })
	ok := func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("route") }
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{APIPath: "/api"}, "start and end with /"},
		{Config{APIPath: "api/"}, "start and end with /"},
		{Config{APIPath: "/"}, "would hide the"},
		{Config{APIPath: "/x/", PubPath: "/x/pub"}, "would hide the pub path"},
		{Config{APIPath: "/x/", HealthPath: "/x/health"}, "would hide the health path"},
		{Config{APIPath: "/x/", Routes: []Route{{Path: "/x/metrics", Handler: ok}}}, "under the API path"},
	} {
		if _, err := New(c.cfg, eng); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg.APIPath, err, c.want)
		}
	}
	addr, _, _ := startAPI(t, engine.Config{}, Config{Routes: []Route{{Path: "/_tinysse/", Handler: ok}}})
	if a := answerOf(t, "http://"+addr+"/_tinysse/index.html"); a.Body != "route" {
		t.Errorf("the route above the API: %d %s", a.Status, a.Body)
	}
	var tp topicsAnswer
	apiGet(t, addr, "topics", &tp)
}
