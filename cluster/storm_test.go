package cluster_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinysse/tinysse/cluster"
	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/sseparse"
)

// TestReplayStormShared: 1,000 subscribers resume at once, each from an
// id older than its topic's ring (10 topics, two ids each: 20 distinct
// (topic, id) pairs). Every one gets exactly the messages it missed, in
// order; the node read the stream at most once per
// distinct pair (singleflight), with at most --nats-replay-fetches reads
// at once.
func TestReplayStormShared(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 streams")
	}
	const (
		subscribers = 1000
		topics      = 10
		perTopic    = 40
	)
	ns := startNATS(t)
	n := startNode(t, ns, cluster.Config{ReplayFetches: 4}, engine.Config{Capacity: 8})
	h := &history{t: t}
	for i := range perTopic * topics {
		h.publish(n, fmt.Sprintf("m%d", i), "t"+strconv.Itoa(i%topics))
	}
	// Two ids per topic, both older than its ring of 8: its 5th and 10th
	// message.
	type resume struct {
		topic string
		id    int
	}
	var pairs []resume
	for k := range topics {
		topic := "t" + strconv.Itoa(k)
		var ids []int
		for i, m := range h.msgs {
			if m.topic == topic {
				ids = append(ids, i+1)
			}
		}
		pairs = append(pairs, resume{topic, ids[4]}, resume{topic, ids[9]})
	}
	readsBefore := natsCounter(t, n, "tinysse_nats_replay_reads_total")

	start := make(chan struct{})
	errs := make(chan error, subscribers)
	var wg sync.WaitGroup
	for i := range subscribers {
		p := pairs[i%len(pairs)]
		want := h.after(p.id, p.topic)
		wg.Go(func() {
			<-start
			got, err := resumeStream(n.addr, p.topic, p.id, len(want))
			if err != nil {
				errs <- fmt.Errorf("subscriber %d (%s after %d): %v", i, p.topic, p.id, err)
				return
			}
			if !slices.Equal(got, want) {
				errs <- fmt.Errorf("subscriber %d (%s after %d): got %q, want %q", i, p.topic, p.id, got, want)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	reads := natsCounter(t, n, "tinysse_nats_replay_reads_total") - readsBefore
	shared := natsCounter(t, n, "tinysse_nats_replays_shared_total")
	t.Logf("%d subscribers resumed from %d distinct (topic, id) pairs: %d reads of the stream, %d replays answered by a shared read", subscribers, len(pairs), reads, shared)
	if reads > len(pairs) {
		t.Errorf("%d reads of the stream for %d distinct (topic, id) pairs", reads, len(pairs))
	}
	if reads == 0 {
		t.Error("no read of the stream: the ids were not older than the rings")
	}
}

// resumeStream subscribes to topic with Last-Event-ID id, reads k events
// after ": ok" and returns them as "id:data".
func resumeStream(addr, topic string, id, k int) ([]string, error) {
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * wait))
	if _, err := fmt.Fprintf(c, "GET /sse?topic=%s HTTP/1.1\r\nHost: x\r\nLast-Event-ID: %d\r\n\r\n", topic, id); err != nil {
		return nil, err
	}
	br := bufio.NewReader(c)
	var head []byte
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		line, err := br.ReadBytes('\n')
		head = append(head, line...)
		if err != nil {
			return nil, fmt.Errorf("head %q: %v", head, err)
		}
	}
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 200")) {
		return nil, fmt.Errorf("answer %q", head)
	}
	p := sseparse.New()
	buf := make([]byte, 32<<10)
	var got []string
	for len(got) < k {
		b, ok := p.Next()
		if !ok {
			m, err := br.Read(buf)
			p.Feed(buf[:m])
			if err != nil && m == 0 {
				return got, err
			}
			continue
		}
		switch {
		case b.Event != nil:
			got = append(got, b.Event.LastEventID+":"+b.Event.Data)
		case len(b.Comments) > 0 && b.Comments[0] != "ok" && b.Comments[0] != "keep-alive":
			got = append(got, "#"+strings.Join(b.Comments, " "))
		}
	}
	return got, nil
}

var counterLine = regexp.MustCompile(`(?m)^(\S+) (\d+)$`)

// natsCounter reads one of the node's tinysse_nats_* counters.
func natsCounter(t *testing.T, n *node, name string) int {
	t.Helper()
	var b bytes.Buffer
	n.cl.WritePrometheus(&b)
	for _, m := range counterLine.FindAllStringSubmatch(b.String(), -1) {
		if m[1] == name {
			v, _ := strconv.Atoi(m[2])
			return v
		}
	}
	t.Fatalf("no %s in %s", name, b.String())
	return 0
}
