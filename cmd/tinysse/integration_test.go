package main

// Cross-feature tests: cluster mode, the dashboard's stats feed, /metrics,
// --write-coalesce, Lua hooks, TLS and the connection limits, each run
// through run() on loopback ports together, as a user would combine them.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/tinysse/tinysse/internal/testcert"
)

// startNATS runs an in-process JetStream server on a loopback port and
// returns its URL.
func startNATS(t *testing.T) string {
	url, _ := startNATSServer(t)
	return url
}

func startNATSServer(t *testing.T) (string, *server.Server) {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(wait) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(ns.Shutdown)
	return fmt.Sprintf("nats://127.0.0.1:%d", ns.Addr().(*net.TCPAddr).Port), ns
}

// runNodes starts n servers through run with the same args, and stops
// them all with one SIGINT at cleanup (every run has its own signal.Notify;
// a second SIGINT with none left would kill the test binary).
func runNodes(t *testing.T, n int, args []string, vars ...string) (addrs []string) {
	t.Helper()
	exited := make(chan int, n)
	logs := make([]*syncBuffer, n)
	for i := range n {
		logs[i] = &syncBuffer{}
		addrs = append(addrs, startRun(t, append([]string{"--listen", "127.0.0.1:0", "--shutdown-timeout", "2s"}, args...), vars, logs[i], exited, 2*wait))
	}
	t.Cleanup(func() {
		interruptRuns(t, exited, n, 2*wait)
		if t.Failed() {
			for i, l := range logs {
				t.Logf("node %d log:\n%s", i, l)
			}
		}
	})
	return addrs
}

// event is one SSE frame, read back as fields.
type event struct{ id, event, data string }

// next reads the next frame that is not a comment.
func (s *stream) next(t *testing.T) event {
	t.Helper()
	for {
		f := s.readUntil(t, "\n\n")
		if strings.HasPrefix(f, ":") {
			continue
		}
		var e event
		for _, line := range strings.Split(strings.TrimSuffix(f, "\n\n"), "\n") {
			k, v, _ := strings.Cut(line, ": ")
			switch k {
			case "id":
				e.id = v
			case "event":
				e.event = v
			case "data":
				e.data = v
			}
		}
		return e
	}
}

// metricValue returns the value of the series named exactly name.
func metricValue(t *testing.T, body, name string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no series %s in\n%s", name, body)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// waitMetric polls addr's /metrics until the series name has value want.
func waitMetric(t *testing.T, addr, name string, want float64) {
	t.Helper()
	waitMetricAtLeast(t, addr, name, want, want)
}

// waitMetricAtLeast polls addr's /metrics until the series name is in
// [want, upTo]. Counters added once per pass may trail what a client has
// already read.
func waitMetricAtLeast(t *testing.T, addr, name string, want, upTo float64) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		v := metricValue(t, get(t, "http://"+addr+"/metrics").body, name)
		if v >= want && v <= upTo {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s is %v, want %v", addr, name, v, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterWithDashboardFeed runs two nodes with --auto-id (and then
// with --write-coalesce too) while the
// dashboard's feed publishes stats on node 1 (its _tinysse.stats has a
// subscriber) and messages are published to both nodes in turn. Every
// subscriber on both nodes gets every message once, in order, with the
// stream sequence as id; the stats keep arriving and count the cluster's
// messages; /metrics counts publishes and deliveries on each node; a
// reconnect with Last-Event-ID on either node gets exactly the rest.
func TestClusterWithDashboardFeed(t *testing.T) {
	for _, args := range [][]string{{"--auto-id"}, {"--auto-id", "--write-coalesce", "30ms"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) { testClusterWithDashboardFeed(t, args) })
	}
}

func testClusterWithDashboardFeed(t *testing.T, args []string) {
	url := startNATS(t)
	addrs := runNodes(t, 2, args, "TINYSSE_NATS="+url)

	stats := openStream(t, addrs[1], "/sse?topic=_tinysse.stats")
	stats.readUntil(t, ": ok\n\n")
	both := openStream(t, addrs[1], "/sse?topic=news&topic=_tinysse.stats")
	both.readUntil(t, ": ok\n\n")
	subs := []*stream{openStream(t, addrs[0], "/sse?topic=news"), openStream(t, addrs[1], "/sse?topic=news")}
	for _, s := range subs {
		s.readUntil(t, ": ok\n\n")
	}

	// Long enough for several stats ticks (one a second) between messages.
	const n = 40
	for i := 1; i <= n; i++ {
		if a := request(t, http.MethodPost, "http://"+addrs[i%2]+"/sse?topic=news", fmt.Sprintf(`{"data":"m%d"}`, i)); a.status != http.StatusAccepted {
			t.Fatalf("publish %d: %d %s", i, a.status, a.body)
		}
		time.Sleep(60 * time.Millisecond)
	}
	for k, s := range subs {
		for i := 1; i <= n; i++ {
			if e := s.next(t); e != (event{id: strconv.Itoa(i), data: fmt.Sprintf("m%d", i)}) {
				t.Fatalf("node %d subscriber: message %d is %+v", k, i, e)
			}
		}
	}
	// One stream on news and the stats topic: every message once and in
	// order, stats without ids in between.
	statsSeen := 0
	for i := 1; i <= n; {
		e := both.next(t)
		if e.event == "stats" {
			if e.id != "" {
				t.Errorf("a stats message has id %q", e.id)
			}
			statsSeen++
			continue
		}
		if e != (event{id: strconv.Itoa(i), data: fmt.Sprintf("m%d", i)}) {
			t.Fatalf("news+stats subscriber: message %d is %+v", i, e)
		}
		i++
	}
	if statsSeen < 2 {
		t.Errorf("news+stats subscriber saw %d stats during %d messages over %v", statsSeen, n, n*60*time.Millisecond)
	}
	// The feed goes on after the messages and counts all of them: node 1
	// applied every message of the stream.
	deadline := time.Now().Add(wait)
	for {
		e := stats.next(t)
		if e.event != "stats" {
			t.Fatalf("stats topic carried %+v", e)
		}
		var feed struct {
			Publishes  uint64 `json:"publishes"`
			Deliveries uint64 `json:"deliveries"`
		}
		if err := json.Unmarshal([]byte(e.data), &feed); err != nil {
			t.Fatalf("stats data %q: %v", e.data, err)
		}
		if feed.Publishes > n {
			t.Fatalf("stats count %d publishes, %d were made", feed.Publishes, n)
		}
		if feed.Publishes == n && feed.Deliveries >= 2*n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats still say %+v", feed)
		}
	}

	// /metrics: each node applied n messages (a user's publish counts on
	// every node, the stats feed on none) and delivered them to its
	// subscribers of news.
	for k, addr := range addrs {
		waitMetric(t, addr, "tinysse_publishes_total", n)
		wantDeliveries := float64(n) // node 0: one subscriber of news
		if k == 1 {
			wantDeliveries = 2 * n // node 1: two, and the stats on top
		}
		waitMetricAtLeast(t, addr, "tinysse_deliveries_total", wantDeliveries, math.Inf(1))
	}

	// A reconnect with Last-Event-ID, on either node, to news with and
	// without the stats topic: the rest, from the ring, nothing twice.
	for _, path := range []string{"/sse?topic=news", "/sse?topic=news&topic=_tinysse.stats"} {
		for k, addr := range addrs {
			c, err := net.DialTimeout("tcp", addr, wait)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nLast-Event-ID: %d\r\n\r\n", path, addr, n-5)
			s := &stream{conn: c}
			s.readUntil(t, "\r\n\r\n")
			for i := n - 4; i <= n; {
				e := s.next(t)
				if e.event == "stats" {
					continue
				}
				if e != (event{id: strconv.Itoa(i), data: fmt.Sprintf("m%d", i)}) {
					t.Fatalf("node %d, %s, Last-Event-ID %d: got %+v, want id %d", k, path, n-5, e, i)
				}
				i++
			}
		}
	}
}

// TestClusterWriteCoalesceLua: two nodes with --write-coalesce and Lua
// publish and message hooks; message rewrites and drops messages. Every subscriber on both
// nodes gets the hook's result of every message in stream order, ids the
// stream sequence, with bursts published at once.
func TestClusterWriteCoalesceLua(t *testing.T) {
	url := startNATS(t)
	// publish adds a key on the node that got the POST; message on every
	// node reads it (the state travels in the stream message, through the
	// hooks as ops.HookStats wraps them for /metrics).
	script := writeScript(t, `function publish(pub)
  pub.mark = "!"
  return pub
end
function message(pub, sub)
  if pub.msg.data == "drop" then return nil end
  pub.msg.data = pub.msg.data .. pub.mark
  return pub
end`)
	addrs := runNodes(t, 2, []string{"--auto-id", "--write-coalesce", "40ms", "--script", script}, "TINYSSE_NATS="+url)
	subs := []*stream{openStream(t, addrs[0], "/sse?topic=a&topic=b"), openStream(t, addrs[1], "/sse?topic=a&topic=b")}
	for _, s := range subs {
		s.readUntil(t, ": ok\n\n")
	}
	// Bursts from several publishers on both nodes, to two topics and the
	// pair: a coalesced pass holds many messages.
	const n = 60
	done := make(chan error, 4)
	for p := range 4 {
		go func() {
			for i := p; i < n; i += 4 {
				topic := []string{"topic=a", "topic=b", "topic=a&topic=b"}[i%3]
				data := fmt.Sprintf("p%d-%d", p, i)
				if i%7 == 0 {
					data = "drop"
				}
				resp, err := http.Post("http://"+addrs[p%2]+"/sse?"+topic, "application/json", strings.NewReader(`{"data":"`+data+`"}`))
				if err != nil {
					done <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					done <- fmt.Errorf("publish: %d", resp.StatusCode)
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	// Both nodes deliver the same sequence: ids increase, every message
	// not dropped arrives once with the hook's "!", the drops never.
	var got [2][]event
	for k, s := range subs {
		for len(got[k]) < n-(n+6)/7 {
			e := s.next(t)
			if !strings.HasSuffix(e.data, "!") || e.data == "drop!" {
				t.Fatalf("node %d: %+v did not pass the hook", k, e)
			}
			got[k] = append(got[k], e)
		}
	}
	if fmt.Sprint(got[0]) != fmt.Sprint(got[1]) {
		t.Fatalf("nodes disagree:\n%v\n%v", got[0], got[1])
	}
	// Each node ran publish for the POSTs it got (half of them), and
	// message for every delivery to its subscriber.
	for _, addr := range addrs {
		waitMetric(t, addr, `tinysse_hook_calls_total{hook="publish"}`, n/2)
		waitMetric(t, addr, `tinysse_hook_calls_total{hook="message"}`, n) // a last drop may still be in its pass
	}
	last, seen := 0, map[string]bool{}
	for _, e := range got[0] {
		id, err := strconv.Atoi(e.id)
		if err != nil || id <= last || id > n {
			t.Fatalf("id %q after %d", e.id, last)
		}
		last = id
		if seen[e.data] {
			t.Fatalf("%q twice", e.data)
		}
		seen[e.data] = true
	}
}

// TestWriteCoalesceLuaSingleNode: --write-coalesce with a message hook on
// one node: per subscriber rewrites and drops, in order.
func TestWriteCoalesceLuaSingleNode(t *testing.T) {
	script := writeScript(t, `function message(pub, sub)
  if sub.id:sub(-1) == "x" and pub.msg.data == "odd" then return nil end
  pub.msg.data = pub.msg.data .. "@" .. sub.id
  return pub
end
function subscribe(sub)
  sub.id = sub.req.query:match("name=(%w+)") or sub.id
  return sub
end`)
	addr, _, _ := runServer(t, []string{"--auto-id", "--write-coalesce", "30ms", "--script", script})
	x := openStream(t, addr, "/sse?name=subx")
	y := openStream(t, addr, "/sse?name=suby")
	x.readUntil(t, ": ok\n\n")
	y.readUntil(t, ": ok\n\n")
	const n = 50
	for i := 1; i <= n; i++ {
		data := "even"
		if i%2 == 1 {
			data = "odd"
		}
		if a := request(t, http.MethodPost, "http://"+addr+"/sse", `{"data":"`+data+`"}`); a.status != http.StatusAccepted {
			t.Fatalf("publish: %d %s", a.status, a.body)
		}
	}
	for i := 1; i <= n; i++ {
		if e := y.next(t); e.id != strconv.Itoa(i) || !strings.HasSuffix(e.data, "@suby") {
			t.Fatalf("suby message %d: %+v", i, e)
		}
	}
	for i := 2; i <= n; i += 2 {
		if e := x.next(t); e != (event{id: strconv.Itoa(i), data: "even@subx"}) {
			t.Fatalf("subx message %d: %+v", i, e)
		}
	}
}

// tlsRequest sends one request over a fresh TLS connection and returns the
// status line and body (the whole response, read until close or
// Content-Length).
func tlsRequest(t *testing.T, addr string, cfg *tls.Config, req string) (status int, body string) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: wait}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	fmt.Fprintf(c, req, addr)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response over TLS: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.Close {
		// The server closes after this answer: wait for it, so that the
		// connection no longer counts against the address's limit.
		_, _ = io.Copy(io.Discard, c)
	}
	return resp.StatusCode, string(b)
}

// TestTLSWithLimits: with --tls-cert, the --max-subscribers 503 and the
// --max-conns-per-ip 429 are proper HTTPS responses with their JSON
// bodies; /healthz and /metrics still answer from another address while
// one address is at its limit, and count the refusals.
func TestTLSWithLimits(t *testing.T) {
	cert := testcert.New(t)
	certFile, keyFile := cert.Files(t, t.TempDir())
	addr, _, _ := runServer(t, []string{"--max-subscribers", "1", "--max-conns-per-ip", "3"}, "TINYSSE_TLS_CERT="+certFile, "TINYSSE_TLS_KEY="+keyFile)
	cfg := cert.Client()

	// One stream: the subscriber limit.
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: wait}, "tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	fmt.Fprintf(c, "GET /sse HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	(&stream{conn: c}).readUntil(t, ": ok\n\n")
	if status, body := tlsRequest(t, addr, cfg, "GET /sse HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"); status != http.StatusServiceUnavailable || !json.Valid([]byte(body)) || !strings.Contains(body, `"error"`) {
		t.Errorf("second stream over HTTPS: %d %q, want 503 with a JSON error", status, body)
	}

	// Two more connections from 127.0.0.1: the address is at its limit
	// (3); the next one gets a 429 through TLS.
	for range 2 {
		h, err := tls.DialWithDialer(&net.Dialer{Timeout: wait}, "tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		if err := h.Handshake(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond) // the listener counts them when it accepts
	for _, path := range []string{"/sse", "/healthz"} {
		status, body := tlsRequest(t, addr, cfg, "GET "+path+" HTTP/1.1\r\nHost: %s\r\n\r\n")
		if status != http.StatusTooManyRequests || body != `{"error":"too many connections from your address"}` {
			t.Errorf("GET %s from the full address over HTTPS: %d %q, want 429", path, status, body)
		}
	}

	// Another loopback address is not at its limit: probes and scrapes
	// get through, and the metrics count what was turned away.
	hc := &http.Client{Timeout: wait, Transport: &http.Transport{
		TLSClientConfig: cfg,
		DialContext:     (&net.Dialer{Timeout: wait, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext,
	}}
	defer hc.CloseIdleConnections()
	wantHealthy(t, hc, "https://"+addr+"/healthz")
	resp, err := hc.Get("https://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics from 127.0.0.2: %d", resp.StatusCode)
	}
	if v := metricValue(t, string(b), "tinysse_connections_refused_per_ip_total"); v != 2 {
		t.Errorf("tinysse_connections_refused_per_ip_total %v, want 2 (the two 429s)", v)
	}
	if v := metricValue(t, string(b), "tinysse_connections_refused_total"); v != 0 {
		t.Errorf("tinysse_connections_refused_total %v, want 0 (the connection limit was never reached)", v)
	}
	if v := metricValue(t, string(b), `tinysse_subscribe_rejected_total{reason="limit"}`); v != 1 {
		t.Errorf(`tinysse_subscribe_rejected_total{reason="limit"} %v, want 1`, v)
	}
	if v := metricValue(t, string(b), "tinysse_subscribers"); v != 1 {
		t.Errorf("tinysse_subscribers %v, want 1", v)
	}
}

// TestRefusalReasons: the three kinds of 503 a publish or subscribe can
// get are counted apart in /metrics: a limit (--max-topics,
// --max-subscribers), NATS out of reach in cluster mode, and shutdown.
func TestRefusalReasons(t *testing.T) {
	url, ns := startNATSServer(t)
	addr := runNodes(t, 1, []string{"--max-topics", "1", "--max-subscribers", "1"}, "TINYSSE_NATS="+url)[0]
	base := "http://" + addr
	if a := request(t, http.MethodPost, base+"/sse?topic=a", `{"data":"x"}`); a.status != http.StatusAccepted {
		t.Fatalf("first topic: %d %s", a.status, a.body)
	}
	if a := request(t, http.MethodPost, base+"/sse?topic=b", `{"data":"x"}`); a.status != http.StatusServiceUnavailable {
		t.Fatalf("topic beyond --max-topics: %d %s", a.status, a.body)
	}
	openStream(t, addr, "/sse?topic=a").readUntil(t, ": ok\n\n")
	if r := get(t, base+"/sse?topic=a"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("stream beyond --max-subscribers: %d %s", r.status, r.body)
	}
	ns.Shutdown()
	if a := request(t, http.MethodPost, base+"/sse?topic=a", `{"data":"x"}`); a.status != http.StatusServiceUnavailable {
		t.Fatalf("publish with NATS gone: %d %s", a.status, a.body)
	}
	// The node still serves its subscribers: /healthz stays 200 (the
	// README says to alert on reason="unavailable" instead).
	if r := get(t, base+"/healthz"); r.status != http.StatusOK {
		t.Errorf("/healthz with NATS gone: %d %s", r.status, r.body)
	}
	body := get(t, base+"/metrics").body
	for name, want := range map[string]float64{
		`tinysse_publish_rejected_total{reason="limit"}`:           1,
		`tinysse_publish_rejected_total{reason="unavailable"}`:     1,
		`tinysse_publish_rejected_total{reason="shutting_down"}`:   0,
		`tinysse_subscribe_rejected_total{reason="limit"}`:         1,
		`tinysse_subscribe_rejected_total{reason="shutting_down"}`: 0,
	} {
		if v := metricValue(t, body, name); v != want {
			t.Errorf("%s %v, want %v", name, v, want)
		}
	}
}

// TestCheckExamples runs --check on every script in examples/: each loads,
// without listening or reaching for NATS or a certificate though the
// environment names them (a CI job may share the server's environment).
func TestCheckExamples(t *testing.T) {
	vars := env("TINYSSE_NATS=nats://127.0.0.1:1", "TINYSSE_LISTEN=256.0.0.1:1", "TINYSSE_TLS_CERT=/nonexistent", "TINYSSE_TLS_KEY=/nonexistent")
	files, err := filepath.Glob(filepath.Join("..", "..", "examples", "*.lua"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no example scripts: %v", err)
	}
	for _, f := range files {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"--check", f}, vars, &stdout, &stderr, nil); code != 0 || !strings.Contains(stdout.String(), ": ok") {
			t.Errorf("--check %s: exit %d, stdout %q, stderr %q", f, code, stdout.String(), stderr.String())
		}
	}
}

// TestWriteCoalesceShutdown: a message answered 202 inside a coalescing
// window still reaches the subscriber when SIGINT comes before the window
// ends, before the stream's ": shutdown" goodbye (on one node the ring is
// gone after the restart: a message not delivered then is lost).
func TestWriteCoalesceShutdown(t *testing.T) {
	addr, _, stop := runServer(t, []string{"--write-coalesce", "1s", "--auto-id"})
	sub := openStream(t, addr, "/sse")
	sub.readUntil(t, ": ok\n\n")
	for i := 1; i <= 3; i++ {
		if a := request(t, http.MethodPost, "http://"+addr+"/sse", fmt.Sprintf(`{"data":"late%d"}`, i)); a.status != http.StatusAccepted {
			t.Fatalf("publish: %d %s", a.status, a.body)
		}
	}
	stop()
	rest, _ := io.ReadAll(sub.conn)
	got := string(sub.got) + string(rest)
	want := "id: 1\ndata: late1\n\nid: 2\ndata: late2\n\nid: 3\ndata: late3\n\n: shutdown\n"
	if !strings.HasPrefix(got, want) {
		t.Errorf("stream after SIGINT: %q, want it to start %q", got, want)
	}
}

// TestTLSWriteCoalesceHook: over HTTPS (streams written by the
// subscriber's goroutine, no raw socket) with --write-coalesce and a
// message hook, bursts arrive whole, in order, through the hook.
func TestTLSWriteCoalesceHook(t *testing.T) {
	cert := testcert.New(t)
	certFile, keyFile := cert.Files(t, t.TempDir())
	script := writeScript(t, `function message(pub, sub)
  pub.msg.data = pub.msg.data .. "+"
  return pub
end`)
	addr, _, _ := runServer(t, []string{"--auto-id", "--write-coalesce", "25ms", "--script", script, "--tls-cert", certFile, "--tls-key", keyFile})
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: wait}, "tcp", addr, cert.Client())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	fmt.Fprintf(c, "GET /sse HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	s := &stream{conn: c}
	s.readUntil(t, ": ok\n\n")
	hc := &http.Client{Timeout: wait, Transport: &http.Transport{TLSClientConfig: cert.Client()}}
	defer hc.CloseIdleConnections()
	const n = 200
	for i := 1; i <= n; i++ {
		resp, err := hc.Post("https://"+addr+"/sse", "application/json", strings.NewReader(fmt.Sprintf(`{"data":"b%d"}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("publish %d: %d", i, resp.StatusCode)
		}
	}
	for i := 1; i <= n; i++ {
		if e := s.next(t); e != (event{id: strconv.Itoa(i), data: fmt.Sprintf("b%d+", i)}) {
			t.Fatalf("message %d over TLS: %+v", i, e)
		}
	}
}
