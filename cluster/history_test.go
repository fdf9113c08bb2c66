package cluster_test

import (
	"slices"
	"testing"

	"github.com/tinysse/tinysse/cluster"
	"github.com/tinysse/tinysse/engine"
)

func historyData(p cluster.HistoryPage) []string {
	var out []string
	for _, m := range p.Messages {
		out = append(out, m.Data)
	}
	return out
}

// TestHistory: a topic's messages come from the stream a page at a time,
// with their stream sequences, multi-topic messages included, until the
// stream has no more; a stream that dropped messages says so once.
func TestHistory(t *testing.T) {
	ns := startNATS(t)
	n := startNode(t, ns, cluster.Config{Stream: "hist"}, engine.Config{})
	n.mustPublish("a1", "a")
	n.mustPublish("b1", "b")
	n.mustPublish("a2", "a")
	n.mustPublish("ab", "a", "b")
	n.mustPublish("a3", "a")
	// Stream sequences: a1 1, b1 2, a2 3, ab 4, a3 5.
	p, err := n.cl.History("a", 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := historyData(p); !slices.Equal(got, []string{"a1", "a2"}) || !p.More || p.Gap || p.Next != 3 {
		t.Fatalf("first page %q %+v", got, p)
	}
	if p.Messages[0].Seq != 1 || p.Messages[1].Seq != 3 {
		t.Errorf("sequences %d, %d", p.Messages[0].Seq, p.Messages[1].Seq)
	}
	p, err = n.cl.History("a", p.Next, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := historyData(p); !slices.Equal(got, []string{"ab", "a3"}) || p.Next != 5 || p.More {
		t.Fatalf("second page %q %+v", got, p)
	}
	p, err = n.cl.History("a", p.Next, 2)
	if err != nil || len(p.Messages) != 0 || p.More || p.Next != 5 {
		t.Fatalf("past the end: %q %+v %v", historyData(p), p, err)
	}
	p, err = n.cl.History("b", 0, 10)
	if got := historyData(p); err != nil || !slices.Equal(got, []string{"b1", "ab"}) || p.More || p.Next != 5 {
		t.Fatalf("topic b: %q %+v %v", got, p, err)
	}
	p, err = n.cl.History("none", 0, 10)
	if err != nil || len(p.Messages) != 0 || p.More || p.Next != 5 {
		t.Fatalf("a topic never published: %+v %v", p, err)
	}
}

// TestHistoryGap: once the stream's retention dropped messages, a read
// from before them reports the gap and goes on after it.
func TestHistoryGap(t *testing.T) {
	ns := startNATS(t)
	n := startNode(t, ns, cluster.Config{Stream: "gap", MaxMsgs: 2}, engine.Config{})
	for _, d := range []string{"1", "2", "3", "4"} {
		n.mustPublish(d, "t")
	}
	p, err := n.cl.History("t", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := historyData(p); !slices.Equal(got, []string{"3", "4"}) || !p.Gap || p.Next != 4 {
		t.Fatalf("%q %+v", got, p)
	}
	if p, err = n.cl.History("t", 2, 10); err != nil || p.Gap || len(p.Messages) != 2 {
		t.Fatalf("from the oldest kept: %+v %v", p, err)
	}
}
