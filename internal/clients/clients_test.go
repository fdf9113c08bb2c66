package clients

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/testserver"
	"github.com/tinysse/tinysse/internal/testserver/inproc"
	"github.com/tinysse/tinysse/transport"
)

// wait bounds every wait of a test for something to happen.
const wait = 15 * time.Second

// record is one thing an EventSource reported: k is "open", "error" or
// "event" (then Type, Data and ID are the event's type, data and
// lastEventId).
type record struct {
	K    string `json:"k"`
	Type string `json:"type"`
	Data string `json:"data"`
	ID   string `json:"id"`
}

// esClient is a running EventSource.
type esClient interface {
	// records returns everything reported so far, in order.
	records(t testing.TB) []record
	// eventIDIsBlockID reports that the client gives an event without an
	// id field an empty lastEventId instead of the stream's last id (the
	// Standard's rule). The npm package does so (dist/index.js:
	// `lastEventId: event.id || ""`); it still reconnects with the last
	// id, which testTimeoutReplay checks.
	eventIDIsBlockID() bool
}

// startClient opens an EventSource on url listening for "message" and the
// given event types.
type startClient func(t *testing.T, srv *server, types []string) esClient

// server is a real tinysse (engine and transport) on a loopback port, with
// Go hooks that record every subscription and unsubscription.
type server struct {
	addr   string
	eng    *engine.Engine
	static string // the static directory, served under /
	token  string // sent as a bearer token by publish, when set

	mu     sync.Mutex
	subs   []visit // guarded by mu
	unsubs []time.Time
}

// visit is one accepted subscription: when, and its Last-Event-ID header.
type visit struct {
	at          time.Time
	lastEventID string
}

func startServer(t *testing.T, ecfg engine.Config) *server {
	t.Helper()
	return startServerWith(t, ecfg, transport.Config{})
}

// startServerWith is startServer with the transport's configuration (its
// static directory and logger are set here).
func startServerWith(t *testing.T, ecfg engine.Config, tcfg transport.Config) *server {
	t.Helper()
	s := &server{static: t.TempDir()}
	ecfg.Hooks.Subscribe = func(sub *engine.Subscriber) (bool, error) {
		s.mu.Lock()
		s.subs = append(s.subs, visit{time.Now(), sub.Request.Headers["last-event-id"]})
		s.mu.Unlock()
		return true, nil
	}
	ecfg.Hooks.Unsubscribe = func(*engine.Subscriber) {
		s.mu.Lock()
		s.unsubs = append(s.unsubs, time.Now())
		s.mu.Unlock()
	}
	tcfg.StaticDir = s.static
	is := inproc.Start(t, inproc.Config{Engine: ecfg, Transport: tcfg})
	s.addr, s.eng = is.Addr, is.Engine
	return s
}

func (s *server) url(path string) string { return "http://" + s.addr + path }

func (s *server) visits() ([]visit, []time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.subs), slices.Clone(s.unsubs)
}

// publish posts one JSON message and requires a 202.
func (s *server) publish(t testing.TB, m map[string]string) {
	t.Helper()
	body, _ := json.Marshal(m)
	target := s.url("/sse")
	if topic := m["topic"]; topic != "" {
		target += "?topic=" + topic
	}
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish %s: %d %s", body, resp.StatusCode, b)
	}
}

// waitFor polls cond until it holds, failing the test after wait.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testserver.Eventually(t, wait, what, cond)
}

func events(rs []record) []record {
	var out []record
	for _, r := range rs {
		if r.K == "event" {
			out = append(out, r)
		}
	}
	return out
}

// waitEvents waits until c has reported n events and returns them.
func waitEvents(t testing.TB, c esClient, n int) []record {
	t.Helper()
	var got []record
	waitFor(t, fmt.Sprintf("%d events", n), func() bool {
		got = events(c.records(t))
		return len(got) >= n
	})
	return got
}

// wireCase is one published message and the event an EventSource must
// dispatch for it.
type wireCase struct {
	name             string
	id, event, data  string
	hasID            bool
	wantType, wantID string
	wantData         string
}

// wireCases are the messages whose exact arrival both clients check.
var wireCases = func() []wireCase {
	big := strings.Repeat("0123456789abcdef ünï\n", 600) + "end"
	cs := []wireCase{
		{name: "plain", id: "1", data: "plain"},
		{name: "multi-line", id: "2", event: "update", data: "line one\nline two\n\nline four"},
		{name: "unicode", id: "3-é", event: "ünïcödé", data: "héllo 世界 🎉 \u2028 \u0085 end"},
		{name: "empty data", id: "4", data: ""},
		{name: "leading space", id: "5", data: " leading space"},
		{name: "leading colon", id: "6", data: ": starts with a colon"},
		{name: "leading colon no space", id: "6b", data: ":x"},
		{name: "trailing newline", id: "7", data: "ends with a newline\n"},
		{name: "no id keeps the last", event: "noid", data: "keeps id 7"},
		{name: "field-like data", id: "id with spaces é", data: "id: x\nevent: y\nretry: 1\ndata: z"},
		{name: "id with a leading space", id: " 10", data: "x"},
		{name: "event with a space", id: "12", event: "with space", data: `{"json":true}`},
		{name: "big", id: "13", event: "big", data: big},
	}
	last := ""
	for i := range cs {
		c := &cs[i]
		c.hasID = c.id != ""
		if c.hasID {
			last = c.id
		}
		c.wantID, c.wantType, c.wantData = last, c.event, c.data
		if c.wantType == "" {
			c.wantType = "message"
		}
	}
	// Line breaks are normalised to LF (the data is split into data lines).
	cs = append(cs, wireCase{name: "CR and CRLF", id: "14", data: "crlf\r\ncr\rlf\nend", hasID: true,
		wantID: "14", wantType: "message", wantData: "crlf\ncr\nlf\nend"})
	return cs
}()

func wireTypes() []string {
	var ts []string
	for _, c := range wireCases {
		if c.event != "" && !slices.Contains(ts, c.event) {
			ts = append(ts, c.event)
		}
	}
	return ts
}

// testWire publishes wireCases and requires each to arrive exactly.
func testWire(t *testing.T, start startClient) {
	s := startServer(t, engine.Config{})
	c := start(t, s, wireTypes())
	waitFor(t, "the client to subscribe", func() bool { return s.eng.Subscribers("") == 1 })
	for _, wc := range wireCases {
		m := map[string]string{"data": wc.data}
		if wc.hasID {
			m["id"] = wc.id
		}
		if wc.event != "" {
			m["event"] = wc.event
		}
		s.publish(t, m)
	}
	got := waitEvents(t, c, len(wireCases))
	time.Sleep(200 * time.Millisecond) // nothing more may come
	got = events(c.records(t))
	if len(got) != len(wireCases) {
		t.Errorf("got %d events, want %d", len(got), len(wireCases))
	}
	for i, wc := range wireCases {
		if i >= len(got) {
			break
		}
		want := record{K: "event", Type: wc.wantType, Data: wc.wantData, ID: wc.wantID}
		if !wc.hasID && c.eventIDIsBlockID() {
			want.ID = ""
		}
		if got[i] != want {
			t.Errorf("%s: got %+q\nwant %+q", wc.name, got[i], want)
		}
	}
}

// retryMS is the hint the scenarios send; the clients' own default is 3s,
// so a reconnection within [retry, 2.8s) shows the hint was obeyed.
const (
	retry    = 800 * time.Millisecond
	maxDelay = 2800 * time.Millisecond
)

// checkReconnect requires that the n-th subscription (from 0) came between
// retry and maxDelay after the (n-1)-th unsubscription, with lastEventID.
func checkReconnect(t *testing.T, s *server, n int, lastEventID string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("subscription %d", n+1), func() bool {
		subs, _ := s.visits()
		return len(subs) > n
	})
	subs, unsubs := s.visits()
	if len(unsubs) < n {
		t.Fatalf("subscription %d came before the stream before it was closed", n+1)
	}
	gap := subs[n].at.Sub(unsubs[n-1])
	if gap < retry-50*time.Millisecond || gap >= maxDelay {
		t.Errorf("reconnected %v after the close, want between the retry hint %v and %v", gap, retry, maxDelay)
	}
	if subs[n].lastEventID != lastEventID {
		t.Errorf("reconnected with Last-Event-ID %q, want %q", subs[n].lastEventID, lastEventID)
	}
	t.Logf("reconnected %v after the close with Last-Event-ID %q", gap.Round(time.Millisecond), subs[n].lastEventID)
}

func ids(rs []record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

// testTimeoutReplay: the server closes the stream at --timeout with a
// retry hint; messages published while the client is away are replayed
// when it comes back by itself with Last-Event-ID, each exactly once.
func testTimeoutReplay(t *testing.T, start startClient) {
	s := startServer(t, engine.Config{Timeout: 2 * time.Second, TimeoutRetry: retry})
	c := start(t, s, nil)
	waitFor(t, "the client to subscribe", func() bool { return s.eng.Subscribers("") == 1 })
	pub := func(id string) { s.publish(t, map[string]string{"id": id, "data": "data of " + id}) }
	for _, id := range []string{"r1", "r2", "r3"} {
		pub(id)
	}
	waitEvents(t, c, 3)
	waitFor(t, "the timeout", func() bool { _, u := s.visits(); return len(u) >= 1 })
	for _, id := range []string{"r4", "r5", "r6"} {
		pub(id) // while the client waits out the retry hint
	}
	if subs, _ := s.visits(); len(subs) != 1 {
		t.Fatalf("the client came back before the retry hint had passed")
	}
	checkReconnect(t, s, 1, "r3")
	waitEvents(t, c, 6)
	pub("r7")
	got := waitEvents(t, c, 7)
	time.Sleep(200 * time.Millisecond)
	got = events(c.records(t))
	want := []string{"r1", "r2", "r3", "r4", "r5", "r6", "r7"}
	if !slices.Equal(ids(got), want) {
		t.Fatalf("events %q, want each of %q exactly once", ids(got), want)
	}
	for _, r := range got {
		if r.Data != "data of "+r.ID || r.Type != "message" {
			t.Errorf("event %+q", r)
		}
	}
}

// testLagRetry: a subscriber lapped by the ring is closed with the retry
// hint, which the client obeys; it comes back with its Last-Event-ID (no
// longer in the ring, so no replay) and reads live messages.
func testLagRetry(t *testing.T, start startClient) {
	gate := make(chan struct{})
	blocked := make(chan struct{})
	var once sync.Once
	ecfg := engine.Config{Capacity: 4, TimeoutRetry: retry}
	// The message hook holds the shard on "g1" until the test has
	// published past the ring's capacity: the subscriber is lapped.
	ecfg.Hooks.Message = func(_ any, m *engine.Message, _ *engine.Subscriber) []byte {
		if m.ID == "g1" {
			once.Do(func() { close(blocked); <-gate })
		}
		return m.Frame
	}
	s := startServer(t, ecfg)
	c := start(t, s, nil)
	waitFor(t, "the client to subscribe", func() bool { return s.eng.Subscribers("") == 1 })
	pub := func(id string) { s.publish(t, map[string]string{"id": id, "data": "data of " + id}) }
	pub("g0")
	waitEvents(t, c, 1)
	pub("g1")
	select {
	case <-blocked:
	case <-time.After(wait):
		close(gate)
		t.Fatal("the message hook never saw g1")
	}
	for i := range 8 {
		pub(fmt.Sprintf("l%d", i))
	}
	close(gate)
	waitFor(t, "the lagged close", func() bool { _, u := s.visits(); return len(u) >= 1 })
	checkReconnect(t, s, 1, "g0")
	waitFor(t, "the client to subscribe again", func() bool { return s.eng.Subscribers("") == 1 })
	pub("after")
	got := waitEvents(t, c, 2)
	time.Sleep(200 * time.Millisecond)
	got = events(c.records(t))
	if want := []string{"g0", "after"}; !slices.Equal(ids(got), want) {
		t.Fatalf("events %q, want %q", ids(got), want)
	}
}

// runScenarios runs every scenario with one kind of client.
func runScenarios(t *testing.T, start startClient) {
	t.Run("wire", func(t *testing.T) { testWire(t, start) })
	t.Run("timeout-replay", func(t *testing.T) { testTimeoutReplay(t, start) })
	t.Run("lag-retry", func(t *testing.T) { testLagRetry(t, start) })
}

// writeFile writes a file of the test's static directory.
func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
