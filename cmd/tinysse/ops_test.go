package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinysse/tinysse/internal/testcert"
)

// waitExit waits up to within for a run to send its exit code on exited
// and fails the test unless it is want; after names what ended the run.
func waitExit(t testing.TB, exited <-chan int, want int, within time.Duration, after string) {
	t.Helper()
	select {
	case code := <-exited:
		if code != want {
			t.Errorf("exit %d after %s, want %d", code, after, want)
		}
	case <-time.After(within):
		t.Fatalf("run did not return after %s", after)
	}
}

// interruptRuns sends this process SIGINT and waits up to within for each
// of the n runs it stops to exit 0.
func interruptRuns(t testing.TB, exited <-chan int, n int, within time.Duration) {
	t.Helper()
	if err := interruptSelf(); err != nil {
		t.Fatal(err)
	}
	for range n {
		waitExit(t, exited, 0, within, "SIGINT")
	}
}

// startRun runs run with args in a goroutine, its log to logs, and waits
// up to within for it to be ready; exited gets its exit code.
func startRun(t testing.TB, args, vars []string, logs *syncBuffer, exited chan<- int, within time.Duration) (addr string) {
	t.Helper()
	ready := make(chan string, 1)
	done := make(chan int, 1)
	go func() {
		code := run(args, env(vars...), io.Discard, logs, ready)
		done <- code
		exited <- code
	}()
	select {
	case addr = <-ready:
		return addr
	case code := <-done:
		t.Fatalf("run %q exited %d: %s", args, code, logs)
	case <-time.After(within):
		t.Fatalf("run %q did not get ready", args)
	}
	return ""
}

// runServer starts run with args on a loopback port; stop sends SIGINT
// (run has subscribed to it before it reports ready) and waits for exit 0.
func runServer(t testing.TB, args []string, vars ...string) (addr string, logs *syncBuffer, stop func()) {
	t.Helper()
	logs = &syncBuffer{}
	exited := make(chan int, 1)
	addr = startRun(t, append([]string{"--listen", "127.0.0.1:0"}, args...), vars, logs, exited, wait)
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		interruptRuns(t, exited, 1, 2*wait)
	}
	t.Cleanup(stop)
	return addr, logs, stop
}

func TestOpsHelp(t *testing.T) {
	var stdout bytes.Buffer
	if code := run([]string{"--help"}, env(), &stdout, io.Discard, nil); code != 0 {
		t.Fatal(code)
	}
	for _, o := range []struct{ long, def string }{
		{"metrics-path", `"/metrics"`},
		{"metrics-topics", "10"},
		{"health-path", `"/healthz"`},
		{"log-format", `"text"`},
		{"tls-cert", ""},
		{"tls-key", ""},
		{"dashboard-path", `"/_tinysse/"`},
		{"no-dashboard", ""},
		{"check", ""},
	} {
		var line string
		for _, l := range strings.Split(stdout.String(), "\n") {
			if strings.HasPrefix(l, "      --"+o.long+" ") {
				line = l
			}
		}
		switch {
		case line == "":
			t.Errorf("no line for --%s", o.long)
		case o.long == "check" && strings.Contains(line, "[env"):
			t.Errorf("--check has a variable: %q", line)
		case o.long != "check" && !strings.Contains(line, "[env "+envName(o.long)+"]"):
			t.Errorf("%q does not name %s", line, envName(o.long))
		case o.def != "" && !strings.HasSuffix(line, "(default "+o.def+")"):
			t.Errorf("%q does not give the default %s", line, o.def)
		}
	}
}

func TestOpsBadValues(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  []string
		name string
	}{
		{[]string{"--log-format", "xml"}, nil, "--log-format"},
		{nil, []string{"TINYSSE_LOG_FORMAT=yaml"}, "--log-format"},
		{[]string{"--metrics-topics", "0"}, nil, "--metrics-topics"},
		{[]string{"--metrics-topics", "many"}, nil, "--metrics-topics"},
		{nil, []string{"TINYSSE_METRICS_TOPICS=-1"}, "--metrics-topics"},
		{[]string{"--metrics-path", "metrics"}, nil, "--metrics-path"},
		{[]string{"--metrics-path", "/sse"}, nil, "--metrics-path"},
		{nil, []string{"TINYSSE_HEALTH_PATH=/sse"}, "--health-path"},
		{[]string{"--health-path", "healthz"}, nil, "--health-path"},
		{[]string{"--dashboard-path", "/"}, nil, "--dashboard-path"},
		{[]string{"--dashboard-path", ""}, nil, "--dashboard-path"},
		{[]string{"--metrics-path", "/m", "--health-path", "/m"}, nil, "--health-path"},
		{[]string{"--dashboard-path", "/ops/", "--pub-path", "/ops/pub"}, nil, "--dashboard-path"},
		{[]string{"--metrics-path", "/_tinysse/metrics"}, nil, "--dashboard-path"},
		{[]string{"--health-path", "/ops/health", "--dashboard-path", "/ops/"}, nil, "--dashboard-path"},
		{[]string{"--tls-cert", "cert.pem"}, nil, "--tls-cert"},
		{nil, []string{"TINYSSE_TLS_KEY=key.pem"}, "--tls-key"},
		{nil, []string{"TINYSSE_NO_DASHBOARD=perhaps"}, "--no-dashboard"},
	} {
		t.Run(strings.Join(append(c.env, c.args...), " "), func(t *testing.T) {
			var stderr bytes.Buffer
			ready := make(chan string, 1)
			if code := run(c.args, env(c.env...), io.Discard, &stderr, ready); code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			msg := stderr.String()
			if strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "tinysse: ") || !strings.Contains(msg, c.name) {
				t.Errorf("stderr %q, want one line naming %s", msg, c.name)
			}
			if len(ready) != 0 {
				t.Error("it listened")
			}
		})
	}
	// Certificate files that cannot be read stop it before it listens.
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--tls-cert", filepath.Join(dir, "missing.pem"), "--tls-key", filepath.Join(dir, "missing.pem")},
		{"--tls-cert", bad, "--tls-key", bad},
	} {
		var stderr bytes.Buffer
		ready := make(chan string, 1)
		code := run(args, env(), io.Discard, &stderr, ready)
		if code != 1 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "--tls-cert") || len(ready) != 0 {
			t.Errorf("%q: exit %d, stderr %q", args, code, stderr.String())
		}
	}
}

func TestOpsOptions(t *testing.T) {
	o, err := parseOptions(nil, env(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.metricsPath != "/metrics" || o.metricsTopics != 10 || o.healthPath != "/healthz" || o.logFormat != "text" ||
		o.dashboardPath != "/_tinysse/" || o.noDashboard || o.tlsCert != "" || o.check != "" {
		t.Errorf("defaults %+v", *o)
	}
	vars := []string{"TINYSSE_METRICS_PATH=/env-metrics", "TINYSSE_METRICS_TOPICS=3", "TINYSSE_HEALTH_PATH=/env-health",
		"TINYSSE_LOG_FORMAT=json", "TINYSSE_DASHBOARD_PATH=/env-dash", "TINYSSE_NO_DASHBOARD=true",
		"TINYSSE_TLS_CERT=c.pem", "TINYSSE_TLS_KEY=k.pem", "TINYSSE_CHECK=ignored.lua"}
	o, err = parseOptions(nil, env(vars...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.metricsPath != "/env-metrics" || o.metricsTopics != 3 || o.healthPath != "/env-health" || o.logFormat != "json" ||
		o.dashboardPath != "/env-dash/" || !o.noDashboard || o.tlsCert != "c.pem" || o.tlsKey != "k.pem" {
		t.Errorf("from env: %+v", *o)
	}
	if o.check != "" {
		t.Errorf("TINYSSE_CHECK was read: %q (an action has no variable)", o.check)
	}
	o, err = parseOptions([]string{"--metrics-path", "", "--health-path", "", "--log-format", "text", "--no-dashboard=false",
		"--dashboard-path", "/flag/", "--metrics-topics", "7"}, env(vars...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.metricsPath != "" || o.healthPath != "" || o.logFormat != "text" || o.noDashboard || o.dashboardPath != "/flag/" || o.metricsTopics != 7 {
		t.Errorf("flags over env: %+v", *o)
	}
}

func writeScript(t *testing.T, src string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hooks.lua")
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckFlag(t *testing.T) {
	for _, c := range []struct {
		name, src string
		code      int
		out, err  string // substrings of stdout and stderr
	}{
		{"hooks", "function subscribe(sub) return sub end\nfunction message(pub, sub) return pub end\nfunction startup(cli) error('not run') end",
			0, "hooks.lua: ok, hooks: message, startup, subscribe", ""},
		{"none", "local x = 1", 0, "hooks.lua: ok, defines no hooks", ""},
		{"print in main chunk", "print('loading')\nfunction publish(p) return p end", 0, "loading\n", ""},
		{"syntax", "function publish(pub)\n  return pub\nedn\n", 1, "", "hooks.lua:3:3: syntax error near 'edn'\n"},
		{"syntax at end of file", "function publish(pub)\n  return pub\n", 1, "", "hooks.lua:2:13: syntax error near EOF: the script ends inside a statement or block (is an end missing?)\n"},
		{"unterminated string", "x = 1\ny = \"abc\nz = 2\n", 1, "", "hooks.lua:2:8: syntax error near 'abc': unterminated string\n"},
		{"goto without label", "x = 1\ngoto nowhere\n", 1, "", "hooks.lua:2: no visible label 'nowhere'"},
		{"runtime", "local t = nil\nlocal y = t.x\n", 1, "", "hooks.lua:2:"},
		{"sandbox", "local f = io.open('/etc/passwd')", 1, "", "hooks.lua:1:"},
		{"missing package", "local x = require 'nope'", 1, "", "nope"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeScript(t, c.src)
			var stdout, stderr bytes.Buffer
			ready := make(chan string, 1)
			code := run([]string{"--check", path}, env("TINYSSE_LISTEN=not an address"), &stdout, &stderr, ready)
			if code != c.code {
				t.Errorf("exit %d, want %d (stdout %q, stderr %q)", code, c.code, stdout.String(), stderr.String())
			}
			if c.out != "" && !strings.Contains(stdout.String(), c.out) {
				t.Errorf("stdout %q, want %q", stdout.String(), c.out)
			}
			if c.err != "" && (!strings.Contains(stderr.String(), c.err) || strings.Count(stderr.String(), "\n") != 1) {
				t.Errorf("stderr %q, want one line with %q", stderr.String(), c.err)
			}
			if c.code == 0 && stderr.Len() != 0 {
				t.Errorf("stderr %q on success", stderr.String())
			}
			if len(ready) != 0 {
				t.Error("--check listened")
			}
		})
	}
	// --unsafe-script opens io for the check as for the server.
	var stdout bytes.Buffer
	if code := run([]string{"--check", writeScript(t, "local f = io.open"), "--unsafe-script"}, env(), &stdout, io.Discard, nil); code != 0 {
		t.Errorf("--unsafe-script check: exit %d", code)
	}
	var stderr bytes.Buffer
	if code := run([]string{"--check", filepath.Join(t.TempDir(), "missing.lua")}, env(), io.Discard, &stderr, nil); code != 1 || !strings.Contains(stderr.String(), "missing.lua") {
		t.Errorf("missing file: exit %d, %q", code, stderr.String())
	}
}

func get(t *testing.T, url string) reply { return request(t, http.MethodGet, url, "") }

func TestRunOps(t *testing.T) {
	script := writeScript(t, `local log = require "log"
function startup(cli)
  log.trace("trace from startup")
  log.info("cli " .. cli.metrics_path .. " " .. cli.health_path .. " " .. cli.dashboard_path .. " " .. cli.log_format .. " " .. cli.metrics_topics)
end
function subscribe(sub) return sub end`)
	addr, logs, stop := runServer(t, []string{"--log-format", "json", "-L", "TRACE", "--script", script, "--metrics-topics", "1"})
	base := "http://" + addr

	if r := get(t, base+"/healthz"); r.status != 200 || r.body != `{"status":"ok"}` {
		t.Errorf("/healthz: %d %q", r.status, r.body)
	}
	if r := get(t, base+"/_tinysse/"); r.status != 200 || !strings.Contains(r.body, `"topic":"_tinysse.stats"`) {
		t.Errorf("dashboard: %d", r.status)
	}
	sub := openStream(t, addr, "/sse?topic=news")
	sub.readUntil(t, ": ok\n\n")
	openStream(t, addr, "/sse?topic=other").readUntil(t, ": ok\n\n")
	if a := request(t, http.MethodPost, base+"/sse?topic=news", `{"data":"counted"}`); a.status != http.StatusAccepted {
		t.Fatalf("publish: %d", a.status)
	}
	sub.readUntil(t, "data: counted\n\n")
	r := get(t, base+"/metrics")
	for _, want := range []string{"tinysse_publishes_total 1\n", `tinysse_topic_subscribers{topic="news"} 1` + "\n",
		"tinysse_topics_other 1\n", `tinysse_hook_calls_total{hook="subscribe"} 2` + "\n", "go_goroutines "} {
		if !strings.Contains(r.body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(r.body, `topic="other"`) {
		t.Error("--metrics-topics 1 gave a second topic its own series")
	}
	sub.conn.Close()
	stop()

	// Every log line is JSON; TRACE keeps its name; subscribes and
	// unsubscribes have their DEBUG line.
	if !strings.Contains(logs.String(), `"msg":"cli /metrics /healthz /_tinysse/ json 1"`) {
		t.Errorf("startup's cli lacks the ops options: %s", logs)
	}
	var sawTrace, sawSub, sawUnsub bool
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		switch {
		case rec["msg"] == "trace from startup" && rec["level"] == "TRACE":
			sawTrace = true
		case rec["msg"] == "subscribed" && rec["level"] == "DEBUG":
			sawSub = true
		case rec["msg"] == "unsubscribed" && rec["level"] == "DEBUG" && rec["reason"] != nil:
			sawUnsub = true
		}
	}
	if !sawTrace || !sawSub || !sawUnsub {
		t.Errorf("trace %v subscribed %v unsubscribed %v in\n%s", sawTrace, sawSub, sawUnsub, logs)
	}
}

func TestRunOpsPathsAndOff(t *testing.T) {
	addr, _, _ := runServer(t, []string{"--metrics-path", "/ops/metrics", "--health-path", "/up", "--dashboard-path", "/dash"})
	base := "http://" + addr
	for path, want := range map[string]int{"/ops/metrics": 200, "/up": 200, "/dash/": 200, "/dash/app.js": 200, "/metrics": 404, "/healthz": 404, "/_tinysse/": 404} {
		if r := get(t, base+path); r.status != want {
			t.Errorf("GET %s: %d, want %d", path, r.status, want)
		}
	}
}

func TestRunOpsDisabled(t *testing.T) {
	addr, _, _ := runServer(t, []string{"--metrics-path", "", "--health-path", "", "--no-dashboard"})
	base := "http://" + addr
	for _, path := range []string{"/metrics", "/healthz", "/_tinysse/"} {
		if r := get(t, base+path); r.status != 404 {
			t.Errorf("GET %s: %d, want 404", path, r.status)
		}
	}
}

func TestRunTLS(t *testing.T) {
	cert := testcert.New(t)
	certFile, keyFile := cert.Files(t, t.TempDir())
	addr, logs, _ := runServer(t, nil, "TINYSSE_TLS_CERT="+certFile, "TINYSSE_TLS_KEY="+keyFile)
	if !strings.Contains(logs.String(), "scheme=https") {
		t.Errorf("the banner does not say https: %s", logs)
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: wait}, "tcp", addr, cert.Client())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if p := c.ConnectionState().NegotiatedProtocol; p != "" && p != "http/1.1" {
		t.Errorf("ALPN %q", p)
	}
	_ = c.SetDeadline(time.Now().Add(wait))
	fmt.Fprintf(c, "GET /sse HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	s := &stream{conn: c}
	s.readUntil(t, ": ok\n\n")
	hc := &http.Client{Timeout: wait, Transport: &http.Transport{TLSClientConfig: cert.Client()}}
	defer hc.CloseIdleConnections()
	for i := range 3 {
		resp, err := hc.Post("https://"+addr+"/sse", "application/json", strings.NewReader(fmt.Sprintf(`{"id":"%d","data":"secure"}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 202 {
			t.Fatalf("publish over HTTPS: %d", resp.StatusCode)
		}
		s.readUntil(t, fmt.Sprintf("id: %d\ndata: secure\n\n", i))
	}
	wantHealthy(t, hc, "https://"+addr+"/healthz")
}

// wantHealthy fails unless hc's GET url answers 200.
func wantHealthy(t *testing.T, hc *http.Client, url string) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s: %d, want 200", url, resp.StatusCode)
	}
}
