package cluster

import (
	"context"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tinysse/tinysse/engine"
)

// fetchBatch is how many messages one pull of a replay asks for;
// maxReplays how many replays run at once (the others wait their turn).
const (
	fetchBatch = 256
	maxReplays = 16
)

// Replay is the engine's Config.Replay in cluster mode: it returns the
// messages of topics with stream sequence in (after, upTo], read from the
// stream with a short-lived consumer filtered on those topics' subjects
// (and the multi-topic subject). gap reports that the stream no longer
// keeps all of them (retention) or that more than ReplayLimit matched (the
// newest are returned).
func (n *Node) Replay(topics []string, after, upTo uint64) ([]*engine.Message, bool, error) {
	n.replays <- struct{}{}
	defer func() { <-n.replays }()
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.PublishTimeout)
	defer cancel()
	info, err := n.stream.Info(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("cluster: replay: %w", err)
	}
	first := info.State.FirstSeq
	gap := first > after+1
	start := max(after+1, first)
	if start > upTo || info.State.Msgs == 0 {
		return nil, gap, nil
	}

	want := wantSet(topics)
	limit := n.cfg.ReplayLimit
	var kept []*engine.Message // the newest limit, oldest first from index head
	head := 0
	dropped := false
	err = n.scan(ctx, want, start, func(msg jetstream.Msg, seq uint64) bool {
		if seq > upTo {
			return false // the live stream has it
		}
		m, err := n.decode(msg)
		if err != nil || !wanted(m, want) {
			return true
		}
		m.Seq = seq
		if len(kept) < limit {
			kept = append(kept, m)
		} else {
			kept[head] = m
			head = (head + 1) % limit
			dropped = true
		}
		return true
	})
	if err != nil {
		return nil, false, fmt.Errorf("cluster: replay: %w", err)
	}
	if head > 0 {
		kept = slices.Concat(kept[head:], kept[:head])
	}
	return kept, gap || dropped, nil
}

// wantSet is the set of topics named (a map, for wanted).
func wantSet(topics []string) map[string]bool {
	want := make(map[string]bool, len(topics))
	for _, t := range topics {
		want[t] = true
	}
	return want
}

// scan reads the stream's messages on the subjects of the topics in want
// (and the multi-topic subject) from sequence start on, in order, with a
// short-lived consumer, and hands each to visit with its stream sequence
// until visit returns false or every message that matched when the
// consumer was made has been read. On a nats-server before 2.10, which
// takes one filter, it reads every subject: visit must check the topics
// (wanted). The caller holds a slot of n.replays; ctx bounds the
// consumer's creation, PublishTimeout each pull.
func (n *Node) scan(ctx context.Context, want map[string]bool, start uint64, visit func(msg jetstream.Msg, seq uint64) bool) error {
	filters := []string{n.cfg.Stream + ".m"}
	for t := range want {
		filters = append(filters, subject(n.cfg.Stream, []string{t}))
	}
	ccfg := jetstream.ConsumerConfig{
		FilterSubjects:    filters,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       start,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: n.cfg.PublishTimeout,
	}
	if !n.multiFilter || hasPattern(want) {
		// A pattern subscriber's topics have no subject filter (a topic is
		// one escaped subject token, so NATS wildcards cannot follow "/"):
		// read every subject, and wanted matches the patterns.
		ccfg.FilterSubjects, ccfg.FilterSubject = nil, n.cfg.Stream+".>"
	}
	cons, err := n.stream.CreateConsumer(ctx, ccfg)
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.PublishTimeout)
		defer cancel()
		_ = n.stream.DeleteConsumer(ctx, cons.CachedInfo().Name)
	}()

	// pending is what matched when the consumer was made, so each pull asks
	// only for messages that exist and returns as soon as it has them.
	pending := cons.CachedInfo().NumPending
	for pending > 0 {
		n.metrics.fetches.Inc()
		batch, err := cons.Fetch(int(min(pending, fetchBatch)), jetstream.FetchMaxWait(n.cfg.PublishTimeout))
		if err != nil {
			return err
		}
		got := 0
		done := false
		for msg := range batch.Messages() {
			got++
			n.metrics.replayed.Inc()
			if done {
				continue // drain the batch
			}
			meta, err := msg.Metadata()
			if err != nil {
				continue
			}
			done = !visit(msg, meta.Sequence.Stream)
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if done || got == 0 {
			return nil
		}
		pending -= uint64(got)
	}
	return nil
}

// wanted reports whether m goes to one of the topics in want (a message
// on the multi-topic subject may name none of them).
func wanted(m *engine.Message, want map[string]bool) bool {
	if len(m.Topics) == 0 {
		return wantTopic(want, "")
	}
	return slices.ContainsFunc(m.Topics, func(t string) bool { return wantTopic(want, t) })
}

// wantTopic reports whether topic t is in want: named, or matched by a
// pattern in want (a pattern subscriber's replay).
func wantTopic(want map[string]bool, t string) bool {
	if want[t] {
		return true
	}
	for w := range want {
		if engine.IsPattern(w) {
			if p, err := engine.ParseSubscription(w); err == nil && p.Match(t) {
				return true
			}
		}
	}
	return false
}

// hasPattern reports whether want names a wildcard pattern.
func hasPattern(want map[string]bool) bool {
	for w := range want {
		if engine.IsPattern(w) {
			return true
		}
	}
	return false
}
