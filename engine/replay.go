package engine

import (
	"errors"
	"strconv"
	"time"
)

// ErrSeqOrder is returned by PublishSeq for a Seq that is not larger than
// the last one: every ring must see Seq increase.
var ErrSeqOrder = errors.New("engine: seq is not above the last one")

// ReplayFunc returns the messages of topics whose Seq is in (after, upTo],
// in Seq order, from wherever they are kept outside the rings (a cluster's
// JetStream stream, where Seq is the stream sequence). The engine does not
// change them (it fills a missing id or frame in on a copy), so one read
// may answer several subscribers. gap reports that
// some of them are no longer kept (retention) or were left out (a bound on
// the replay's size; the newest are kept). It is called on the subscriber's
// goroutine before the stream starts, and may block.
//
// The engine consults it only with AutoID, for a Last-Event-ID that is a
// decimal number (the Seq an auto id was given from) and is not in the
// rings. Any other id missing from the rings is a replay gap, as without it.
type ReplayFunc func(topics []string, after, upTo uint64) (msgs []*Message, gap bool, err error)

// PublishSeq is Publish with m's Seq given by an outside log that orders
// every message (in cluster mode, the JetStream stream sequence), so that
// Seq, and with AutoID the id, is the same on every node. seq must be
// larger than every Seq before it (ErrSeqOrder otherwise); gaps are fine.
func (e *Engine) PublishSeq(m *Message, seq uint64) (PublishResult, error) {
	if seq == 0 {
		return PublishResult{}, ErrSeqOrder
	}
	return e.publish(m, seq)
}

// AdvanceSeq raises the last Seq to seq if it is lower (under pubMu, so
// it orders with publishes): the messages up to
// seq exist outside the rings (published before this engine started, or
// skipped), so a Last-Event-ID up to seq is replayed through Config.Replay
// rather than waited for.
func (e *Engine) AdvanceSeq(seq uint64) {
	e.pubMu.Lock()
	e.seq = max(e.seq, seq)
	e.pubMu.Unlock()
}

// LastSeq returns the last Seq given (by Publish, PublishSeq or AdvanceSeq).
func (e *Engine) LastSeq() uint64 {
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	return e.seq
}

const gapFrame = ": replay-gap\n\n"

// replay points sub's cursors just after the message with id lastID and
// appends to head what must come before live delivery: nothing when the
// rings hold the rest, the messages fetched through Config.Replay when they
// do not (with Replay and AutoID, for an id that is a number: a Seq), or a
// replay-gap comment. Called by Serve before the subscriber is registered,
// while it owns the cursors and lastMsg (appendFrame sets it for
// each replayed message; the store on Subscriber.state that lets the
// subscriber go publishes them to the shard, as for the cursors).
//
// later reports that the messages after lastID exist but cannot be had
// now: Config.Replay failed (its log is unreachable), or this engine has
// not reached lastID within ReplayWait. A gap would tell the client they
// are lost, and live delivery from here would repeat what it has; Serve
// ends the stream with a retry hint instead (laterFrame), and the client
// comes back with the same Last-Event-ID.
func (sub *Subscriber) replay(head []byte, lastID string) (_ []byte, later bool) {
	e := sub.e
	after, err := strconv.ParseUint(lastID, 10, 64)
	if e.cfg.Replay == nil || !e.cfg.AutoID || err != nil {
		if !sub.replayFrom(lastID) {
			head = append(head, gapFrame...)
		}
		return head, false
	}
	if after > e.LastSeq() {
		// Another node saw this id first; wait until it reaches us, so the
		// client is not sent again what it already has.
		deadline := time.Now().Add(e.cfg.ReplayWait)
		for e.LastSeq() < after && time.Now().Before(deadline) && !e.closing.Load() {
			time.Sleep(5 * time.Millisecond)
		}
		if e.LastSeq() < after {
			e.cfg.Logger.Warn("Last-Event-ID is ahead of this node: the client is asked to come back", "subscriber", sub.ID, "id", lastID, "last_seq", e.LastSeq())
			return head, true
		}
	}

	// Under the publish lock, so that every message up to upTo is before
	// the cursors and every later one after them: the replay and the live
	// stream meet with nothing lost or repeated.
	e.pubMu.Lock()
	covered := true
	for i := range sub.cursors {
		covered = sub.cursors[i].seekAfter(after) && covered
	}
	if !covered {
		for i := range sub.cursors {
			sub.cursors[i].next.Store(sub.cursors[i].t.ring.Head())
		}
	}
	upTo := e.seq
	e.pubMu.Unlock()
	if covered || after >= upTo {
		return head, false
	}
	names := sub.Topics
	if len(names) == 0 {
		names = defaultTopic
	}
	msgs, gap, err := e.cfg.Replay(names, after, upTo)
	if err != nil {
		e.cfg.Logger.Warn("replay failed: the client is asked to come back", "subscriber", sub.ID, "id", lastID, "err", err)
		return head, true
	}
	if gap {
		head = append(head, gapFrame...)
	}
	hook := e.cfg.Hooks.Message
	batch := sub.shard.enterHooks()
	defer sub.shard.leaveHooks(batch)
	var frames [][]byte
	for _, m := range msgs {
		if m.Seq <= after || m.Seq > upTo || m.Seq <= sub.lastSeq() {
			continue
		}
		if m.ID == "" || m.Frame == nil {
			// Filled in on a copy: Replay may hand the same messages to
			// several subscribers.
			c := *m
			if c.ID == "" {
				c.ID = strconv.FormatUint(c.Seq, 10) // as publish did: AutoID is on
			}
			c.Frame = AppendFrame(make([]byte, 0, frameSize(&c)), &c)
			m = &c
		}
		if err := m.Validate(); err != nil {
			e.cfg.Logger.Warn("replay returned a bad message", "subscriber", sub.ID, "seq", m.Seq, "err", err)
			continue
		}
		frames = sub.appendFrame(frames[:0], m, hook, batch)
		for _, f := range frames {
			head = append(head, f...)
		}
	}
	return head, false
}

// laterFrame is the comment of the retry hint that ends a stream whose
// replay cannot be had now (replay's later).
const laterFrame = "replay-unavailable"

// seekAfter points c at the first message with Seq above after, if c's
// ring still holds every message of its topic with Seq above after: its
// oldest message is at most after+1. An empty ring cannot tell (its topic
// may have messages from before this engine started). Engine.pubMu must be
// held, so the ring does not move.
func (c *cursor) seekAfter(after uint64) bool {
	r := c.t.ring
	tail := r.Tail()
	oldest, ok, _ := r.Get(tail)
	if !ok || oldest.Seq > after+1 {
		return false
	}
	if s, found := r.Find(func(m *Message) bool { return m.Seq <= after }); found {
		c.next.Store(s + 1)
	} else {
		c.next.Store(tail)
	}
	return true
}
