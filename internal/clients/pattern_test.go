package clients

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
)

// TestNodeEventSourcePattern: the npm eventsource package on a pattern
// subscription: only the matching topics' messages, in publish order; at
// --timeout it comes back by itself with its Last-Event-ID and gets what
// the matching topics had meanwhile, merged in id order, each once.
func TestNodeEventSourcePattern(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("no node: install Node.js 18 or later (apt-get install nodejs npm)")
	}
	if _, err := os.Stat(filepath.Join("node", "node_modules", "eventsource", "package.json")); err != nil {
		t.Skip("the npm eventsource package is not installed: run `npm ci` in internal/clients/node")
	}
	s := startServer(t, engine.Config{Timeout: 2 * time.Second, TimeoutRetry: retry})
	c := startNodeAt(t, s.url("/sse?topic=sports/*"), nil)
	waitFor(t, "the client to subscribe", func() bool { return s.eng.Subscribers("sports/*") == 1 })
	pub := func(id, topic string) {
		s.publish(t, map[string]string{"id": id, "data": "data of " + id, "topic": topic})
	}
	pub("p1", "sports/a")
	pub("n1", "news")
	pub("p2", "sports/b")
	waitEvents(t, c, 2)
	waitFor(t, "the timeout", func() bool { _, u := s.visits(); return len(u) >= 1 })
	pub("p3", "sports/a") // while the client waits out the retry hint
	pub("n2", "news/a")
	pub("d1", "sports/a/deep")
	pub("p4", "sports/c")
	checkReconnect(t, s, 1, "p2")
	waitEvents(t, c, 4)
	pub("p5", "sports/b")
	waitEvents(t, c, 5)
	time.Sleep(200 * time.Millisecond)
	got := events(c.records(t))
	if want := []string{"p1", "p2", "p3", "p4", "p5"}; !slices.Equal(ids(got), want) {
		t.Fatalf("events %q, want each of %q exactly once", ids(got), want)
	}
	for _, r := range got {
		if r.Data != "data of "+r.ID {
			t.Errorf("event %+q", r)
		}
	}
}
