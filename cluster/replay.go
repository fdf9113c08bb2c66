package cluster

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tinysse/tinysse/engine"
)

// fetchBatch is how many messages one pull of a replay asks for.
const fetchBatch = 256

// Replay is the engine's Config.Replay in cluster mode: it returns the
// messages of topics with stream sequence in (after, upTo], read from the
// stream with a short-lived consumer filtered on those topics' subjects
// (and the multi-topic subject). gap reports that the stream no longer
// keeps all of them (retention) or that more than ReplayLimit matched (the
// newest are returned).
//
// Reads are shared: concurrent replays of the same topics from the same
// id (a reconnect storm: every browser of a topic comes back with the
// last id it saw) make one read (singleflight, keyed by topics and
// after), and at most Config.ReplayFetches reads run at once (a
// semaphore; the others wait up to PublishTimeout, then the replay fails
// and the client is asked to come back). A read covers (after, upTo] of
// the replay that started it; a replay sharing it keeps what it needs and
// reads the rest, published after that read's snapshot, the same way.
// The messages returned may be shared between replays: they come with
// their id (AutoID: the sequence) and frame set, and are not changed after.
func (n *Node) Replay(topics []string, after, upTo uint64) ([]*engine.Message, bool, error) {
	var out []*engine.Message
	gap := false
	for after < upTo {
		r, err := n.sharedRead(topics, after, upTo)
		if err != nil {
			return nil, false, err
		}
		gap = gap || r.gap
		for _, m := range r.msgs {
			if m.Seq > upTo {
				break
			}
			out = append(out, m)
		}
		if r.upTo >= upTo {
			break
		}
		after = r.upTo
	}
	if limit := n.cfg.ReplayLimit; len(out) > limit {
		out, gap = out[len(out)-limit:], true
	}
	return out, gap, nil
}

// replayRead is what one read of the stream gave: the messages of its
// topics in (after, upTo], in sequence order.
type replayRead struct {
	msgs []*engine.Message
	gap  bool
	upTo uint64
}

// sharedRead reads (after, upTo] of topics, or joins a read of the same
// topics from the same after that is under way or ended less than
// replayKeep ago.
func (n *Node) sharedRead(topics []string, after, upTo uint64) (*replayRead, error) {
	key := replayKey(topics, after)
	if r := n.replayCache.get(key); r != nil {
		n.metrics.replayShared.Inc()
		return r, nil
	}
	ran := false
	v, err, _ := n.replayFlights.Do(key, func() (any, error) {
		ran = true
		if r := n.replayCache.get(key); r != nil {
			return r, nil // it ended between our look and this flight
		}
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.PublishTimeout)
		defer cancel()
		if err := n.replaySlots.Acquire(ctx, 1); err != nil {
			return nil, fmt.Errorf("cluster: replay: %d reads of the stream under way: %w", n.cfg.ReplayFetches, err)
		}
		defer n.replaySlots.Release(1)
		n.metrics.replayReads.Inc()
		r, err := n.read(topics, after, upTo)
		if err == nil {
			n.replayCache.put(key, r)
		}
		return r, err
	})
	if !ran {
		n.metrics.replayShared.Inc()
	}
	if err != nil {
		return nil, err
	}
	return v.(*replayRead), nil
}

// replayKey names a read: after and the set of topics (order and repeats
// do not matter).
func replayKey(topics []string, after uint64) string {
	ts := slices.Clone(topics)
	slices.Sort(ts)
	ts = slices.Compact(ts)
	return strconv.FormatUint(after, 10) + "\x00" + strings.Join(ts, "\x00")
}

// read is one read of the stream for Replay (see there).
func (n *Node) read(topics []string, after, upTo uint64) (*replayRead, error) {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.PublishTimeout)
	defer cancel()
	// A fresh handle: jetstream.Stream.Info caches what it read in the
	// handle without a lock, and reads run concurrently.
	st, err := n.js.Stream(ctx, n.cfg.Stream)
	if err != nil {
		return nil, fmt.Errorf("cluster: replay: %w", err)
	}
	info := st.CachedInfo()
	first := info.State.FirstSeq
	gap := first > after+1
	start := max(after+1, first)
	if start > upTo || info.State.Msgs == 0 {
		return &replayRead{gap: gap, upTo: upTo}, nil
	}

	want := wantSet(topics)
	limit := n.cfg.ReplayLimit
	autoID := n.eng != nil && n.eng.Config().AutoID
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
		// Set once here, so that replays sharing this read change
		// nothing (the engine fills in only what is missing).
		if m.ID == "" && autoID {
			m.ID = strconv.FormatUint(seq, 10)
		}
		m.Frame = engine.AppendFrame(nil, m)
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
		return nil, fmt.Errorf("cluster: replay: %w", err)
	}
	if head > 0 {
		kept = slices.Concat(kept[head:], kept[:head])
	}
	return &replayRead{msgs: kept, gap: gap || dropped, upTo: upTo}, nil
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
// (wanted). The caller holds a slot of n.replaySlots; ctx bounds the
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

// replayKeep is how long a read answers replays that start after it
// ended: clients reconnecting after a blip arrive over a second or two,
// not all within one read. What a read holds does not change (the
// messages of a range of sequences); a replay that needs more reads the
// rest. replayKeepMsgs bounds the messages kept for that, all reads
// together.
const (
	replayKeep     = 2 * time.Second
	replayKeepMsgs = 1 << 16
)

// replayCache keeps recent reads for replayKeep.
type replayCache struct {
	mu    sync.Mutex // a leaf: guards the fields below
	reads map[string]keptRead
	msgs  int // messages held by reads
}

type keptRead struct {
	r     *replayRead
	until time.Time
}

func (c *replayCache) get(key string) *replayRead {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.reads[key]
	if !ok || time.Now().After(k.until) {
		return nil
	}
	return k.r
}

// put keeps r under key unless that would hold more than replayKeepMsgs
// messages; reads past their time are dropped first.
func (c *replayCache) put(key string, r *replayRead) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for k, v := range c.reads {
		if now.After(v.until) {
			c.msgs -= len(v.r.msgs)
			delete(c.reads, k)
		}
	}
	if old, ok := c.reads[key]; ok {
		c.msgs -= len(old.r.msgs)
		delete(c.reads, key)
	}
	if c.msgs+len(r.msgs) > replayKeepMsgs {
		return
	}
	if c.reads == nil {
		c.reads = make(map[string]keptRead)
	}
	c.reads[key] = keptRead{r, now.Add(replayKeep)}
	c.msgs += len(r.msgs)
}
