package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/tinysse/tinysse/internal/apispec"
	"github.com/tinysse/tinysse/internal/testserver"
)

// apiCall sends one request to the server API at addr (default path),
// checks the answer against docs/api.yaml and decodes it into v (when
// not nil). headers are name, value pairs.
func apiCall(t *testing.T, addr, method, endpoint, body string, v any, headers ...string) int {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+"/_tinysse/api/"+endpoint, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	c := &http.Client{Timeout: wait, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, endpoint, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	name, _, _ := strings.Cut(endpoint, "?")
	apispec.Check(t, req, name, resp.StatusCode, resp.Header, b)
	if v != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s %s: %v in %s", method, endpoint, err, b)
		}
	}
	return resp.StatusCode
}

type cmdPresence struct {
	Count       int64
	Subscribers []struct {
		ID     uint64
		Topics []string
		Keys   map[string]any
	}
}

type cmdHistory struct {
	Messages []struct {
		ID     string
		Data   string
		Cursor string
	}
	NextCursor string `json:"next_cursor"`
	More, Gap  bool
	Source     string
}

// TestRunAPI: the API through run, next to the dashboard at their
// default paths: presence shows what the subscribe hook kept on sub
// (read on the subscriber's VM, several VMs), disconnect ends a stream
// and runs unsubscribe, publish goes through the publish hook.
func TestRunAPI(t *testing.T) {
	script := writeScript(t, `function subscribe(sub)
  sub.user = sub.req.headers["x-user"]
  sub.since = 1234
  return sub
end
function publish(pub)
  pub.msg.comment = {"via the hook"}
  return pub
end
function unsubscribe(sub) print("bye " .. sub.user) end`)
	addr, _, stop := runServer(t, []string{"--script", script, "--lua-vms", "2", "--shards", "2"})
	defer stop()
	if r := get(t, "http://"+addr+"/_tinysse/"); r.status != 200 {
		t.Errorf("dashboard beside the API: %d", r.status)
	}
	var streams []net.Conn
	for _, user := range []string{"ann", "bob"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /sse?topic=room HTTP/1.1\r\nHost: x\r\nX-User: %s\r\n\r\n", user)
		s := &stream{conn: c}
		s.readUntil(t, ": ok\n\n")
		streams = append(streams, c)
	}
	var p cmdPresence
	waitFor(t, "two subscribers", func() bool {
		apiCall(t, addr, http.MethodGet, "presence?topic=room", "", &p)
		return p.Count == 2
	})
	var users []string
	for _, s := range p.Subscribers {
		users = append(users, fmt.Sprint(s.Keys["user"]))
		if s.Keys["since"] != float64(1234) || !slices.Equal(s.Topics, []string{"room"}) {
			t.Errorf("subscriber %+v", s)
		}
	}
	if !slices.Equal(users, []string{"ann", "bob"}) {
		t.Errorf("users %q", users)
	}

	if st := apiCall(t, addr, http.MethodPost, "publish?topic=room", `{"data":"hello"}`, nil); st != http.StatusAccepted {
		t.Fatalf("publish through the API: %d", st)
	}
	s0 := &stream{conn: streams[0]}
	s0.readUntil(t, "data: hello\n: via the hook\n\n")

	var d struct{ Disconnected int }
	if st := apiCall(t, addr, http.MethodPost, "disconnect", fmt.Sprintf(`{"subscriber":%d,"retry":500}`, p.Subscribers[0].ID), &d); st != 200 || d.Disconnected != 1 {
		t.Fatalf("disconnect: %d %+v", st, d)
	}
	s0.readUntil(t, ": disconnected\nretry: 500\n\n")
	s0.expectClosed(t)
	waitFor(t, "one subscriber left", func() bool {
		apiCall(t, addr, http.MethodGet, "presence?topic=room", "", &p)
		return p.Count == 1 && len(p.Subscribers) == 1 && p.Subscribers[0].Keys["user"] == "bob"
	})

	var h cmdHistory
	apiCall(t, addr, http.MethodGet, "history?topic=room", "", &h)
	if len(h.Messages) != 1 || h.Messages[0].Data != "hello" || h.Source != "ring" {
		t.Errorf("history: %+v", h)
	}
}

// TestAPIOffWhenExposed: on an address others can reach the API needs
// admin protection (--dashboard-public does not open it); on loopback it
// is on; --api-path "" turns it off. (The exposed address is given, not
// bound.)
func TestAPIOffWhenExposed(t *testing.T) {
	public := &net.TCPAddr{IP: net.IPv4zero, Port: 1983}
	loopback := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1983}
	for _, c := range []struct {
		args           []string
		exposed, local bool
	}{
		{nil, false, true},
		{[]string{"--admin-token", "t"}, true, true},
		{[]string{"--jwt-secret", "s"}, true, true},
		{[]string{"--dashboard-public"}, false, true},
		{[]string{"--api-path", ""}, false, false},
	} {
		o, err := parseOptions(c.args, env(), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		got := apiAllowed(o, public, slog.New(slog.NewTextHandler(&logs, nil)))
		if got != c.exposed {
			t.Errorf("%q on %v: API %v, want %v", c.args, public, got, c.exposed)
		}
		if said := strings.Contains(logs.String(), "server API off") && strings.Contains(logs.String(), "--admin-token"); said != (!got && o.apiPath != "") {
			t.Errorf("%q: log %q", c.args, logs.String())
		}
		if got := apiAllowed(o, loopback, slog.New(slog.NewTextHandler(io.Discard, nil))); got != c.local {
			t.Errorf("%q on loopback: API %v, want %v", c.args, got, c.local)
		}
	}
	addr, _, stop := runServer(t, []string{"--api-path", ""})
	defer stop()
	if r := get(t, "http://"+addr+"/_tinysse/api/topics"); r.status != http.StatusNotFound {
		t.Errorf("--api-path \"\": %d", r.status)
	}
}

// TestAPIPathOptions: --api-path gets its slash, must not clash with
// the other paths, and may sit under the dashboard's.
func TestAPIPathOptions(t *testing.T) {
	o, err := parseOptions([]string{"--api-path", "/api"}, env(), io.Discard)
	if err != nil || o.apiPath != "/api/" {
		t.Fatalf("--api-path /api: %v %q", err, o.apiPath)
	}
	for _, args := range [][]string{
		{"--api-path", "api/"},
		{"--api-path", "/"},
		{"--api-path", "/x/", "--pub-path", "/x/pub"},
		{"--api-path", "/x/", "--metrics-path", "/x/metrics"},
		{"--api-path", "/_tinysse/"},
		{"--api-path", "/x/", "--dashboard-path", "/x/dash/"},
	} {
		if _, err := parseOptions(args, env(), io.Discard); err == nil || !strings.Contains(err.Error(), "--api-path") {
			t.Errorf("%q: %v", args, err)
		}
	}
	addr, _, stop := runServer(t, []string{"--api-path", "/api", "--admin-token", "secret"})
	defer stop()
	if r := get(t, "http://"+addr+"/api/topics"); r.status != http.StatusUnauthorized {
		t.Errorf("without the token: %d %s", r.status, r.body)
	}
	if r := get(t, "http://"+addr+"/api/topics?authorization=secret"); r.status != http.StatusOK {
		t.Errorf("with the token: %d %s", r.status, r.body)
	}
}

// TestAPIStoreHistory: with --store the history reaches past the ring
// into the stream, a page at a time, with the stream's ids.
func TestAPIStoreHistory(t *testing.T) {
	addr, _, stop := runServer(t, []string{"--store", t.TempDir(), "--auto-id", "--capacity", "4"})
	defer stop()
	for i := 1; i <= 10; i++ {
		if r := request(t, http.MethodPost, "http://"+addr+"/sse?topic=t", fmt.Sprintf(`{"data":"%d"}`, i)); r.status != http.StatusAccepted {
			t.Fatalf("publish: %d %s", r.status, r.body)
		}
		if i%3 == 0 {
			request(t, http.MethodPost, "http://"+addr+"/sse?topic=other", `{"data":"x"}`)
		}
	}
	var h cmdHistory
	apiCall(t, addr, http.MethodGet, "history?topic=t&limit=2", "", &h)
	if len(h.Messages) != 2 || h.Messages[1].Data != "10" || h.Source != "ring" {
		t.Fatalf("newest: %+v", h)
	}
	var all []string
	endpoint := "history?topic=t&cursor=0&limit=4"
	for range 10 {
		apiCall(t, addr, http.MethodGet, endpoint, "", &h)
		for _, m := range h.Messages {
			all = append(all, m.Data)
			if m.ID != m.Cursor {
				t.Errorf("message %q: id %q, cursor %q (auto ids are the stream sequence)", m.Data, m.ID, m.Cursor)
			}
		}
		if h.Gap {
			t.Errorf("gap in %+v", h)
		}
		if !h.More {
			break
		}
		endpoint = "history?topic=t&limit=4&cursor=" + h.NextCursor
	}
	if want := []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}; !slices.Equal(all, want) {
		t.Errorf("read by pages: %q, want %q", all, want)
	}
	apiCall(t, addr, http.MethodGet, "history?topic=t&since=1&limit=3", "", &h)
	if h.Source != "stream" || len(h.Messages) != 3 || h.Messages[0].Data != "2" {
		t.Errorf("since the first id: %+v", h)
	}
}

// TestAPIClusterPerNode: in cluster mode presence and topics are each
// node's own, disconnect acts on the node asked, and a publish through
// one node's API reaches a subscriber of the other.
func TestAPIClusterPerNode(t *testing.T) {
	nats := startNATS(t)
	addrs := runNodes(t, 2, []string{"--nats", nats, "--nats-stream", "apiper", "--auto-id"})
	a, b := addrs[0], addrs[1]
	s := openStream(t, a, "/sse?topic=t")
	s.readUntil(t, ": ok\n\n")
	var p cmdPresence
	waitFor(t, "the subscriber on node a", func() bool {
		apiCall(t, a, http.MethodGet, "presence?topic=t", "", &p)
		return p.Count == 1
	})
	apiCall(t, b, http.MethodGet, "presence?topic=t", "", &p)
	if p.Count != 0 {
		t.Errorf("node b shows %d subscribers of node a", p.Count)
	}
	if st := apiCall(t, b, http.MethodPost, "publish?topic=t", `{"data":"from b"}`, nil); st != http.StatusAccepted {
		t.Fatalf("publish on b: %d", st)
	}
	s.readUntil(t, "data: from b\n\n")
	var h cmdHistory
	waitFor(t, "the message in b's ring", func() bool {
		apiCall(t, b, http.MethodGet, "history?topic=t", "", &h)
		return len(h.Messages) == 1
	})
	if h.Messages[0].Data != "from b" {
		t.Errorf("b's history: %+v", h)
	}
	var d struct{ Disconnected int }
	apiCall(t, b, http.MethodPost, "disconnect", `{"topic":"t"}`, &d)
	if d.Disconnected != 0 {
		t.Errorf("b disconnected %d of a's subscribers", d.Disconnected)
	}
	apiCall(t, a, http.MethodPost, "disconnect", `{"topic":"t"}`, &d)
	if d.Disconnected != 1 {
		t.Errorf("a disconnected %d", d.Disconnected)
	}
	s.readUntil(t, ": disconnected\n\n")
}

// waitFor polls cond until it holds, at most wait.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testserver.Eventually(t, wait, what, cond)
}

// TestAPIFromMessageHook: a message hook that calls presence on its own
// server holds its shard's pass while the request waits for that shard:
// --script-timeout cuts the hook off, and the server goes on serving.
func TestAPIFromMessageHook(t *testing.T) {
	script := writeScript(t, `local http = require "http"
local base
function startup(cli) base = "http://" .. cli.listen .. cli.api_path end
function message(pub, sub)
  if pub.msg.data == "ask" then http.get(base .. "presence") end
  return pub
end`)
	// startup needs the real address: listen on a port chosen here.
	port := freeAddr(t)
	addr, _, stop := runServer(t, []string{"--listen", port, "--script", script, "--script-timeout", "500ms", "--shards", "1"})
	defer stop()
	s := openStream(t, addr, "/sse")
	s.readUntil(t, ": ok\n\n")
	if r := request(t, http.MethodPost, "http://"+addr+"/sse", `{"data":"ask"}`); r.status != http.StatusAccepted {
		t.Fatalf("publish: %d", r.status)
	}
	if r := request(t, http.MethodPost, "http://"+addr+"/sse", `{"data":"after"}`); r.status != http.StatusAccepted {
		t.Fatalf("publish: %d", r.status)
	}
	s.readUntil(t, "data: after\n\n") // "ask" was skipped: its hook failed
	var p cmdPresence
	apiCall(t, addr, http.MethodGet, "presence", "", &p)
	if p.Count != 1 {
		t.Errorf("presence after: %+v", p)
	}
}
