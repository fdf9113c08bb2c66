package cluster

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tinysse/tinysse/engine"
)

// maxHistoryScan bounds the stream messages one History call reads,
// matching or not (messages of other topics on the multi-topic subject,
// or every subject on a nats-server before 2.10): a rare topic in a long
// stream is read a page at a time, each bounded, with More set.
const maxHistoryScan = 10_000

// HistoryPage is a run of one topic's messages read from the stream.
type HistoryPage struct {
	// Messages are in stream order, each with Seq set to its stream
	// sequence. Their id is as published: with auto ids (none given),
	// the caller gives them their Seq as id, as the engine does.
	Messages []*engine.Message
	// Next is the stream sequence read up to: History(topic, Next, ...)
	// goes on after it.
	Next uint64
	// More: the stream held messages after Next when it was read.
	More bool
	// Gap: the stream no longer keeps every message after the sequence
	// asked from (its retention dropped some).
	Gap bool
}

// History reads up to limit messages of topic from the stream, those
// with a sequence above after, oldest first: the server API's history
// beyond a node's rings. It shares Replay's bound of concurrent reads
// (Config.ReplayFetches per node; a read waits up to PublishTimeout for
// a slot), reads at most maxHistoryScan stream messages and is bounded by
// PublishTimeout per step. Safe from any goroutine.
func (n *Node) History(topic string, after uint64, limit int) (HistoryPage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.PublishTimeout)
	defer cancel()
	if err := n.replaySlots.Acquire(ctx, 1); err != nil {
		return HistoryPage{}, fmt.Errorf("cluster: history: %d reads of the stream under way: %w", n.cfg.ReplayFetches, err)
	}
	defer n.replaySlots.Release(1)
	// A fresh handle: jetstream.Stream.Info caches what it read in the
	// handle without a lock, and reads run concurrently (see read).
	st, err := n.js.Stream(ctx, n.cfg.Stream)
	if err != nil {
		return HistoryPage{}, fmt.Errorf("cluster: history: %w", err)
	}
	info := st.CachedInfo()
	first, last := info.State.FirstSeq, info.State.LastSeq
	page := HistoryPage{Gap: first > after+1, Next: after}
	if page.Gap {
		page.Next = first - 1 // what is gone is reported once
	}
	start := page.Next + 1
	if start > last || info.State.Msgs == 0 || limit <= 0 {
		page.More = limit <= 0 && start <= last
		return page, nil
	}
	want := wantSet([]string{topic})
	scanned, stopped := 0, false
	err = n.scan(ctx, want, start, func(msg jetstream.Msg, seq uint64) bool {
		scanned++
		page.Next = seq
		if m, _, err := decode(n.cfg.Stream, msg.Subject(), msg.Data()); err == nil && wanted(m, want) {
			m.Seq = seq
			page.Messages = append(page.Messages, m)
		}
		stopped = len(page.Messages) == limit || scanned == maxHistoryScan
		return !stopped
	})
	if err != nil {
		return HistoryPage{}, fmt.Errorf("cluster: history: %w", err)
	}
	if !stopped {
		// Every matching message up to last was read: nothing of this
		// topic comes before last+1.
		page.Next = max(page.Next, last)
		return page, nil
	}
	page.More = page.Next < last
	return page, nil
}
