package cluster_test

import (
	"testing"
	"time"

	"github.com/tinysse/tinysse/cluster"
	"github.com/tinysse/tinysse/engine"
)

// leaders returns the indexes of the running nodes that lead.
func leaders(nodes []*node) []int {
	var l []int
	for i, n := range nodes {
		if n.srv != nil && n.cl.Leader() {
			l = append(l, i)
		}
	}
	return l
}

// One node leads at a time; when it goes, another takes over.
func TestLeader(t *testing.T) {
	ns := startNATS(t)
	const ttl = 1500 * time.Millisecond // renewed every 500ms: a loaded machine must not make a leader miss it
	nodes := startNodes(t, ns, 3, cluster.Config{LeaderTTL: ttl}, engine.Config{})
	waitFor(t, "a leader", func() bool { return len(leaders(nodes)) == 1 })
	// Never two at once, and the same one while it lives.
	first := leaders(nodes)[0]
	for end := time.Now().Add(2 * ttl); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if l := leaders(nodes); len(l) != 1 || l[0] != first {
			t.Fatalf("leaders %v, want only %d", l, first)
		}
	}
	// Closed cleanly: it resigns, and another leads at once.
	nodes[first].stop()
	waitFor(t, "a new leader", func() bool { return len(leaders(nodes)) == 1 })
	// NATS gone: nobody can renew, so nobody counts itself leader within
	// the TTL. Back: one leader again, once the old lease expired.
	ns.stop()
	waitFor(t, "no leader", func() bool { return len(leaders(nodes)) == 0 })
	ns.start()
	waitFor(t, "a leader after NATS came back", func() bool { return len(leaders(nodes)) == 1 })
	for end := time.Now().Add(2 * ttl); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if l := leaders(nodes); len(l) != 1 {
			t.Fatalf("leaders %v, want one", l)
		}
	}
}
