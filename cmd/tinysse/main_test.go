package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tinysse/tinysse/internal/testserver"
)

const wait = 5 * time.Second

// env returns a getenv over vars, given as NAME=value.
func env(vars ...string) func(string) string {
	m := map[string]string{}
	for _, v := range vars {
		k, val, _ := strings.Cut(v, "=")
		m[k] = val
	}
	return func(k string) string { return m[k] }
}

// syncBuffer is the harness's Buffer: the server's goroutines may log
// into it while the test reads it.
type syncBuffer = testserver.Buffer

func TestHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{arg}, env(), &stdout, &stderr, nil); code != 0 {
			t.Fatalf("%s: exit %d, stderr %q", arg, code, stderr.String())
		}
		help := stdout.String()
		if stderr.Len() != 0 {
			t.Errorf("%s wrote to stderr: %q", arg, stderr.String())
		}
		// Every option of the contract, its short form, variable and default.
		for _, o := range []struct{ short, long, def string }{
			{"l", "listen", `"127.0.0.1:1983"`},
			{"L", "log-level", "INFO"},
			{"k", "keep-alive", "1m0s"},
			{"K", "keep-alive-text", `"keep-alive"`},
			{"t", "timeout", "5m0s"},
			{"r", "timeout-retry", "0s"},
			{"c", "capacity", "256"},
			{"s", "script", ""},
			{"", "script-data", ""},
			{"", "script-tick", "500ms"},
			{"", "unsafe-script", ""},
			{"m", "max-body-size", "64KiB"},
			{"P", "pub-path", `"/sse"`},
			{"S", "sub-path", `"/sse"`},
			{"D", "serve-static-dir", ""},
			{"U", "serve-static-path", `"/"`},
			{"", "cors-allow-origin", `"*"`},
			{"", "cors-allow-methods", `"GET, HEAD, POST"`},
			{"", "cors-allow-headers", `"*"`},
			{"", "cors-allow-credentials", ""},
			{"", "cors-max-age", "0s"},
			{"", "auto-id", ""},
			{"", "write-timeout", "30s"},
			{"", "write-coalesce", "0s"},
			{"", "shutdown-timeout", "10s"},
			{"", "max-subscribers", ""},
			{"", "max-conns-per-ip", ""},
			{"", "max-topics", "10000"},
			{"", "max-history-bytes", "256MiB"},
			{"", "script-memory", "256MiB"},
			{"h", "help", ""},
			{"V", "version", ""},
		} {
			prefix := "      --" + o.long + " "
			if o.short != "" {
				prefix = "  -" + o.short + ", --" + o.long + " "
			}
			var line string
			for _, l := range strings.Split(help, "\n") {
				if strings.HasPrefix(l, prefix) {
					line = l
				}
			}
			if line == "" {
				t.Errorf("%s: no line for %q", arg, strings.TrimSpace(prefix))
				continue
			}
			if o.long != "help" && o.long != "version" && !strings.Contains(line, "[env "+envName(o.long)+"]") {
				t.Errorf("%s: %q does not name %s", arg, line, envName(o.long))
			}
			if o.def != "" && !strings.HasSuffix(line, "(default "+o.def+")") {
				t.Errorf("%s: %q does not give the default %s", arg, line, o.def)
			}
		}
	}
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"--version", "-V"} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{arg}, env(), &stdout, &stderr, nil); code != 0 {
			t.Fatalf("%s: exit %d", arg, code)
		}
		if stdout.String() != "tinysse "+version+"\n" {
			t.Errorf("%s: %q", arg, stdout.String())
		}
	}
}

// TestBadValues: a bad value stops the program before it listens, with one
// line naming the option, and exit status 2.
func TestBadValues(t *testing.T) {
	cases := []struct {
		args []string
		env  []string
		name string // must appear in the message
		bug  string // known bug: skip with this reason
	}{
		{[]string{"--capacity", "x"}, nil, "--capacity", ""},
		{[]string{"--h2-max-streams", "0"}, nil, "--h2-max-streams", ""},
		{[]string{"--h2-max-streams=-1"}, nil, "--h2-max-streams", ""},
		{[]string{"--h2-max-streams", "2000000"}, nil, "--h2-max-streams", ""},
		{nil, []string{"TINYSSE_H2_MAX_STREAMS=many"}, "--h2-max-streams", ""},
		{nil, []string{"TINYSSE_NO_H2C=perhaps"}, "--no-h2c", ""},
		{[]string{"-c", "0"}, nil, "--capacity", ""},
		{[]string{"--capacity=-5"}, nil, "--capacity", ""},
		{[]string{"--capacity", "2000000000"}, nil, "--capacity", ""},
		{nil, []string{"TINYSSE_CAPACITY=many"}, "--capacity", ""},
		{[]string{"--keep-alive", "5parsecs"}, nil, "--keep-alive", ""},
		{[]string{"-k", "10"}, nil, "--keep-alive", ""},
		{[]string{"--timeout=-5s"}, nil, "--timeout", ""},
		{nil, []string{"TINYSSE_TIMEOUT_RETRY=soon"}, "--timeout-retry", ""},
		{nil, []string{"TINYSSE_MAX_BODY_SIZE=lots"}, "TINYSSE_MAX_BODY_SIZE", ""},
		{nil, []string{"TINYSSE_MAX_BODY_SIZE=lots"}, "--max-body-size", ""},
		{[]string{"--max-body-size", "-1"}, nil, "--max-body-size", ""},
		{[]string{"--max-body-size", "2GB"}, nil, "--max-body-size", ""},
		{[]string{"--log-level", "LOUD"}, nil, "--log-level", ""},
		{nil, []string{"TINYSSE_LOG_LEVEL=LOUD"}, "--log-level", ""},
		{nil, []string{"TINYSSE_AUTO_ID=maybe"}, "--auto-id", ""},
		{[]string{"--cors-max-age", "forever"}, nil, "--cors-max-age", ""},
		{[]string{"--cors-allow-credentials"}, nil, "--cors-allow-credentials", ""},
		{[]string{"--cors-allow-credentials", "--cors-allow-origin", "https://a.example"}, nil, "--cors-allow-credentials", ""},
		{[]string{"--cors-allow-credentials", "--cors-allow-headers", "Content-Type"}, nil, "--cors-allow-credentials", ""},
		{nil, []string{"TINYSSE_CORS_ALLOW_CREDENTIALS=true"}, "--cors-allow-credentials", ""},
		{[]string{"--lua-vms", "0"}, nil, "--lua-vms", ""},
		{[]string{"--write-coalesce", "2s"}, nil, "--write-coalesce", ""},
		{[]string{"--write-coalesce=-1ms"}, nil, "--write-coalesce", ""},
		{[]string{"--write-coalesce", "never"}, nil, "--write-coalesce", ""},
		{nil, []string{"TINYSSE_WRITE_COALESCE=soon"}, "--write-coalesce", ""},
		{[]string{"--pub-path", "nopath"}, nil, "--pub-path", ""},
		{[]string{"--sub-path", "nopath"}, nil, "--sub-path", ""},
		{[]string{"--serve-static-path", "static"}, nil, "--serve-static-path", ""},
		{[]string{"--max-subscribers=-1"}, nil, "--max-subscribers", ""},
		{[]string{"--max-conns-per-ip", "many"}, nil, "--max-conns-per-ip", ""},
		{nil, []string{"TINYSSE_MAX_TOPICS=-3"}, "--max-topics", ""},
		{[]string{"--max-history-bytes", "lots"}, nil, "--max-history-bytes", ""},
		{nil, []string{"TINYSSE_MAX_HISTORY_BYTES=-1MB"}, "--max-history-bytes", ""},
		{[]string{"--max-batch", "0"}, nil, "--max-batch", ""},
		{[]string{"--max-batch", "100001"}, nil, "--max-batch", ""},
		{nil, []string{"TINYSSE_MAX_BATCH=many"}, "--max-batch", ""},
		{[]string{"--nats-replay-fetches", "0"}, nil, "--nats-replay-fetches", ""},
		{[]string{"--nats-replay-fetches", "1025"}, nil, "--nats-replay-fetches", ""},
		{nil, []string{"TINYSSE_NO_POLL=sometimes"}, "--no-poll", ""},
		{[]string{"--no-such-option"}, nil, "no-such-option", ""},
		{[]string{"--listen"}, nil, "listen", ""},
		{[]string{"stray"}, nil, "stray", ""},
	}
	for _, c := range cases {
		t.Run(strings.Join(append(c.env, c.args...), " "), func(t *testing.T) {
			if c.bug != "" {
				t.Skip(c.bug)
			}
			var stdout, stderr bytes.Buffer
			ready := make(chan string, 1)
			code := run(c.args, env(c.env...), &stdout, &stderr, ready)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			msg := stderr.String()
			if strings.Count(msg, "\n") != 1 || !strings.HasSuffix(msg, "\n") || !strings.HasPrefix(msg, "tinysse: ") {
				t.Errorf("stderr %q, want one line starting \"tinysse: \"", msg)
			}
			if !strings.Contains(msg, c.name) {
				t.Errorf("stderr %q does not name %s", msg, c.name)
			}
			if len(ready) != 0 {
				t.Error("it listened")
			}
		})
	}
	// Values that only fail when used still stop the program at start.
	for _, args := range [][]string{
		{"--listen", "256.0.0.1:1"},
		{"--listen", "nonsense"},
		{"--script", filepath.Join(t.TempDir(), "missing.lua")},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(args, env(), &stdout, &stderr, nil)
			msg := stderr.String()
			if code == 0 || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, args[0]) {
				t.Errorf("exit %d, stderr %q: want a failure naming %s in one line", code, msg, args[0])
			}
		})
	}
}

// TestOptions checks values as run's components would get them.
func TestOptions(t *testing.T) {
	parse := func(t *testing.T, args []string, vars ...string) *options {
		t.Helper()
		o, err := parseOptions(args, env(vars...), io.Discard)
		if err != nil {
			t.Fatalf("parseOptions(%q, %q): %v", args, vars, err)
		}
		return o
	}
	t.Run("sizes", func(t *testing.T) {
		for in, want := range map[string]int64{"64KB": 65536, "1MB": 1 << 20, "65536": 65536, "64kb": 65536, "2KiB": 2048} {
			if o := parse(t, []string{"--max-body-size", in}); o.maxBodySize != want {
				t.Errorf("--max-body-size %s: %d, want %d", in, o.maxBodySize, want)
			}
			if o := parse(t, nil, "TINYSSE_MAX_BODY_SIZE="+in); o.maxBodySize != want {
				t.Errorf("TINYSSE_MAX_BODY_SIZE=%s: %d, want %d", in, o.maxBodySize, want)
			}
		}
		if o := parse(t, nil); o.maxBodySize != 65536 {
			t.Errorf("default max body size %d, want 65536", o.maxBodySize)
		}
	})
	t.Run("scale", func(t *testing.T) {
		if o := parse(t, nil); o.scale != (scaleOptions{noPoll: false, maxBatch: 1000, replayFetches: 16}) {
			t.Errorf("defaults %+v", o.scale)
		}
		o := parse(t, []string{"--no-poll", "--max-batch", "50"}, "TINYSSE_NATS_REPLAY_FETCHES=4")
		if o.scale != (scaleOptions{noPoll: true, maxBatch: 50, replayFetches: 4}) {
			t.Errorf("--no-poll --max-batch 50 TINYSSE_NATS_REPLAY_FETCHES=4: %+v", o.scale)
		}
	})
	t.Run("durations", func(t *testing.T) {
		for in, want := range map[string]time.Duration{"500ms": 500 * time.Millisecond, "60s": time.Minute, "2m": 2 * time.Minute, "1h": time.Hour, "0": 0, "0s": 0} {
			if o := parse(t, []string{"--timeout", in}); o.timeout != want {
				t.Errorf("--timeout %s: %v, want %v", in, o.timeout, want)
			}
		}
	})
	t.Run("defaults", func(t *testing.T) {
		o := parse(t, nil)
		if o.listen != "127.0.0.1:1983" || o.capacity != 256 || o.keepAlive != time.Minute || o.timeout != 5*time.Minute ||
			o.writeTimeout != 30*time.Second || o.shutdownTimeout != 10*time.Second || o.autoID || o.pubPath != "/sse" || o.subPath != "/sse" {
			t.Errorf("defaults %+v", *o)
		}
	})
	t.Run("env when no flag, flag over env", func(t *testing.T) {
		vars := []string{"TINYSSE_CAPACITY=1000", "TINYSSE_PUB_PATH=/env", "TINYSSE_AUTO_ID=true", "TINYSSE_KEEP_ALIVE=2m", "TINYSSE_LOG_LEVEL=debug"}
		o := parse(t, nil, vars...)
		if o.capacity != 1000 || o.pubPath != "/env" || !o.autoID || o.keepAlive != 2*time.Minute || o.logLevel.String() != "DEBUG" {
			t.Errorf("from env: %+v", *o)
		}
		o = parse(t, []string{"-c", "8", "--pub-path", "/flag", "--auto-id=false", "-k", "5s", "-L", "WARN"}, vars...)
		if o.capacity != 8 || o.pubPath != "/flag" || o.autoID || o.keepAlive != 5*time.Second || o.logLevel.String() != "WARN" {
			t.Errorf("flags over env: %+v", *o)
		}
	})
	t.Run("write coalesce", func(t *testing.T) {
		if o := parse(t, nil); o.writeCoalesce != 0 {
			t.Errorf("default --write-coalesce %v", o.writeCoalesce)
		}
		if o := parse(t, []string{"--write-coalesce", "5ms"}); o.writeCoalesce != 5*time.Millisecond {
			t.Errorf("--write-coalesce 5ms: %v", o.writeCoalesce)
		}
		if o := parse(t, []string{"--write-coalesce", "off"}); o.writeCoalesce != -1 {
			t.Errorf("--write-coalesce off: %v, want -1 (never hold)", o.writeCoalesce)
		}
		if o := parse(t, nil, "TINYSSE_WRITE_COALESCE=OFF"); o.writeCoalesce != -1 {
			t.Errorf("TINYSSE_WRITE_COALESCE=OFF: %v, want -1", o.writeCoalesce)
		}
		if o := parse(t, nil, "TINYSSE_WRITE_COALESCE=2ms"); o.writeCoalesce != 2*time.Millisecond {
			t.Errorf("TINYSSE_WRITE_COALESCE=2ms: %v", o.writeCoalesce)
		}
	})
	t.Run("history budget", func(t *testing.T) {
		if o := parse(t, nil); o.maxHistoryBytes != 256<<20 || historyBudget(o) != 256<<20 {
			t.Errorf("default --max-history-bytes %d", o.maxHistoryBytes)
		}
		if o := parse(t, nil, "TINYSSE_MAX_HISTORY_BYTES=1GB"); o.maxHistoryBytes != 1<<30 {
			t.Errorf("TINYSSE_MAX_HISTORY_BYTES=1GB: %d", o.maxHistoryBytes)
		}
		if o := parse(t, []string{"--max-history-bytes", "0"}); historyBudget(o) != -1 {
			t.Errorf("--max-history-bytes 0: engine budget %d, want -1 (none)", historyBudget(o))
		}
	})
	t.Run("credentials with named origins and headers", func(t *testing.T) {
		o := parse(t, []string{"--cors-allow-credentials", "--cors-allow-origin", "https://a.example", "--cors-allow-headers", "Content-Type"})
		if !o.corsCredentials {
			t.Error("credentials not set")
		}
	})
}

// TestRun starts the server through run on a loopback port, uses it, and
// stops it with SIGINT as a terminal would. The signal goes to this test
// process, which run has subscribed to it (signal.Notify) before it
// reports ready.
func TestRun(t *testing.T) {
	var stdout, stderr syncBuffer
	ready := make(chan string, 1)
	exited := make(chan int, 1)
	args := []string{"--listen", "127.0.0.1:0", "--sub-path", "/events", "-k", "100ms", "-K", "tick",
		"--shutdown-timeout", "3s", "--timeout-retry", "400ms"}
	getenv := env("TINYSSE_LISTEN=not an address", "TINYSSE_SUB_PATH=/wrong", "TINYSSE_PUB_PATH=/publish")
	go func() { exited <- run(args, getenv, &stdout, &stderr, ready) }()
	var addr string
	select {
	case addr = <-ready:
	case code := <-exited:
		t.Fatalf("run exited %d: %s", code, stderr.String())
	case <-time.After(wait):
		t.Fatal("run did not get ready")
	}
	if !strings.Contains(stderr.String(), "tinysse "+version) || !strings.Contains(stderr.String(), "Listening on "+addr) {
		t.Errorf("no banner with the address in %q", stderr.String())
	}

	sub := openStream(t, addr, "/events")
	sub.readUntil(t, ": ok\n\n")
	sub.readUntil(t, ": tick\n\n")
	if a := request(t, http.MethodPost, "http://"+addr+"/publish", `{"data":"via run"}`); a.status != http.StatusAccepted {
		t.Fatalf("publish: %d %s", a.status, a.body)
	}
	sub.readUntil(t, "data: via run\n\n")
	if a := request(t, http.MethodGet, "http://"+addr+"/wrong", ""); a.status != http.StatusNotFound {
		t.Errorf("GET /wrong: %d, want 404: the flag must win over TINYSSE_SUB_PATH", a.status)
	}

	if err := interruptSelf(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	goodbye := regexp.MustCompile(`^: [^\n]*\nretry: \d+\n\n$`)
	for {
		b := sub.readUntil(t, "\n\n")
		if b == ": tick\n\n" {
			continue
		}
		if !goodbye.MatchString(b) {
			t.Errorf("after SIGINT the subscriber got %q, want a comment and a retry line", b)
		}
		break
	}
	sub.expectClosed(t)
	waitExit(t, exited, 0, 3*time.Second+wait, "SIGINT")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("shutdown took %v, more than --shutdown-timeout", d)
	}
	if !strings.Contains(stderr.String(), "shutting down") {
		t.Errorf("no shutdown log in %q", stderr.String())
	}
}

// TestBinary builds the command, runs it on a loopback port, and stops it
// with SIGTERM to its PID.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)

	const shutdownTimeout = 3 * time.Second
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--shutdown-timeout", shutdownTimeout.String(), "--timeout-retry", "500ms")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TINYSSE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill() // only the process this test started
			<-exited
		}
	})
	var logMu sync.Mutex
	var logs strings.Builder
	listening := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`Listening on (127\.0\.0\.1:\d+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			logs.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				listening <- m[1]
			}
		}
		exited <- cmd.Wait() // after stderr is drained, as Wait requires
	}()
	var addr string
	select {
	case addr = <-listening:
	case <-time.After(wait):
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("no \"Listening on\" line; stderr:\n%s", logs.String())
	}

	sub := openStream(t, addr, "/sse")
	sub.readUntil(t, ": ok\n\n")
	if a := request(t, http.MethodPost, "http://"+addr+"/sse", `{"id":"1","data":"from the binary"}`); a.status != http.StatusAccepted {
		t.Fatalf("publish: %d %s", a.status, a.body)
	}
	sub.readUntil(t, "id: 1\ndata: from the binary\n\n")

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	got := sub.readUntil(t, "\n\n")
	m := regexp.MustCompile(`\nretry: (\d+)\n\n$`).FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("after SIGTERM the subscriber got %q, want a retry line", got)
	}
	if ms, _ := strconv.Atoi(m[1]); ms < 500 || ms >= 1500 {
		t.Errorf("retry %d ms, want the --timeout-retry 500ms plus jitter below twice that", ms)
	}
	sub.expectClosed(t)
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Errorf("exit after SIGTERM: %v, want status 0", err)
		}
	case <-time.After(shutdownTimeout + wait):
		t.Fatal("the process did not exit after SIGTERM")
	}
	if d := time.Since(start); d > shutdownTimeout {
		t.Errorf("exiting took %v, more than --shutdown-timeout %v", d, shutdownTimeout)
	}
}

// stream is a subscriber on a raw socket; the transport package's tests
// parse streams properly, these only look for bytes.
type stream struct {
	conn net.Conn
	got  []byte
}

func openStream(t testing.TB, addr, path string) *stream {
	t.Helper()
	return openStreamWith(t, addr, path, "")
}

// openStreamWith is openStream with a bearer token ("" for none).
func openStreamWith(t testing.TB, addr, path, token string) *stream {
	t.Helper()
	var h []string
	if token != "" {
		h = []string{"Authorization", "Bearer " + token}
	}
	st := testserver.Subscribe(t, addr, path, h...)
	if ct := st.Header.Get("Content-Type"); st.Status != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("subscribe %s: %d %q %s", path, st.Status, ct, st.Body)
	}
	return &stream{conn: st.Conn.(net.Conn), got: st.TakeRaw()}
}

// readUntil reads until the stream holds marker and returns everything up
// to and including it.
func (s *stream) readUntil(t testing.TB, marker string) string {
	t.Helper()
	buf := make([]byte, 4096)
	_ = s.conn.SetReadDeadline(time.Now().Add(wait))
	for {
		if i := bytes.Index(s.got, []byte(marker)); i >= 0 {
			out := string(s.got[:i+len(marker)])
			s.got = s.got[i+len(marker):]
			return out
		}
		n, err := s.conn.Read(buf)
		s.got = append(s.got, buf[:n]...)
		if err != nil && n == 0 {
			t.Fatalf("waiting for %q: %v (have %q)", marker, err, s.got)
		}
	}
}

// expectClosed requires the server to close the stream with nothing more.
func (s *stream) expectClosed(t *testing.T) {
	t.Helper()
	_ = s.conn.SetReadDeadline(time.Now().Add(wait))
	rest, err := io.ReadAll(s.conn)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("stream not closed: %v", err)
	}
	if len(s.got)+len(rest) != 0 {
		t.Errorf("after the goodbye the stream carried %q", append(s.got, rest...))
	}
}

type reply struct {
	status int
	body   string
}

func request(t *testing.T, method, url, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	c := &http.Client{Timeout: wait, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, string(b)}
}
