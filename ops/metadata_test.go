package ops_test

import (
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/promtext"
)

// TestMetricsMetadata: every family of /metrics, with a script, topics,
// subscribers and a topic name that needs escaping, has one non-empty
// # HELP and one # TYPE before its series; on Linux every family
// VictoriaMetrics/metrics writes is described by us (a new one fails
// here: describe it in families.go); and promtool, when installed
// (Debian's prometheus; .ci/run installs it), finds nothing to say.
func TestMetricsMetadata(t *testing.T) {
	const src = `function publish(pub) return pub end
function subscribe(sub) return sub end
function message(pub, sub) return pub end`
	s := start(t, src, engine.Config{Shards: 2}, 2)
	s.subscribe(t, "/sse?topic=a")
	s.subscribe(t, `/sse?topic=q%22uote%5C`)
	s.subscribe(t, "/sse?topic=c")
	waitFor(t, "3 subscribers", func() bool { return s.eng.Stats().Subscribers == 3 })
	s.publish(t, "/sse?topic=a", `{"data":"x"}`)
	s.publish(t, "/sse", `{}`) // refused: a reject reason counts
	_, _, body := s.get(t, "/metrics")
	fams, err := promtext.Check([]byte(body))
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	for _, want := range []string{"tinysse_build_info", "tinysse_topic_subscribers", "tinysse_publish_rejected_total", "tinysse_hook_duration_seconds", "go_goroutines", "go_gc_duration_seconds", "process_cpu_seconds_total"} {
		if !slices.Contains(fams, want) {
			t.Errorf("family %s missing", want)
		}
	}
	if runtime.GOOS == "linux" && strings.Contains(body, promtext.UndescribedHelp) {
		for _, l := range strings.Split(body, "\n") {
			if strings.Contains(l, promtext.UndescribedHelp) {
				t.Errorf("not described in ops/families.go: %s", l)
			}
		}
	}
	found, out, err := promtext.Promtool([]byte(body))
	if !found {
		t.Log("promtool not installed: only promtext.Check judged the output")
		return
	}
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
