package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestStoreOptions(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		env  []string
		name string
	}{
		{[]string{"--store", dir, "--nats", "nats://127.0.0.1:4222"}, nil, "--store"},
		{[]string{"--store-max-msgs=-1"}, nil, "--store-max-msgs"},
		{[]string{"--store-max-bytes", "lots"}, nil, "--store-max-bytes"},
		{[]string{"--store-max-age", "long"}, nil, "--store-max-age"},
		{[]string{"--store-sync", "sometimes"}, nil, "--store-sync"},
		{[]string{"--store-sync", "0s"}, nil, "--store-sync"},
		{nil, []string{"TINYSSE_STORE_SYNC=never"}, "--store-sync"},
		{nil, []string{"TINYSSE_HEALTH_REQUIRES_NATS=perhaps"}, "--health-requires-nats"},
		{[]string{"--nats-publish-timeout", "10ms"}, nil, "--nats-publish-timeout"},
		{nil, []string{"TINYSSE_NATS_PUBLISH_TIMEOUT=2m"}, "--nats-publish-timeout"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(c.args, env(c.env...), &stdout, &stderr, nil); code != 2 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), c.name) {
			t.Errorf("%q %q: exit %d, stderr %q; want 2 and one line naming %s", c.args, c.env, code, stderr.String(), c.name)
		}
	}
	o, err := parseOptions(nil, env("TINYSSE_STORE="+dir, "TINYSSE_STORE_MAX_AGE=1h", "TINYSSE_STORE_MAX_MSGS=10", "TINYSSE_STORE_MAX_BYTES=1MB",
		"TINYSSE_STORE_SYNC=always", "TINYSSE_HEALTH_REQUIRES_NATS=true"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (storeOptions{dir: dir, maxAge: time.Hour, maxMsgs: 10, maxBytes: 1 << 20, syncAlways: true}); o.store != want || !o.nats.healthRequired {
		t.Errorf("store options %+v (health requires NATS %v), want %+v", o.store, o.nats.healthRequired, want)
	}
	if o, err := parseOptions([]string{"--store-sync", "250ms"}, env(), nil); err != nil || o.store.sync != 250*time.Millisecond || o.store.syncAlways || o.nats.publishTimeout != 5*time.Second {
		t.Errorf("--store-sync 250ms: %+v %v (publish timeout %v, want the default 5s)", o.store, err, o.nats.publishTimeout)
	}
	if o, err := parseOptions(nil, env("TINYSSE_NATS_PUBLISH_TIMEOUT=12s"), nil); err != nil || o.nats.publishTimeout != 12*time.Second {
		t.Errorf("TINYSSE_NATS_PUBLISH_TIMEOUT=12s: %v %v", o.nats.publishTimeout, err)
	}

	// A store that cannot be opened: exit 1 naming --store, nothing listens.
	file := filepath.Join(dir, "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	ready := make(chan string, 1)
	if code := run([]string{"--listen", "127.0.0.1:0", "--store", file}, env(), io.Discard, &stderr, ready); code != 1 || !strings.Contains(stderr.String(), "--store") || len(ready) != 0 {
		t.Errorf("--store on a file: exit %d, stderr %q; want 1 naming --store", code, stderr.String())
	}
}

// Two processes on one store would corrupt it: the second is refused.
func TestStoreInUse(t *testing.T) {
	dir := t.TempDir()
	runServer(t, []string{"--store", dir, "--auto-id"})
	var stderr bytes.Buffer
	if code := run([]string{"--listen", "127.0.0.1:0", "--store", dir}, env(), io.Discard, &stderr, nil); code != 1 || !strings.Contains(stderr.String(), "in use by another process") {
		t.Errorf("a second server on the store: exit %d, stderr %q; want 1, in use", code, stderr.String())
	}
}

// publishKey publishes body to topic with an Idempotency-Key.
func publishKey(t *testing.T, addr, topic, body, key string) reply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/sse?topic="+topic, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	c := &http.Client{Timeout: wait, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, string(b)}
}

// With --store, one node keeps its history across a restart; ids go on
// from the last; the limits bound what is kept; a repeated Idempotency-Key
// stores one message; /healthz and /metrics say the store is linked.
func TestStoreRun(t *testing.T) {
	dir := t.TempDir()
	addr, _, stop := runServer(t, []string{"--store", dir, "--auto-id", "--store-max-msgs", "5"})
	for i := 1; i <= 7; i++ {
		if a := request(t, http.MethodPost, "http://"+addr+"/sse?topic=t", fmt.Sprintf(`{"data":"s%d"}`, i)); a.status != http.StatusAccepted {
			t.Fatalf("publish: %d %s", a.status, a.body)
		}
	}
	for range 2 {
		if a := publishKey(t, addr, "t", `{"data":"keyed"}`, "k1"); a.status != http.StatusAccepted {
			t.Fatalf("keyed publish: %d %s", a.status, a.body)
		}
	}
	if h := get(t, "http://"+addr+"/healthz"); h.status != http.StatusOK || h.body != `{"status":"ok","nats":"ok"}` {
		t.Errorf("/healthz: %d %s", h.status, h.body)
	}
	m := get(t, "http://"+addr+"/metrics").body
	if v := metricValue(t, m, "tinysse_nats_publish_duration_seconds_count"); v != 9 {
		t.Errorf("JetStream publishes timed: %v, want 9", v)
	}
	if v := metricValue(t, m, "tinysse_nats_publish_duplicates_total"); v != 1 {
		t.Errorf("duplicates: %v, want 1", v)
	}
	stop()

	// Restarted on the same store: replay from the stream (the rings are
	// new and empty), ids from 9 on.
	addr, _, _ = runServer(t, []string{"--store", dir, "--auto-id", "--store-max-msgs", "5"})
	s := openStream(t, addr, "/sse?topic=t&last_event_id=2")
	s.readUntil(t, ": ok\n\n")
	want := ": replay-gap\n\nid: 4\ndata: s4\n\nid: 5\ndata: s5\n\nid: 6\ndata: s6\n\nid: 7\ndata: s7\n\nid: 8\ndata: keyed\n\n"
	if got := s.readUntil(t, "data: keyed\n\n"); got != want {
		t.Errorf("replay after the restart:\n%q\nwant\n%q", got, want)
	}
	if a := request(t, http.MethodPost, "http://"+addr+"/sse?topic=t", `{"data":"after"}`); a.status != http.StatusAccepted {
		t.Fatalf("publish: %d %s", a.status, a.body)
	}
	if got := s.readUntil(t, "\n\n"); got != "id: 9\ndata: after\n\n" {
		t.Errorf("after the restart: %q, want id 9", got)
	}
	if v := metricValue(t, get(t, "http://"+addr+"/metrics").body, "tinysse_nats_fetches_total"); v < 1 {
		t.Errorf("replay fetches: %v, want at least 1", v)
	}
}

// --store-max-bytes and --store-max-age bound the store too.
func TestStoreLimits(t *testing.T) {
	addr, _, stop := runServer(t, []string{"--store", t.TempDir(), "--auto-id", "--store-max-bytes", "1KB", "--capacity", "1"})
	big := strings.Repeat("x", 300)
	for i := 1; i <= 10; i++ {
		if a := request(t, http.MethodPost, "http://"+addr+"/sse?topic=b", fmt.Sprintf(`{"data":"%d%s"}`, i, big)); a.status != http.StatusAccepted {
			t.Fatalf("publish: %d %s", a.status, a.body)
		}
	}
	s := openStream(t, addr, "/sse?topic=b&last_event_id=0")
	s.readUntil(t, ": ok\n\n")
	if got := s.readUntil(t, "\n\n"); got != ": replay-gap\n\n" {
		t.Errorf("replay over --store-max-bytes: %q, want a gap first", got)
	}
	if got := s.readUntil(t, "\n\n"); strings.HasPrefix(got, "id: 1\n") || !strings.HasPrefix(got, "id: ") {
		t.Errorf("the oldest kept: %q, want a later one than 1", got)
	}

	stop() // one server at a time: runServer stops it with the process's SIGINT

	addr, _, _ = runServer(t, []string{"--store", t.TempDir(), "--auto-id", "--store-max-age", "1s", "--capacity", "1"})
	for i := 1; i <= 3; i++ {
		if a := request(t, http.MethodPost, "http://"+addr+"/sse?topic=a", `{"data":"old"}`); a.status != http.StatusAccepted {
			t.Fatalf("publish: %d %s", a.status, a.body)
		}
	}
	time.Sleep(2500 * time.Millisecond)
	s = openStream(t, addr, "/sse?topic=a&last_event_id=0")
	s.readUntil(t, ": ok\n\n")
	if got := s.readUntil(t, "\n\n"); got != ": replay-gap\n\n" {
		t.Errorf("replay over --store-max-age: %q, want a gap", got)
	}
	_ = s.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _ := s.conn.Read(make([]byte, 64)); n > 0 || len(s.got) > 0 {
		t.Errorf("expired messages replayed: %q", s.got)
	}
}

// Messages answered 202 survive kill -9 of the process (the store writes
// each to its file before it acknowledges it) while publishers are busy;
// after the restart every one of them replays with its id, and new ids
// follow the last.
func TestStoreSurvivesKill9(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	var logs syncBuffer
	p := startProcess(t, addr, io.Discard, &logs, bin, "--listen", addr, "--store", dir, "--auto-id", "--log-level", "WARN")

	var mu sync.Mutex
	accepted := map[string]bool{}
	stopPublishing := keepPublishing(4, func(w, i int) bool {
		data := fmt.Sprintf("w%d-%d", w, i)
		_, status, _ := rawPublish(addr, `{"data":"`+data+`","topic":"k"}`)
		if status == http.StatusAccepted {
			mu.Lock()
			accepted[data] = true
			mu.Unlock()
		}
		return status != 0 // 0: killed
	})
	time.Sleep(time.Second)
	if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.ExitedWithin(wait)
	stopPublishing()
	if len(accepted) == 0 {
		t.Fatal("nothing was accepted before the kill")
	}

	startProcess(t, addr, io.Discard, &logs, bin, "--listen", addr, "--store", dir, "--auto-id", "--log-level", "WARN")
	s := openStream(t, addr, "/sse?topic=k&last_event_id=0")
	s.readUntil(t, ": ok\n\n")
	if a := request(t, http.MethodPost, "http://"+addr+"/sse?topic=k", `{"data":"after the restart"}`); a.status != http.StatusAccepted {
		t.Fatalf("publish after the restart: %d %s", a.status, a.body)
	}
	replayed := s.readUntil(t, "data: after the restart\n\n")
	seen := map[string]int{}
	lastID := 0
	for _, frame := range strings.Split(strings.TrimSuffix(replayed, "\n\n"), "\n\n") {
		var id int
		var data string
		if _, err := fmt.Sscanf(frame, "id: %d\ndata: %s", &id, &data); err != nil {
			t.Fatalf("frame %q: %v", frame, err)
		}
		if id != lastID+1 {
			t.Errorf("id %d after %d", id, lastID)
		}
		lastID = id
		seen[data]++
	}
	for data := range accepted {
		if seen[data] != 1 {
			t.Errorf("%s was answered 202 and replayed %d times", data, seen[data])
		}
	}
	t.Logf("kill -9 with 4 publishers: %d publishes answered 202, all replayed after the restart with ids 1..%d; %d more were stored without an answer", len(accepted), lastID, lastID-1-len(accepted))
}

// In cluster mode /healthz says whether the node is linked to NATS; with
// --health-requires-nats it answers 503 while it is not (without, 200: the
// node still serves its subscribers). Shutting down is 503 either way.
func TestHealthNATS(t *testing.T) {
	for _, require := range []bool{false, true} {
		url, ns := startNATSServer(t)
		args := []string{"--nats", url, "--auto-id"}
		if require {
			args = append(args, "--health-requires-nats")
		}
		addr, _, stop := runServer(t, args)
		if h := get(t, "http://"+addr+"/healthz"); h.status != http.StatusOK || h.body != `{"status":"ok","nats":"ok"}` {
			t.Errorf("linked: %d %s", h.status, h.body)
		}
		if v := metricValue(t, get(t, "http://"+addr+"/metrics").body, "tinysse_nats_connected"); v != 1 {
			t.Errorf("tinysse_nats_connected %v while linked", v)
		}
		ns.Shutdown()
		want, body := http.StatusOK, `{"status":"ok","nats":"disconnected"}`
		if require {
			want, body = http.StatusServiceUnavailable, `{"status":"unavailable","nats":"disconnected"}`
		}
		deadline := time.Now().Add(wait)
		h := get(t, "http://"+addr+"/healthz")
		for h.body != body && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			h = get(t, "http://"+addr+"/healthz")
		}
		if h.status != want || h.body != body {
			t.Errorf("--health-requires-nats %v, NATS down: %d %s, want %d %s", require, h.status, h.body, want, body)
		}
		if v := metricValue(t, get(t, "http://"+addr+"/metrics").body, "tinysse_nats_connected"); v != 0 {
			t.Errorf("tinysse_nats_connected %v while down", v)
		}
		stop()
	}
}

func TestHealthHandler(t *testing.T) {
	for _, c := range []struct {
		closing, connected, require bool
		status                      int
		body                        string
	}{
		{false, true, true, http.StatusOK, `{"status":"ok","nats":"ok"}`},
		{false, false, false, http.StatusOK, `{"status":"ok","nats":"disconnected"}`},
		{false, false, true, http.StatusServiceUnavailable, `{"status":"unavailable","nats":"disconnected"}`},
		{true, true, false, http.StatusServiceUnavailable, `{"status":"shutting down","nats":"ok"}`},
		{true, false, true, http.StatusServiceUnavailable, `{"status":"shutting down","nats":"disconnected"}`},
	} {
		var ctx fasthttp.RequestCtx
		healthHandler(func() bool { return c.closing }, func() bool { return c.connected }, c.require)(&ctx)
		if ctx.Response.StatusCode() != c.status || string(ctx.Response.Body()) != c.body || string(ctx.Response.Header.ContentType()) != "application/json" {
			t.Errorf("%+v: %d %s", c, ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

// A message NATS will not take (over the server's max_payload, 1MB by
// default, while --max-body-size allows it) is refused with 413, and the
// node goes on.
func TestClusterMaxPayload(t *testing.T) {
	url, _ := startNATSServer(t)
	addr, _, _ := runServer(t, []string{"--nats", url, "--auto-id", "--max-body-size", "4MB"})
	big := `{"data":"` + strings.Repeat("x", 1500<<10) + `"}`
	if a := request(t, http.MethodPost, "http://"+addr+"/sse", big); a.status != http.StatusRequestEntityTooLarge || !strings.Contains(a.body, "max_payload") {
		t.Errorf("a 1.5MB message: %d %s, want 413 naming max_payload", a.status, a.body)
	}
	if a := request(t, http.MethodPost, "http://"+addr+"/sse", `{"data":"small"}`); a.status != http.StatusAccepted {
		t.Errorf("then a small one: %d %s", a.status, a.body)
	}
}
