package cluster_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/tinysse/tinysse/cluster"
	"github.com/tinysse/tinysse/engine"
)

// --max-topics in cluster mode: the node a publish reaches refuses a topic
// beyond its cap before the message goes to the stream (503, nothing
// stored), and a node applies whatever the stream holds, cap or not, so no
// node has less than the others. A subscriber at the cap cannot make a
// topic either (503): the capped node's subscriber follows the new topics
// through a pattern, which is not a topic.
func TestTopicCap(t *testing.T) {
	ns := startNATS(t)
	capped := startNode(t, ns, cluster.Config{}, engine.Config{AutoID: true, MaxTopics: 2})
	open := startNode(t, ns, cluster.Config{}, engine.Config{AutoID: true})

	capped.mustPublish("a1", "a")
	capped.mustPublish("b1", "b")
	last := capped.eng.LastSeq()
	st, body := capped.publish(`{"data":"c1","topic":"c"}`)
	var e struct{ Error string }
	if st != http.StatusServiceUnavailable || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, "topic limit") {
		t.Fatalf("third topic on the capped node: %d %s, want 503 with a JSON error about the topic limit", st, body)
	}
	// Nothing went to the stream: the next message on the other node
	// takes the next sequence.
	sub := capped.subscribe("topic=*", "")
	waitFor(t, "subscriber", func() bool { return capped.eng.Subscribers("*") == 1 })
	open.mustPublish("c2", "c")
	if got := sub.events(1); got[0] != "3:c2" || last != 2 {
		t.Fatalf("capped node got %q after seq %d, want 3:c2 after 2 (the refused publish stored nothing)", got, last)
	}
	// Published elsewhere to a new topic: the capped node applies it too,
	// beyond its cap.
	open.mustPublish("d1", "d")
	if got := sub.events(1); got[0] != "4:d1" {
		t.Fatalf("capped node got %q, want 4:d1", got)
	}
	if n := capped.eng.Topics(); n != 4 {
		t.Errorf("capped node holds %d topics, want a, b, c and d from the stream", n)
	}
}
