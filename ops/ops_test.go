package ops_test

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/promtext"
	"github.com/tinysse/tinysse/internal/testserver"
	"github.com/tinysse/tinysse/internal/testserver/inproc"
	"github.com/tinysse/tinysse/lua"
	"github.com/tinysse/tinysse/ops"
	"github.com/tinysse/tinysse/transport"
)

const wait = testserver.Wait

var client = testserver.Client

// server is a full tinysse on loopback: engine, transport, metrics at
// /metrics and the dashboard at /_tinysse/ (feed every 50ms).
type server struct {
	addr    string
	eng     *engine.Engine
	metrics *ops.Metrics
}

// start runs a server with script src ("" for none).
func start(t *testing.T, src string, ecfg engine.Config, topTopics int) *server {
	return startEvery(t, src, ecfg, topTopics, 50*time.Millisecond)
}

// startEvery is start with the dashboard feed's interval.
func startEvery(t *testing.T, src string, ecfg engine.Config, topTopics int, interval time.Duration) *server {
	t.Helper()
	var rt *lua.Runtime
	if src != "" {
		var err error
		rt, err = lua.Load(lua.Config{Script: "test.lua", Source: []byte(src), Logger: slog.New(slog.DiscardHandler), Stdout: io.Discard})
		if err != nil {
			t.Fatal(err)
		}
	}
	return startWith(t, rt, ecfg, topTopics, interval)
}

// startWith runs a server with the loaded (not started) script rt, or none.
func startWith(t *testing.T, rt *lua.Runtime, ecfg engine.Config, topTopics int, interval time.Duration) *server {
	t.Helper()
	return startAPI(t, rt, ecfg, topTopics, interval, "")
}

// startAPI is startWith with the server API at apiPath ("": none), and the
// dashboard told so.
func startAPI(t *testing.T, rt *lua.Runtime, ecfg engine.Config, topTopics int, interval time.Duration, apiPath string) *server {
	t.Helper()
	s := &server{}
	var hs *ops.HookStats
	var d *ops.Dashboard
	cfg := inproc.Config{Engine: ecfg, Runtime: rt, Transport: transport.Config{HealthPath: "/healthz", APIPath: apiPath}}
	if rt != nil {
		hs = ops.NewHookStats()
		cfg.WrapHooks = func(h engine.Hooks) engine.Hooks { return hs.WrapScript(h, rt.Defined()) }
	}
	cfg.Setup = func(is *inproc.Server, tc *transport.Config) {
		ocfg := ops.Config{Engine: is.Engine, Transport: func() transport.Stats { return is.Transport.Stats() }, Hooks: hs, TopTopics: topTopics, Version: "test"}
		if rt != nil {
			ocfg.HookErrors = rt.HookErrors
		}
		var err error
		if s.metrics, err = ops.NewMetrics(ocfg); err != nil {
			t.Fatal(err)
		}
		if d, err = ops.NewDashboard(ops.DashboardConfig{Metrics: s.metrics, Interval: interval, Version: "test", Logger: slog.New(slog.DiscardHandler), APIPath: apiPath}); err != nil {
			t.Fatal(err)
		}
		tc.Routes = []transport.Route{{Path: "/metrics", Handler: s.metrics.Handler()}, {Path: "/_tinysse/", Handler: d.Handler()}}
	}
	is := inproc.Start(t, cfg)
	s.addr, s.eng = is.Addr, is.Engine
	stop := make(chan struct{})
	go d.Run(stop)
	t.Cleanup(func() { close(stop) }) // before the server is shut down
	return s
}

func (s *server) get(t *testing.T, path string) (int, http.Header, string) {
	t.Helper()
	resp, err := client.Get("http://" + s.addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func (s *server) publish(t *testing.T, target, body string) int {
	t.Helper()
	resp, err := client.Post("http://"+s.addr+target, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// stream is a subscriber past its ": ok".
type stream struct{ *testserver.Stream }

func (s *server) subscribe(t *testing.T, target string) *stream {
	t.Helper()
	return &stream{testserver.Open(t, s.addr, target)}
}

// until reads events until one carries data.
func (st *stream) until(t *testing.T, data string) {
	t.Helper()
	for st.On(t).NextEvent().Data != data {
	}
}

// scrape returns the metrics as series -> value, checking every line's
// form, that no series appears twice and that every family has its
// metadata (promtext.Check).
func (s *server) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	code, hdr, body := s.get(t, "/metrics")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("/metrics: %d %q", code, hdr.Get("Content-Type"))
	}
	if _, err := promtext.Check([]byte(body)); err != nil {
		t.Fatalf("/metrics breaks the text format's rules:\n%v", err)
	}
	line := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*"(?:, ?[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*")*\})?) (\S+)$`)
	out := map[string]float64{}
	for _, l := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
		if strings.HasPrefix(l, "#") {
			continue
		}
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("malformed metrics line %q", l)
		}
		if _, dup := out[m[1]]; dup {
			t.Fatalf("series %s appears twice", m[1])
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		out[m[1]] = v
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testserver.Eventually(t, wait, what, cond)
}

func TestMetrics(t *testing.T) {
	s := start(t, "", engine.Config{Shards: 2, Capacity: 4}, 2)
	a := s.subscribe(t, "/sse?topic=news")
	b := s.subscribe(t, "/sse?topic=news")
	s.subscribe(t, "/sse?topic=sport")
	s.subscribe(t, "/sse?topic=weird%22%5Cname")
	s.subscribe(t, "/sse?topic=quiet")
	waitFor(t, "5 subscribers", func() bool { return s.eng.Stats().Subscribers == 5 })
	for i := range 6 {
		if code := s.publish(t, "/sse?topic=news", `{"id":"`+strconv.Itoa(i)+`","data":"x"}`); code != 202 {
			t.Fatalf("publish: %d", code)
		}
		// Both read before the next: six into a ring of four while a
		// loaded machine's pass on b's shard is late would lap b (closed
		// as lagged, and the subscriber counts below one short).
		a.until(t, "x")
		b.until(t, "x")
	}
	if code := s.publish(t, "/sse", `{"data":`); code != 400 {
		t.Fatalf("bad publish: %d", code)
	}
	// A replay and a gap.
	s.subscribe(t, "/sse?topic=news&last_event_id=4")
	s.subscribe(t, "/sse?topic=news&last_event_id=0")
	waitFor(t, "12 deliveries", func() bool { return s.scrape(t)["tinysse_deliveries_total"] == 6*2+1 })

	m := s.scrape(t)
	for series, want := range map[string]float64{
		`tinysse_publishes_total`:                                0 + 6,
		`tinysse_subscribers`:                                    7,
		`tinysse_subscribes_total`:                               7,
		`tinysse_replays_total`:                                  1,
		`tinysse_replay_gaps_total`:                              1,
		`tinysse_topics`:                                         4,
		`tinysse_topic_subscribers{topic="news"}`:                4,
		`tinysse_topic_subscribers{topic="_tinysse.stats"}`:      -1, // absent: not in the top 2
		`tinysse_topic_subscribers_other`:                        2,  // sport, the weird one and quiet have 1 each; 2 of them are "other"
		`tinysse_topics_other`:                                   2,
		`tinysse_ring_capacity`:                                  4,
		`tinysse_ring_buffered{topic="news"}`:                    4,
		`tinysse_publish_rejected_total{reason="bad_request"}`:   1,
		`tinysse_publish_rejected_total{reason="forbidden"}`:     0,
		`tinysse_subscribe_rejected_total{reason="bad_request"}`: 0,
		`tinysse_disconnects_total{reason="lagged"}`:             0,
		`tinysse_build_info{version="test"}`:                     1,
	} {
		got, ok := m[series]
		if want == -1 {
			if ok {
				t.Errorf("%s present", series)
			}
			continue
		}
		if !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	// The top 2 are news (4) and one topic with 1 subscriber, chosen by
	// ring then name: quiet, sport and the weird one have empty rings, so
	// quiet; the weird name is escaped wherever it appears.
	if _, ok := m[`tinysse_topic_subscribers{topic="quiet"}`]; !ok {
		t.Errorf("quiet not in the top 2: %v", keys(m, "tinysse_topic_subscribers"))
	}
	for _, want := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_resident_memory_bytes"} {
		if _, ok := m[want]; !ok {
			t.Errorf("no %s", want)
		}
	}
	if _, ok := m[`tinysse_hook_calls_total{hook="publish"}`]; ok {
		t.Error("hook series without a script")
	}
	if code, _, _ := s.get(t, "/metrics"); code != 200 {
		t.Fatal(code)
	}
	resp, err := client.Post("http://"+s.addr+"/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %d", resp.StatusCode)
	}
}

// TestMetricsHistory: the history budget's bytes held, bound and
// evictions are series.
func TestMetricsHistory(t *testing.T) {
	s := start(t, "", engine.Config{MaxHistoryBytes: 40 << 10}, 10)
	big := strings.Repeat("z", 8<<10)
	for i := range 10 {
		if code := s.publish(t, "/sse?topic=t"+strconv.Itoa(i), `{"data":"`+big+`"}`); code != 202 {
			t.Fatalf("publish: %d", code)
		}
	}
	st := s.eng.Stats()
	m := s.scrape(t)
	if st.HistoryEvicted == 0 || m["tinysse_history_evicted_total"] != float64(st.HistoryEvicted) {
		t.Errorf("tinysse_history_evicted_total %v, engine %d (want some)", m["tinysse_history_evicted_total"], st.HistoryEvicted)
	}
	if held := m["tinysse_history_bytes"]; held <= 0 || held > 40<<10 {
		t.Errorf("tinysse_history_bytes %v, want in (0, 40 KiB]", held)
	}
	if m["tinysse_history_bytes_max"] != 40<<10 {
		t.Errorf("tinysse_history_bytes_max %v", m["tinysse_history_bytes_max"])
	}
}

func TestMetricsLabelEscaping(t *testing.T) {
	s := start(t, "", engine.Config{}, 10)
	s.subscribe(t, `/sse?topic=a%22b%5Cc`)
	waitFor(t, "1 subscriber", func() bool { return s.eng.Stats().Subscribers == 1 })
	m := s.scrape(t)
	if m[`tinysse_topic_subscribers{topic="a\"b\\c"}`] != 1 {
		t.Errorf("escaped topic missing: %v", keys(m, "tinysse_topic_subscribers"))
	}
}

func keys(m map[string]float64, prefix string) []string {
	var out []string
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out
}

// TestHookMetricsCountDefinedHooksOnly: the runtime gives the engine a
// subscribe seam when the script has only unsubscribe (and a publish
// seam for message); neither is a call of a hook the script lacks.
func TestHookMetricsCountDefinedHooksOnly(t *testing.T) {
	s := start(t, "function unsubscribe(sub) end\nfunction message(pub, sub) return pub end", engine.Config{Shards: 1}, 10)
	a := s.subscribe(t, "/sse")
	waitFor(t, "1 subscriber", func() bool { return s.eng.Stats().Subscribers == 1 })
	s.publish(t, "/sse", `{"data":"one"}`)
	a.until(t, "one")
	a.Conn.Close()
	waitFor(t, "unsubscribe", func() bool { return s.scrape(t)[`tinysse_hook_calls_total{hook="unsubscribe"}`] == 1 })
	m := s.scrape(t)
	for series, want := range map[string]float64{
		`tinysse_hook_calls_total{hook="subscribe"}`:            0,
		`tinysse_hook_calls_total{hook="publish"}`:              0,
		`tinysse_hook_duration_seconds_count{hook="subscribe"}`: 0,
		`tinysse_hook_calls_total{hook="message"}`:              1,
		`tinysse_hook_calls_total{hook="unsubscribe"}`:          1,
	} {
		if got := m[series]; got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

func TestHookMetrics(t *testing.T) {
	const src = `function publish(pub)
  if pub.msg.data == "fail" then error("publish failed") end
  if pub.msg.data == "no" then return end
  return pub
end
function subscribe(sub) return sub end
function message(pub, sub)
  if pub.msg.data == "bad" then error("message failed") end
  return pub
end
function unsubscribe(sub) end`
	s := start(t, src, engine.Config{Shards: 1}, 10)
	a := s.subscribe(t, "/sse")
	b := s.subscribe(t, "/sse")
	waitFor(t, "2 subscribers", func() bool { return s.eng.Stats().Subscribers == 2 })
	for range 5 {
		s.publish(t, "/sse", `{"data":"ok"}`)
	}
	s.publish(t, "/sse", `{"data":"bad"}`)
	s.publish(t, "/sse", `{"data":"fail"}`)
	s.publish(t, "/sse", `{"data":"no"}`)
	s.publish(t, "/sse", `{"data":"last"}`)
	a.until(t, "last")
	b.until(t, "last")
	a.Conn.Close()
	waitFor(t, "unsubscribe", func() bool { return s.scrape(t)[`tinysse_hook_calls_total{hook="unsubscribe"}`] == 1 })

	m := s.scrape(t)
	for series, want := range map[string]float64{
		`tinysse_hook_calls_total{hook="publish"}`:              9,
		`tinysse_hook_errors_total{hook="publish"}`:             1,
		`tinysse_hook_calls_total{hook="subscribe"}`:            2,
		`tinysse_hook_errors_total{hook="subscribe"}`:           0,
		`tinysse_hook_calls_total{hook="message"}`:              2 * 7, // 5 ok, bad, last to 2 subscribers
		`tinysse_hook_errors_total{hook="message"}`:             2,
		`tinysse_hook_errors_total{hook="tick"}`:                0,
		`tinysse_publish_rejected_total{reason="hook_error"}`:   1,
		`tinysse_publish_rejected_total{reason="forbidden"}`:    1,
		`tinysse_deliveries_total`:                              2 * 6, // the bad one is skipped for both
		`tinysse_hook_duration_seconds_count{hook="publish"}`:   9,
		`tinysse_hook_duration_seconds_count{hook="subscribe"}`: 2,
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	// message is timed per batch: at least one, at most one per call.
	if n := m[`tinysse_hook_duration_seconds_count{hook="message"}`]; n < 1 || n > 14 {
		t.Errorf("message batches timed: %v", n)
	}
	if m[`tinysse_hook_duration_seconds_bucket{hook="publish",le="+Inf"}`] != 9 {
		t.Errorf("publish histogram +Inf bucket: %v", m[`tinysse_hook_duration_seconds_bucket{hook="publish",le="+Inf"}`])
	}
	if m[`tinysse_hook_duration_seconds_sum{hook="publish"}`] <= 0 {
		t.Error("publish histogram sum is 0")
	}
}

func TestDashboardPage(t *testing.T) {
	s := start(t, "", engine.Config{}, 10)
	code, hdr, body := s.get(t, "/_tinysse/")
	if code != 200 || hdr.Get("Content-Type") != "text/html; charset=utf-8" || !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("page: %d %v", code, hdr)
	}
	cfg := regexp.MustCompile(`<script id="config" type="application/json">(.*?)</script>`).FindStringSubmatch(body)
	if cfg == nil {
		t.Fatal("no config in the page")
	}
	var c map[string]any
	if err := json.Unmarshal([]byte(cfg[1]), &c); err != nil || c["topic"] != ops.DefaultStatsTopic || c["sub_path"] != "/sse" || c["pub_path"] != "/sse" {
		t.Fatalf("config %q: %v", cfg[1], err)
	}
	for path, ctype := range map[string]string{"/_tinysse/app.js": "text/javascript; charset=utf-8", "/_tinysse/style.css": "text/css; charset=utf-8", "/_tinysse/index.html": "text/html; charset=utf-8"} {
		if code, hdr, body := s.get(t, path); code != 200 || hdr.Get("Content-Type") != ctype || len(body) < 100 {
			t.Errorf("%s: %d %q %d bytes", path, code, hdr.Get("Content-Type"), len(body))
		}
	}
	// No external asset: every src and href is relative to the page.
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(body, -1) {
		if strings.Contains(m[1], "//") || strings.HasPrefix(m[1], "/") {
			t.Errorf("external or absolute asset %q", m[1])
		}
	}
	if code, hdr, body := s.get(t, "/_tinysse/nope.js"); code != 404 || hdr.Get("Content-Type") != "application/json" || !strings.Contains(body, "not found") {
		t.Errorf("missing file: %d %q", code, body)
	}
	if code, _, _ := s.get(t, "/_tinysse/../metrics"); code != 200 {
		t.Errorf("a cleaned path outside the dashboard: %d", code)
	}
	noRedirect := &http.Client{Timeout: wait, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get("http://" + s.addr + "/_tinysse")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || !strings.HasSuffix(resp.Header.Get("Location"), s.addr+"/_tinysse/") {
		t.Errorf("/_tinysse: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = client.Post("http://"+s.addr+"/_tinysse/", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST to the page: %d", resp.StatusCode)
	}
}

func TestDashboardFeed(t *testing.T) {
	s := start(t, "", engine.Config{}, 10)
	// Nobody watches: nothing is published to the stats topic.
	time.Sleep(150 * time.Millisecond)
	if st := s.eng.Stats(); st.Publishes != 0 {
		t.Fatalf("%d publishes with nobody watching", st.Publishes)
	}
	feed := s.subscribe(t, "/sse?topic="+ops.DefaultStatsTopic)
	news := s.subscribe(t, "/sse?topic=news")
	s.publish(t, "/sse?topic=news", `{"data":"hello"}`)
	news.until(t, "hello")
	var last map[string]any
	waitFor(t, "a stats message counting the publish", func() bool {
		d := feed.On(t).NextEvent().Data
		if err := json.Unmarshal([]byte(d), &last); err != nil {
			t.Fatalf("stats %q: %v", d, err)
		}
		return last != nil && last["publishes"] == 1.0 && last["subscribers"] == 2.0
	})
	for _, k := range []string{"t", "deliveries", "topics", "hooks", "rejected", "closed", "runtime", "capacity"} {
		if _, ok := last[k]; !ok {
			t.Errorf("stats message without %q", k)
		}
	}
	// The feed's own publishes are not the users': the metrics say 1.
	if m := s.scrape(t); m["tinysse_publishes_total"] != 1 {
		t.Errorf("publishes_total %v, want 1 (the feed's own not counted)", m["tinysse_publishes_total"])
	}
	// They are PublishLocal's: the engine does not count them either, and
	// they took no number from the sequence (cluster mode needs that).
	if st := s.eng.Stats(); st.Publishes != 1 || s.eng.LastSeq() != 1 {
		t.Errorf("engine: %d publishes, last seq %d; want 1 and 1 (stats messages are local)", st.Publishes, s.eng.LastSeq())
	}
}

// TestDashboardTokenExample runs examples/dashboard_token.lua, the README's
// way to restrict the dashboard: no token, no stats and no publishing.
func TestDashboardTokenExample(t *testing.T) {
	src, err := os.ReadFile("../examples/dashboard_token.lua")
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	rt, err := lua.Load(lua.Config{Script: "dashboard_token.lua", Source: src, Data: "s3cret", Logger: quiet, Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	s := startWith(t, rt, engine.Config{}, 10, 50*time.Millisecond)
	status := func(method, target, auth, body string) int {
		req, _ := http.NewRequest(method, "http://"+s.addr+target, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if method == http.MethodGet {
			// A stream that is let in never ends: read the head only.
			c, err := net.Dial("tcp", s.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(wait))
			if err := req.Write(c); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), req)
			if err != nil {
				t.Fatal(err)
			}
			return resp.StatusCode
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	stats := "/sse?topic=" + ops.DefaultStatsTopic
	for _, c := range []struct {
		method, target, auth, body string
		want                       int
	}{
		{"GET", stats, "", "", 403},
		{"GET", stats, "Bearer wrong", "", 403},
		{"GET", stats, "Bearer s3cret", "", 200},
		{"GET", "/sse?topic=news", "", "", 200},
		{"POST", "/sse", "", `{"data":"x"}`, 403},
		{"POST", "/sse", "Bearer s3cret", `{"data":"x"}`, 202},
	} {
		if got := status(c.method, c.target, c.auth, c.body); got != c.want {
			t.Errorf("%s %s with %q: %d, want %d", c.method, c.target, c.auth, got, c.want)
		}
	}
}

// TestDashboardFeedWithChannelsScript: a message hook that filters by its
// own rules (examples/channels.lua drops anything without ?chan=) does not
// see the stats messages, so the dashboard works under it.
func TestDashboardFeedWithChannelsScript(t *testing.T) {
	src, err := os.ReadFile("../examples/channels.lua")
	if err != nil {
		t.Fatal(err)
	}
	s := startEvery(t, string(src), engine.Config{}, 10, 50*time.Millisecond)
	feed := s.subscribe(t, "/sse?topic="+ops.DefaultStatsTopic)
	if e := feed.On(t).NextEvent(); e.Type != "stats" {
		t.Fatalf("feed event %+v, want a stats event", e)
	}
	m := s.scrape(t)
	if m[`tinysse_hook_errors_total{hook="message"}`] != 0 || m[`tinysse_hook_calls_total{hook="message"}`] != 0 {
		t.Errorf("the message hook saw the stats: calls %v errors %v",
			m[`tinysse_hook_calls_total{hook="message"}`], m[`tinysse_hook_errors_total{hook="message"}`])
	}
}

// TestMetricsByProtocol: connections and event streams are reported by
// protocol, in the metrics and in the dashboard's feed: two streams over
// one HTTP/2 connection and one over an HTTP/1.1 connection.
func TestMetricsByProtocol(t *testing.T) {
	s := start(t, "", engine.Config{}, 10)
	s.subscribe(t, "/sse?topic=h1")
	var ps http.Protocols
	ps.SetUnencryptedHTTP2(true)
	h2 := &http.Client{Transport: &http.Transport{Protocols: &ps}}
	defer h2.CloseIdleConnections()
	for range 2 {
		resp, err := h2.Get("http://" + s.addr + "/sse?topic=h2")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("answered over %s", resp.Proto)
		}
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || line != ": ok\n" {
			t.Fatalf("stream began with %q (%v)", line, err)
		}
	}
	waitFor(t, "3 subscribers", func() bool { return s.eng.Stats().Subscribers == 3 })
	m := s.scrape(t) // over a connection of its own, HTTP/1.1
	for series, want := range map[string]float64{
		`tinysse_connections{protocol="h2"}`:                            1,
		`tinysse_connections{protocol="http1"}`:                         2,
		`tinysse_streams{protocol="h2"}`:                                2,
		`tinysse_streams{protocol="http1"}`:                             1,
		`tinysse_h2_connections_cut_total{reason="rapid_reset"}`:        0,
		`tinysse_h2_connections_cut_total{reason="continuation_flood"}`: 0,
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	feed := s.subscribe(t, "/sse?topic="+ops.DefaultStatsTopic)
	var last map[string]any
	waitFor(t, "a stats message", func() bool {
		d := feed.On(t).NextEvent().Data
		if err := json.Unmarshal([]byte(d), &last); err != nil {
			t.Fatalf("stats %q: %v", d, err)
		}
		return last != nil
	})
	if last["h2_conns"] != 1.0 || last["h2_streams"] != 2.0 || last["streams"] != 4.0 {
		t.Errorf("feed h2_conns %v, h2_streams %v, streams %v; want 1, 2 and 4 (the feed's own stream too)", last["h2_conns"], last["h2_streams"], last["streams"])
	}
}

// TestDashboardFeedPatterns: the stats feed lists the patterns that
// subscribers hold, with their own subscriber counts, and the page draws
// them (app.js marks them "pattern").
func TestDashboardFeedPatterns(t *testing.T) {
	s := start(t, "", engine.Config{}, 10)
	feed := s.subscribe(t, "/sse?topic="+ops.DefaultStatsTopic)
	sports := s.subscribe(t, "/sse?topic=sports/*")
	s.subscribe(t, "/sse?topic=sports/*&topic=news/**")
	s.publish(t, "/sse?topic=sports/a", `{"data":"goal"}`)
	sports.until(t, "goal")
	type pat struct {
		Name        string
		Subscribers int64
		Buffered    int
	}
	var last struct {
		Patterns     []pat
		PatternCount int `json:"pattern_count"`
	}
	waitFor(t, "a stats message with the patterns", func() bool {
		if e := feed.On(t).NextEvent(); e.Type == "stats" {
			last.Patterns = nil
			if err := json.Unmarshal([]byte(e.Data), &last); err != nil {
				t.Fatalf("stats %q: %v", e.Data, err)
			}
		}
		return last.PatternCount == 2 && len(last.Patterns) == 2 && last.Patterns[0].Buffered == 1
	})
	if last.Patterns[0] != (pat{"sports/*", 2, 1}) || last.Patterns[1] != (pat{"news/**", 1, 0}) {
		t.Errorf("patterns %+v", last.Patterns)
	}
	_, _, js := s.get(t, "/_tinysse/app.js")
	if !strings.Contains(js, "s.patterns") {
		t.Errorf("the page does not draw the patterns")
	}
}
