package cluster_test

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tinysse/tinysse/cluster"
	"github.com/tinysse/tinysse/engine"
)

// afterMatching returns "seq:data" of the messages published after seq
// to a topic pattern matches.
func (h *history) afterMatching(seq int, pattern string) []string {
	p := engine.MustPattern(pattern)
	var s []string
	for i, m := range h.msgs {
		if i+1 > seq && p.Match(m.topic) {
			s = append(s, fmt.Sprintf("%d:%s", i+1, m.data))
		}
	}
	return s
}

// TestPatternAcrossNodes: a pattern subscriber gets what any node
// publishes to its matching topics, in stream order (the stream sequence
// is the id); a Last-Event-ID older than a node's rings is replayed from
// the stream across the matching topics, then live with nothing lost or
// repeated at the seam.
func TestPatternAcrossNodes(t *testing.T) {
	ns := startNATS(t)
	nodes := []*node{startNode(t, ns, cluster.Config{}, engine.Config{Capacity: 1024})}
	nodes = append(nodes, startNodes(t, ns, 2, cluster.Config{}, engine.Config{Capacity: 4})...)
	live := nodes[0].subscribe("topic=s/*", "")
	waitFor(t, "subscriber", func() bool { return nodes[0].eng.Subscribers("s/*") == 1 })
	h := &history{t: t}
	topics := []string{"s/a", "news", "s/b", "s/a/deep", "s/c"}
	var got []string
	for i := 1; i <= 20; i++ {
		topic := topics[i%len(topics)]
		h.publish(nodes[i%3], "m"+strconv.Itoa(i), topic)
		if engine.MustPattern("s/*").Match(topic) {
			got = append(got, live.events(1)...) // one at a time: a loaded machine could lap it otherwise
		}
	}
	if want := h.afterMatching(0, "s/*"); !slices.Equal(got, want) {
		t.Fatalf("live pattern subscriber got %q, want %q", got, want)
	}
	live.quiet(100 * time.Millisecond)

	// Node 1 holds 4 messages a topic, and its pattern ring is made now
	// from those: id 3 is older than both, so the replay comes from the
	// stream, read on every subject and matched.
	s := nodes[1].subscribe("topic=s/*", "3")
	want := h.afterMatching(3, "s/*")
	if got := s.on(t).events(len(want)); !slices.Equal(got, want) {
		t.Fatalf("replay got %q, want %q", got, want)
	}
	h.publish(nodes[2], "after", "s/z")
	if got, want := s.on(t).events(1), h.afterMatching(len(h.msgs)-1, "s/*"); !slices.Equal(got, want) {
		t.Fatalf("after the replay got %q, want %q", got, want)
	}
	s.on(t).quiet(100 * time.Millisecond)
}
