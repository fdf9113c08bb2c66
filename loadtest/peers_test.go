package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tinysse/tinysse/internal/testserver"
)

// Events as Centrifugo v6.9.1 writes them on uni_sse (captured from the
// real server, ids shortened; a "go install" build calls itself 0.0.0).
func TestCentrifugoPayload(t *testing.T) {
	payload := string(appendPayload(nil, 3, 7, 1700000000000000000, 60))
	for _, c := range []struct {
		in, want string
		isPub    bool
	}{
		{` {"connect":{"client":"1882c3ed","version":"0.0.0 OSS","subs":{"news":{}},"ping":25,"session":"fb9c37cd"}}`, "", false},
		{` {}`, "", false},
		{` {"channel":"news","pub":{"data":"` + payload + `","offset":12}}`, payload, true},
		{`{"channel":"news","pub":{"data":"` + payload + `"}}`, payload, true},
		{` {"channel":"other","pub":{"data":"` + payload + `"}}`, "", false},
		{` {"channel":"news","pub":{"data":{"p":1}}}`, "", true},
		{` {"channel":"news","join":{"info":{}}}`, "", false},
		{` not json`, "", false},
	} {
		got, isPub := centrifugoPayload([]byte(c.in))
		if string(got) != c.want || isPub != c.isPub {
			t.Errorf("centrifugoPayload(%.50q) = %.30q, %v; want %.30q, %v", c.in, got, isPub, c.want, c.isPub)
		}
	}
}

// The requests each peer target writes must be what a real HTTP server
// reads, with the payload where the peer expects it.
func TestPeerRequests(t *testing.T) {
	data := appendPayload(nil, 1, 42, 1700000000000000000, 100)

	t.Run("centrifugo", func(t *testing.T) {
		tg := targets["centrifugo"]
		u, _ := targetURL(tg.DefaultURL, tg.SubPath)
		req := readRequest(t, tg.AppendSubscribe(nil, u))
		var connect map[string]map[string]any
		if err := json.Unmarshal([]byte(req.URL.Query().Get("cf_connect")), &connect); err != nil || connect["subs"][peerChannel] == nil {
			t.Errorf("subscribe %s: cf_connect %v %v", req.URL, connect, err)
		}
		pu, _ := targetURL("http://127.0.0.1:18000", tg.PubPath)
		req = readRequest(t, tg.AppendPublish(nil, pu, []byte("1-42"), data))
		var body struct{ Channel, Data string }
		b, _ := io.ReadAll(req.Body)
		if err := json.Unmarshal(b, &body); err != nil || req.URL.Path != "/api/publish" ||
			body.Channel != peerChannel || body.Data != string(data) {
			t.Errorf("publish %s %q: %+v %v", req.URL, b, body, err)
		}
		for _, c := range []struct {
			status int
			body   string
			ok     bool
		}{{200, `{"result":{}}`, true}, {200, `{"error":{"code":102,"message":"unknown channel"}}`, false}, {401, ``, false}} {
			if tg.Published(c.status, []byte(c.body)) != c.ok {
				t.Errorf("Published(%d, %s) != %v", c.status, c.body, c.ok)
			}
		}
	})

	t.Run("mercure", func(t *testing.T) {
		const key = "another-key-for-this-test-0123456789abcdef"
		tg := mercureTarget(key)
		u, _ := targetURL(tg.DefaultURL, tg.SubPath)
		req := readRequest(t, tg.AppendSubscribe(nil, u))
		if req.URL.Path != "/.well-known/mercure" || req.URL.Query().Get("topic") != peerChannel {
			t.Errorf("subscribe %s", req.URL)
		}
		for _, id := range []string{"", "1-42"} {
			req = readRequest(t, tg.AppendPublish(nil, u, []byte(id), data))
			if err := req.ParseForm(); err != nil {
				t.Fatal(err)
			}
			f := req.PostForm
			if f.Get("topic") != peerChannel || f.Get("data") != string(data) || f.Get("id") != id || f.Has("id") != (id != "") {
				t.Errorf("publish form %v", f)
			}
			auth, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
			if !ok {
				t.Fatalf("no bearer token: %q", req.Header.Get("Authorization"))
			}
			claims := jwt.MapClaims{}
			if _, err := jwt.ParseWithClaims(auth, claims, func(*jwt.Token) (any, error) { return []byte(key), nil },
				jwt.WithValidMethods([]string{"HS256"})); err != nil {
				t.Fatalf("token: %v", err)
			}
			if fmt.Sprint(claims["mercure"]) != "map[publish:[*]]" {
				t.Errorf("claims %v", claims)
			}
		}
	})
}

func readRequest(t *testing.T, b []byte) *http.Request {
	t.Helper()
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	if cl := req.Header.Get("Content-Length"); cl != "" {
		if n, _ := strconv.Atoi(cl); n != int(req.ContentLength) || req.ContentLength < 0 {
			t.Fatalf("content length %q", cl)
		}
		body, _ := io.ReadAll(req.Body)
		if len(body) != int(req.ContentLength) {
			t.Fatalf("body %d bytes, Content-Length %d", len(body), req.ContentLength)
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	return req
}

// peerBinary is loadtest/peers/bin/NAME, or the test is skipped.
func peerBinary(t *testing.T, name string) string {
	t.Helper()
	p, _ := filepath.Abs(filepath.Join("peers", "bin", name))
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s not installed (%v): run loadtest/peers/install.sh %s to test against it", name, err, name)
	}
	return p
}

// startPeer runs a peer server and waits until its port accepts.
func startPeer(t *testing.T, port int, env []string, bin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), out.String())
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s: %v", bin, addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runPeer drives a real peer with the workload of TestRunTinysse and
// wants every delivery checked clean.
func runPeer(t *testing.T, target, subURL string, pid int) {
	o := testOptions(t, target, subURL)
	o.pid = pid
	o.handshakeTimeout = 20 * time.Second
	res := runOK(t, o)
	d := res.Deliveries
	if !res.OK || res.Subscribers.Ready != 20 || res.Publish.Acked == 0 ||
		d.Expected != 20*res.Publish.Acked || d.Received != d.Expected || d.Foreign != 0 {
		t.Fatalf("result not clean: %+v %+v %v", res.Subscribers, d, res.Errors)
	}
	if res.Latency == nil || res.Latency.Count != d.Total || res.Server == nil || res.Server.RSSConnected <= 0 {
		t.Errorf("latency %+v, server %+v", res.Latency, res.Server)
	}
}

func TestRunCentrifugo(t *testing.T) {
	bin := peerBinary(t, "centrifugo")
	port := testserver.FreePort(t)
	cfg, _ := filepath.Abs(filepath.Join("peers", "centrifugo.json"))
	cmd := startPeer(t, port, []string{"CENTRIFUGO_HTTP_SERVER_PORT=" + strconv.Itoa(port)}, bin, "-c", cfg)
	runPeer(t, "centrifugo", fmt.Sprintf("http://127.0.0.1:%d/connection/uni_sse", port), cmd.Process.Pid)
}

func TestRunMercure(t *testing.T) {
	bin := peerBinary(t, "mercure")
	port := testserver.FreePort(t)
	cfg, _ := filepath.Abs(filepath.Join("peers", "Caddyfile"))
	dir := t.TempDir()
	cmd := startPeer(t, port, []string{"MERCURE_PORT=" + strconv.Itoa(port), "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir},
		bin, "run", "--config", cfg, "--adapter", "caddyfile")
	u := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Path: "/.well-known/mercure"}
	runPeer(t, "mercure", u.String(), cmd.Process.Pid)
}
