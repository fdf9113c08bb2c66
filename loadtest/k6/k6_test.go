// Package k6_test runs the k6 scripts of this directory briefly against a
// real tinysse on 127.0.0.1, when a k6 binary is present: $TINYSSE_K6,
// loadtest/peers/bin/k6 (loadtest/peers/install.sh k6 builds it with the
// k6/x/sse extension), or k6 on $PATH. Without one the tests skip.
package k6_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/testserver"
	"github.com/tinysse/tinysse/internal/testserver/inproc"
)

func k6Binary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TINYSSE_K6"); p != "" {
		return p
	}
	if p, err := filepath.Abs(filepath.Join("..", "peers", "bin", "k6")); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("k6"); err == nil {
		return p
	}
	t.Skip("no k6 binary: set TINYSSE_K6, put k6 on PATH, or run loadtest/peers/install.sh k6")
	return ""
}

// startTinysse runs the real server on a loopback port; it returns the
// origin (http://127.0.0.1:PORT).
func startTinysse(t *testing.T) string {
	t.Helper()
	return inproc.Start(t, inproc.Config{Engine: engine.Config{Capacity: 1024}}).URL("")
}

// summary is the part of k6's --summary-export the tests read.
type summary struct {
	Metrics map[string]map[string]any `json:"metrics"`
}

// value is a metric's number by key ("count", "p(95)"), 0 if absent.
func (s summary) value(metric, key string) float64 {
	v, _ := s.Metrics[metric][key].(float64)
	return v
}

// k6Run runs script with env (-e K=V) and returns k6's exit code and summary.
func k6Run(t *testing.T, k6, script string, env ...string) (int, summary, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "summary.json")
	args := []string{"run", "--no-usage-report", "--quiet", "--no-color", "--summary-export", out}
	for _, e := range env {
		args = append(args, "-e", e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, k6, append(args, script)...)
	cmd.Env = append(os.Environ(), "K6_NO_USAGE_REPORT=true", "HOME="+t.TempDir())
	b, err := cmd.CombinedOutput()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("k6: %v\n%s", err, b)
	}
	var s summary
	if raw, err := os.ReadFile(out); err == nil {
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatalf("summary: %v", err)
		}
	}
	return code, s, string(b)
}

func TestK6Publish(t *testing.T) {
	k6 := k6Binary(t)
	origin := startTinysse(t)
	code, s, out := k6Run(t, k6, "publish.js", "TINYSSE_URL="+origin, "RATE=50", "DURATION=2s", "P95_MS=500")
	if code != 0 {
		t.Fatalf("k6 exit %d\n%s", code, out)
	}
	reqs, failed := s.value("http_reqs", "count"), s.value("http_req_failed", "value")
	if reqs < 50 || failed != 0 {
		t.Errorf("http_reqs %v, http_req_failed %v\n%s", reqs, failed, out)
	}
	t.Logf("%v publishes, p95 %.2f ms", reqs, s.value("http_req_duration", "p(95)"))

	// The thresholds fail the run: nobody listens on this port.
	dead := "http://" + testserver.FreeAddr(t)
	code, _, out = k6Run(t, k6, "publish.js", "TINYSSE_URL="+dead, "RATE=20", "DURATION=1s")
	if code != 99 { // k6: thresholds have been crossed
		t.Errorf("publishing to nobody: k6 exit %d, want 99\n%s", code, out)
	}

	// And the script refuses a non-loopback target.
	code, _, out = k6Run(t, k6, "publish.js", "TINYSSE_URL=http://192.0.2.1:1983", "DURATION=1s")
	if code == 0 || !strings.Contains(out, "not a loopback") {
		t.Errorf("remote target: k6 exit %d\n%s", code, out)
	}
}

func TestK6Subscribe(t *testing.T) {
	k6 := k6Binary(t)
	if v, err := exec.Command(k6, "version").CombinedOutput(); err != nil || !strings.Contains(string(v), "k6/x/sse") {
		t.Skipf("%s has no k6/x/sse extension (%v): build it with loadtest/peers/install.sh k6\n%s", k6, err, v)
	}
	origin := startTinysse(t)
	const subs = 5
	code, s, out := k6Run(t, k6, "subscribe.js", "TINYSSE_URL="+origin, "SUBS=5", "RATE=20", "DURATION=2s", "P95_MS=1000")
	if code != 0 {
		t.Fatalf("k6 exit %d\n%s", code, out)
	}
	pubs := s.value("http_reqs", "count")
	events, streams := s.value("sse_events", "count"), s.value("sse_streams", "count")
	// The checks read the result's fields (status, error): all passed.
	if pass, fail := s.value("checks", "passes"), s.value("checks", "fails"); fail != 0 || pass != subs*2+pubs {
		t.Errorf("checks: %v passed, %v failed (want %v passed)\n%s", pass, fail, subs*2+pubs, out)
	}
	if pubs < 20 || streams != subs || events != subs*pubs {
		t.Errorf("%v publishes, %v streams, %v events (want %v)\n%s", pubs, streams, events, subs*pubs, out)
	}
	hi, p95 := s.value("sse_delivery_latency", "max"), s.value("sse_delivery_latency", "p(95)")
	if hi <= 0 || p95 > 1000 {
		t.Errorf("sse_delivery_latency max %v p95 %v", hi, p95)
	}
	t.Logf("%v publishes, %v streams, %v events, delivery latency p95 %.2f ms, max %.2f ms", pubs, streams, events, p95, hi)
}
