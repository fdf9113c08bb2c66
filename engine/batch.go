package engine

import (
	"fmt"
	"slices"
	"strconv"
)

// BatchError says which message of a batch was refused, and why (Err is
// one of Publish's errors: ErrInvalid, ErrTooManyTopics, ErrTooLarge).
// Nothing of the batch was published.
type BatchError struct {
	Index int // 0-based
	Err   error
}

func (e *BatchError) Error() string { return fmt.Sprintf("message %d: %v", e.Index, e.Err) }
func (e *BatchError) Unwrap() error { return e.Err }

// PublishBatch publishes ms in order, as one unit: every message is
// checked (Validate, the topic cap, the history budget) before any is
// appended, and all are appended under one hold of the publish lock, so
// they get consecutive Seqs and nobody else's message comes between them.
// A refusal is a *BatchError naming the first message refused, and then
// nothing is published. The result is as for Publish, over every topic of
// the batch (each counted once). No message may be changed afterwards.
//
// One lock, one wake-up per shard and topic, and one "queued" answer per
// batch rather than per message are what make a batch cheaper than as
// many Publish calls.
func (e *Engine) PublishBatch(ms []*Message) (PublishResult, error) {
	if e.closing.Load() {
		return PublishResult{}, ErrClosed
	}
	for i, m := range ms {
		if err := m.Validate(); err != nil {
			return PublishResult{}, &BatchError{i, err}
		}
	}
	// Each message's topics, as Publish takes them: acquired (created if
	// new, within MaxTopics), each named once.
	tops := newTopicLists(len(ms))
	defer func() {
		for _, t := range tops.all {
			e.release(t)
		}
	}()
	for i, m := range ms {
		names := m.Topics
		if len(names) == 0 {
			names = defaultTopic
		}
		for j, n := range names {
			if slices.Contains(names[:j], n) {
				continue
			}
			t := e.acquireUpTo(n, e.cfg.MaxTopics)
			if t == nil {
				return PublishResult{}, &BatchError{i, ErrTooManyTopics}
			}
			tops.all = append(tops.all, t)
		}
		tops.next()
	}
	sizes := make([]int64, len(ms))
	limit := e.history.limit
	auto := func(m *Message) bool { return e.cfg.AutoID && m.ID == "" }
	for i, m := range ms {
		if auto(m) {
			continue // encoded under the lock, once its id is known
		}
		m.Frame = AppendFrame(make([]byte, 0, frameSize(m)), m)
		if sizes[i] = heldSize(m, len(tops.list(i))); limit > 0 && sizes[i] > limit {
			return PublishResult{}, &BatchError{i, ErrTooLarge}
		}
	}

	e.pubMu.Lock()
	seq := e.seq
	// Each message's rings: its topics and the pattern topics they match
	// (patindex.go), found under the lock as Publish finds them; each
	// pattern ring's entry counts in the message's size.
	rings := newTopicLists(len(ms))
	var scratch []*topic
	var gaveID []bool // which messages got their auto id here, to take it back on refusal
	for i, m := range ms {
		scratch = e.withPatterns(scratch, tops.list(i))
		rings.all = append(rings.all, scratch...)
		rings.next()
		if !auto(m) {
			if sizes[i] += int64(len(scratch)-len(tops.list(i))) * ringEntryOverhead; limit > 0 && sizes[i] > limit {
				e.pubMu.Unlock()
				for j, gave := range gaveID {
					if gave {
						ms[j].ID, ms[j].Frame = "", nil
					}
				}
				return PublishResult{}, &BatchError{i, ErrTooLarge}
			}
			continue
		}
		if gaveID == nil {
			gaveID = make([]bool, len(ms))
		}
		gaveID[i] = true
		m.ID = strconv.FormatUint(seq+uint64(i)+1, 10)
		m.Frame = AppendFrame(make([]byte, 0, frameSize(m)), m)
		if sizes[i] = heldSize(m, len(scratch)); limit > 0 && sizes[i] > limit {
			e.pubMu.Unlock()
			for j, gave := range gaveID {
				if gave {
					ms[j].ID, ms[j].Frame = "", nil
				}
			}
			return PublishResult{}, &BatchError{i, ErrTooLarge}
		}
	}
	var emptied []*topic
	for i, m := range ms {
		seq++
		m.Seq = seq
		for _, t := range rings.list(i) {
			if _, old, ok := t.ring.Append(m); ok {
				e.history.overwritten(old)
			}
		}
		emptied = e.history.trim(sizes[i], emptied)
		e.history.add(m, rings.list(i), sizes[i])
	}
	e.seq = seq
	e.counters.publishes.Add(uint64(len(ms)))
	e.pubMu.Unlock()
	for _, t := range emptied {
		e.dropIfUnused(t)
	}

	// Each topic (and pattern topic) once: the answer and the wake-ups.
	var res PublishResult
	seen := make(map[*topic]bool)
	for _, t := range rings.all {
		if !seen[t] {
			seen[t] = true
			e.wake(t, &res)
		}
	}
	return res, nil
}

// topicLists is one list of topics per message of a batch, kept in one
// backing slice: two allocations per batch, not one per message.
type topicLists struct {
	all []*topic
	end []int // list i is all[end[i-1]:end[i]], list 0 from 0
}

func newTopicLists(n int) topicLists {
	return topicLists{all: make([]*topic, 0, n), end: make([]int, 0, n)}
}

// next ends the list being appended to all.
func (l *topicLists) next() { l.end = append(l.end, len(l.all)) }

// list is list i, capped so that an append to it cannot reach list i+1.
func (l *topicLists) list(i int) []*topic {
	start := 0
	if i > 0 {
		start = l.end[i-1]
	}
	return l.all[start:l.end[i]:l.end[i]]
}
