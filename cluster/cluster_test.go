package cluster_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinysse/tinysse/cluster"
	"github.com/tinysse/tinysse/engine"
)

// seqs returns "i:<prefix>i" for i in from..to.
func seqs(prefix string, from, to int) []string {
	var s []string
	for i := from; i <= to; i++ {
		s = append(s, fmt.Sprintf("%d:%s%d", i, prefix, i))
	}
	return s
}

func TestCrossNodeDeliveryAndOrder(t *testing.T) {
	ns := startNATS(t)
	nodes := startNodes(t, ns, 3, cluster.Config{}, engine.Config{})

	var subs []*stream
	for _, n := range nodes {
		subs = append(subs, n.subscribe("topic=news", ""))
	}
	both := nodes[2].subscribe("topic=a&topic=b", "")
	for _, n := range nodes {
		waitFor(t, "subscribers", func() bool { return n.eng.Subscribers("news") >= 1 })
	}

	// Publishes round-robin over the nodes: every subscriber on every node
	// sees all of them in one order, with the stream sequence as id.
	const k = 30
	for i := 1; i <= k; i++ {
		nodes[i%3].mustPublish(fmt.Sprintf("m%d", i), "news")
	}
	want := seqs("m", 1, k)
	for i, s := range subs {
		if got := s.events(k); !slices.Equal(got, want) {
			t.Fatalf("node %d got %q, want %q", i, got, want)
		}
	}

	// Concurrent publishers on three nodes: one order (the stream's) on
	// every node, and per publisher its own order.
	done := make(chan struct{})
	for p, n := range nodes {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 20; i++ {
				body := fmt.Sprintf(`{"data":"p%d-%d","topic":"news"}`, p, i)
				if st, b := n.publish(body); st != http.StatusAccepted {
					t.Errorf("publish: %d %s", st, b)
				}
			}
		}()
	}
	for range nodes {
		<-done
	}
	first := subs[0].events(60)
	for i, s := range subs[1:] {
		if got := s.events(60); !slices.Equal(got, first) {
			t.Fatalf("node %d order differs:\n%q\n%q", i+1, got, first)
		}
	}
	for p := range nodes {
		next := 0
		for j, e := range first {
			if id, _ := strconv.Atoi(strings.SplitN(e, ":", 2)[0]); id != k+1+j {
				t.Fatalf("event %q at %d: ids are not the stream sequence", e, j)
			}
			if strings.HasSuffix(e, fmt.Sprintf(":p%d-%d", p, next)) {
				next++
			}
		}
		if next != 20 {
			t.Fatalf("publisher %d: %d of its 20 messages in its order", p, next)
		}
	}

	// A message for several topics is one stream message: a subscriber of
	// two of them gets it once; the default topic works across nodes too.
	nodes[0].mustPublish("ab", "a", "b")
	nodes[1].mustPublish("b only", "b")
	if got, want := both.events(2), []string{fmt.Sprintf("%d:ab", k+61), fmt.Sprintf("%d:b only", k+62)}; !slices.Equal(got, want) {
		t.Fatalf("multi-topic subscriber got %q, want %q", got, want)
	}
	// Replayed from the stream (the rings do not go back to 0): the
	// multi-topic message once, and only to subscribers of its topics.
	for q, want := range map[string][]string{
		"topic=a":         {fmt.Sprintf("%d:ab", k+61)},
		"topic=b&topic=a": {fmt.Sprintf("%d:ab", k+61), fmt.Sprintf("%d:b only", k+62)},
	} {
		r := nodes[0].subscribe(q, "0")
		if got := r.events(len(want)); !slices.Equal(got, want) {
			t.Fatalf("replay of %s got %q, want %q", q, got, want)
		}
		r.quiet(50 * time.Millisecond)
	}
	def := nodes[1].subscribe("", "")
	waitFor(t, "default subscriber", func() bool { return nodes[1].eng.Subscribers("") == 1 })
	nodes[2].mustPublish("plain")
	if got := def.events(1); got[0] != fmt.Sprintf("%d:plain", k+63) {
		t.Fatalf("default topic got %q", got)
	}
	both.quiet(100 * time.Millisecond)

	// The 202 comes after this node applied the message: it counts the
	// node's own subscribers of the topic.
	st, body := nodes[0].publish(`{"data":"count","topic":"news"}`)
	var r struct{ Subscribers int }
	if err := json.Unmarshal([]byte(body), &r); st != http.StatusAccepted || err != nil || r.Subscribers != 1 {
		t.Fatalf("publish answered %d %s, want 202 with 1 subscriber", st, body)
	}
}

// history records what a test published, in stream order, to say what a
// replay must return.
type history struct {
	t    *testing.T
	msgs []struct{ topic, data string }
}

func (h *history) publish(n *node, data, topic string) {
	n.mustPublish(data, topic)
	h.msgs = append(h.msgs, struct{ topic, data string }{topic, data})
}

// after returns "seq:data" of the messages of topics published after seq.
func (h *history) after(seq int, topics ...string) []string {
	var s []string
	for i, m := range h.msgs {
		if i+1 > seq && slices.Contains(topics, m.topic) {
			s = append(s, fmt.Sprintf("%d:%s", i+1, m.data))
		}
	}
	return s
}

func TestReplayAcrossNodesAndRestart(t *testing.T) {
	ns := startNATS(t)
	// Rings of 4 on nodes 1 and 2: most of what is replayed there is no
	// longer in any ring. Node 0's are big, so that its live subscriber is
	// not cut off as lagged on a loaded machine.
	nodes := []*node{startNode(t, ns, cluster.Config{}, engine.Config{Capacity: 1024})}
	nodes = append(nodes, startNodes(t, ns, 2, cluster.Config{}, engine.Config{Capacity: 4})...)
	first := nodes[0].subscribe("topic=news", "")
	waitFor(t, "subscriber", func() bool { return nodes[0].eng.Subscribers("news") == 1 })
	h := &history{t: t}
	// The live subscriber reads each message before the next publish: with
	// rings of 4, a loaded machine could otherwise lap it.
	var got []string
	for i := 1; i <= 20; i++ {
		h.publish(nodes[i%3], fmt.Sprintf("n%d", i), "news")
		got = append(got, first.events(1)...)
		if i%5 == 0 {
			h.publish(nodes[1], fmt.Sprintf("o%d", i), "other") // other topics take stream sequences too
		}
	}
	if want := h.after(0, "news"); !slices.Equal(got, want) {
		t.Fatalf("first subscriber got %q, want %q", got, want)
	}

	for _, c := range []struct {
		name   string
		node   int
		topics []string
		lastID int
	}{
		{"older than the ring, on another node", 1, []string{"news"}, 8},
		{"in the ring", 2, []string{"news"}, 22},
		{"several topics, in a ring", 2, []string{"news", "other"}, 18},
		{"several topics, older than the rings", 1, []string{"news", "other"}, 8},
		{"from the start", 2, []string{"other"}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := "topic=" + strings.Join(c.topics, "&topic=")
			s := nodes[c.node].subscribe(q, strconv.Itoa(c.lastID))
			want := h.after(c.lastID, c.topics...)
			if got := s.on(t).events(len(want)); !slices.Equal(got, want) {
				t.Fatalf("replay got %q, want %q", got, want)
			}
			// Then live, with nothing repeated or lost at the seam.
			h.publish(nodes[(c.node+1)%3], "live-"+c.name, c.topics[0])
			if got, want := s.on(t).events(1), h.after(len(h.msgs)-1, c.topics...); !slices.Equal(got, want) {
				t.Fatalf("after the replay got %q, want %q", got, want)
			}
			s.on(t).quiet(100 * time.Millisecond)
		})
	}

	t.Run("not an auto id", func(t *testing.T) {
		s := nodes[1].subscribe("topic=news", "no-such-id")
		if r := s.on(t).events(1); r[0] != "#replay-gap" {
			t.Fatalf("got %q, want a replay gap", r)
		}
	})

	t.Run("after a node restart", func(t *testing.T) {
		nodes[2].stop()
		h.publish(nodes[0], "while-down", "news")
		again := startNode(t, ns, cluster.Config{}, engine.Config{Capacity: 4})
		last := len(h.msgs) - 6
		s := again.subscribe("topic=news", strconv.Itoa(last))
		want := h.after(last, "news")
		if got := s.on(t).events(len(want)); !slices.Equal(got, want) {
			t.Fatalf("restarted node replayed %q, want %q", got, want)
		}
		h.publish(again, "after", "news")
		if got, want := s.on(t).events(1), h.after(len(h.msgs)-1, "news"); !slices.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
}

// A client whose Last-Event-ID is ahead of the node it reconnects to (the
// node has not applied it yet) is not sent again what it has.
func TestReplayAheadOfNode(t *testing.T) {
	ns := startNATS(t)
	n := startNodes(t, ns, 1, cluster.Config{}, engine.Config{})[0]
	n.mustPublish("x1", "t")
	// A sequence this node does not have yet: the subscriber waits for it.
	sub := make(chan *stream, 1)
	go func() { sub <- n.subscribe("topic=t", "3") }()
	time.Sleep(100 * time.Millisecond)
	n.mustPublish("x2", "t")
	n.mustPublish("x3", "t")
	s := <-sub
	n.mustPublish("x4", "t")
	if got := s.events(1); got[0] != "4:x4" {
		t.Fatalf("got %q, want 4:x4", got)
	}
}

func TestRetentionGap(t *testing.T) {
	ns := startNATS(t)
	n := startNodes(t, ns, 1, cluster.Config{Stream: "small", MaxMsgs: 5}, engine.Config{Capacity: 2})[0]
	for i := 1; i <= 10; i++ {
		n.mustPublish(fmt.Sprintf("r%d", i), "t")
	}
	s := n.subscribe("topic=t", "2")
	want := append([]string{"#replay-gap"}, seqs("r", 6, 10)...)
	if got := s.events(len(want)); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestNATSDownAndBack(t *testing.T) {
	ns := startNATS(t)
	nodes := startNodes(t, ns, 3, cluster.Config{PublishTimeout: time.Second}, engine.Config{})
	var subs []*stream
	for _, n := range nodes {
		subs = append(subs, n.subscribe("topic=live", ""))
		waitFor(t, "subscriber", func() bool { return n.eng.Subscribers("live") == 1 })
	}
	var acked []string
	for i := 1; i <= 5; i++ {
		nodes[i%3].mustPublish(fmt.Sprintf("a%d", i), "live")
		acked = append(acked, fmt.Sprintf("%d:a%d", i, i))
	}

	for _, s := range subs {
		if got := s.events(len(acked)); !slices.Equal(got, acked) {
			t.Fatalf("got %q, want %q", got, acked)
		}
	}
	acked = acked[:0]

	ns.stop()
	for i, n := range nodes {
		// A publish racing the disconnection may have left before it was
		// noticed: 504, "may be stored" (TestFaultNodeLosesNATS). Once
		// the node knows, 503 at once.
		waitFor(t, "the node to notice", func() bool { return !n.cl.Connected() })
		st, body := n.publish(`{"data":"lost","topic":"live"}`)
		var e struct{ Error string }
		if st != http.StatusServiceUnavailable || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, "unavailable") {
			t.Fatalf("node %d with NATS down answered %d %s, want 503 with a JSON error", i, st, body)
		}
	}
	for _, s := range subs {
		s.quiet(200 * time.Millisecond) // still connected, nothing new
	}

	ns.start()
	// Publish until a node accepts again, then keep publishing.
	seq := 5
	deadline := time.Now().Add(wait)
	for i := 6; len(acked) < 15; i++ {
		if time.Now().After(deadline) {
			t.Fatal("publishes never recovered")
		}
		st, body := nodes[i%3].publish(fmt.Sprintf(`{"data":"b%d","topic":"live"}`, i))
		switch st {
		case http.StatusAccepted:
			seq++
			acked = append(acked, fmt.Sprintf("%d:b%d", seq, i))
		case http.StatusServiceUnavailable:
			time.Sleep(20 * time.Millisecond)
		default:
			t.Fatalf("publish answered %d %s", st, body)
		}
	}
	for i, s := range subs {
		if got := s.events(len(acked)); !slices.Equal(got, acked) {
			t.Fatalf("node %d subscriber got %q, want %q", i, got, acked)
		}
		s.quiet(100 * time.Millisecond)
	}
}

func TestConfigRefusals(t *testing.T) {
	ns := startNATS(t)
	for _, c := range []cluster.Config{
		{},
		{URL: ns.url(), Stream: "a.b"},
		{URL: ns.url(), Stream: "a*"},
		{URL: ns.url(), MaxMsgs: -1},
		{URL: ns.url(), TLSCert: "cert.pem"},
		{URL: "nats://127.0.0.1:1"},
	} {
		if _, err := cluster.Connect(t.Context(), c); err == nil {
			t.Errorf("Connect(%+v) succeeded", c)
		}
	}
}

// A node cut off from NATS catches up what it missed at once when the link
// comes back; paced by its rings, it does not lap its subscribers (with
// rings of 16, 200 messages applied in one burst would).
func TestCatchUpKeepsSubscribers(t *testing.T) {
	ns := startNATS(t)
	link := startProxy(t, strings.TrimPrefix(ns.url(), "nats://"))
	behind := startNode(t, ns, cluster.Config{URL: link.url()}, engine.Config{Capacity: 16})
	other := startNode(t, ns, cluster.Config{}, engine.Config{})
	s := behind.subscribe("topic=c", "")
	waitFor(t, "subscriber", func() bool { return behind.eng.Subscribers("c") == 1 })

	link.setCut(true)
	waitFor(t, "the cut", func() bool { return !behind.cl.Connected() })
	const k = 200
	for i := 1; i <= k; i++ {
		other.mustPublish(fmt.Sprintf("c%d", i), "c")
	}
	link.setCut(false)
	if got, want := s.events(k), seqs("c", 1, k); !slices.Equal(got, want) {
		t.Fatalf("after catching up the subscriber got %d events (%q...), want all %d in order", len(got), got[:min(len(got), 3)], k)
	}
	s.quiet(100 * time.Millisecond)
}
