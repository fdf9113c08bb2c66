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
	tops := make([][]*topic, len(ms))
	defer func() {
		for _, ts := range tops {
			for _, t := range ts {
				e.release(t)
			}
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
			tops[i] = append(tops[i], t)
		}
	}
	sizes := make([]int64, len(ms))
	limit := e.history.limit
	auto := func(m *Message) bool { return e.cfg.AutoID && m.ID == "" }
	for i, m := range ms {
		if auto(m) {
			continue // encoded under the lock, once its id is known
		}
		m.Frame = AppendFrame(make([]byte, 0, frameSize(m)), m)
		if sizes[i] = heldSize(m, len(tops[i])); limit > 0 && sizes[i] > limit {
			return PublishResult{}, &BatchError{i, ErrTooLarge}
		}
	}

	e.pubMu.Lock()
	seq := e.seq
	// Each message's rings: its topics and the pattern topics they match
	// (patindex.go), found under the lock as Publish finds them; each
	// pattern ring's entry counts in the message's size.
	rings := make([][]*topic, len(ms))
	var gaveID []bool // which messages got their auto id here, to take it back on refusal
	for i, m := range ms {
		rings[i] = e.withPatterns(make([]*topic, 0, len(tops[i])+1), tops[i])
		if !auto(m) {
			if sizes[i] += int64(len(rings[i])-len(tops[i])) * ringEntryOverhead; limit > 0 && sizes[i] > limit {
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
		if sizes[i] = heldSize(m, len(rings[i])); limit > 0 && sizes[i] > limit {
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
		for _, t := range rings[i] {
			if _, old, ok := t.ring.Append(m); ok {
				e.history.overwritten(old)
			}
		}
		emptied = e.history.trim(sizes[i], emptied)
		e.history.add(m, rings[i], sizes[i])
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
	for _, ts := range rings {
		for _, t := range ts {
			if seen[t] {
				continue
			}
			seen[t] = true
			e.wake(t, &res)
		}
	}
	return res, nil
}
