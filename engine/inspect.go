package engine

import (
	"container/heap"
	"net"
	"slices"
	"strings"
	"time"
)

// Read-only views of the engine for the server API (transport/api.go):
// topics, a topic's history, who is subscribed, and ending streams.
//
// Locking. Nothing here takes Engine.pubMu, so a publish never waits for
// a reader. The topic map is read under topicsMu's read lock only long
// enough to copy the topic pointers out; rings are read lock-free, as a
// shard reads them. Presence, Disconnect and DisconnectTopic take each
// shard's mu in turn, never two at once and never with another lock, for
// a walk of that shard's subscribers (of the topic) that does no I/O and
// allocates nothing but the page: a comparison of ids per subscriber, at
// most limit pointers kept (BenchmarkPresence: 1-2 ms under the lock for
// 100,000 subscribers). Disconnect's kick sets a deadline, as Close does
// under the same lock. Everything that reads a subscriber's
// request, socket address or hook state happens after the lock is let go.

// TopicInfo describes one topic as the engine holds it now.
type TopicInfo struct {
	Name        string
	Subscribers int64  // subscribers reading it now, on this engine
	Published   uint64 // messages ever appended to its ring (since the topic was made)
	Messages    int    // messages its ring holds now
	// Bytes is the size of the SSE frames its ring holds (what a replay
	// of all of them would write). A message in several topics counts in
	// each.
	Bytes int64
	// LastID and LastSeq are the newest held message's id ("" when it has
	// none) and Seq; both zero when the ring is empty.
	LastID  string
	LastSeq uint64
	// Pattern: Name is a pattern that subscribers hold (patindex.go); its
	// ring holds the messages of the topics it matches, Published counts
	// them since the pattern was made, Subscribers are the pattern's own.
	Pattern bool
}

// published is how many messages were appended to t's ring since it was
// made: a pattern topic's backfill (prepended below base) is not counted.
func (t *topic) published() uint64 { return t.ring.Head() - t.base }

// info reads t's figures. The ring is walked lock-free: O(messages held).
func (t *topic) info() TopicInfo {
	ti := TopicInfo{Name: t.name, Subscribers: t.subscribers.Load(), Pattern: t.pattern}
	head := t.ring.Head()
	ti.Published = head - t.base // published(), with the head read once
	for s := t.ring.Tail(); s < head; s++ {
		m, ok, _ := t.ring.Get(s)
		if !ok {
			continue // dropped or overwritten while we read: no longer held
		}
		ti.Messages++
		ti.Bytes += int64(len(m.Frame))
		ti.LastID, ti.LastSeq = m.ID, m.Seq
	}
	return ti
}

// Topic returns what the engine holds of topic name; ok is false when it
// holds no such topic.
func (e *Engine) Topic(name string) (ti TopicInfo, ok bool) {
	t := e.lookup(name)
	if t == nil {
		return TopicInfo{}, false
	}
	return t.info(), true
}

// TopicPage returns the topics whose names sort after after (byte order;
// from the first, the default topic "" included, when first is true), at
// most limit of them, in name order; more says that others follow,
// total how many topics the engine holds. The patterns subscribers hold
// are listed among them (TopicInfo.Pattern; a pattern and a topic may
// share a name, the topic first). Cost: O(topics) to pick the page
// (the topic map's read lock is held only to copy its pointers out) and
// O(messages held) per topic of the page, lock-free.
func (e *Engine) TopicPage(after string, first bool, limit int) (page []TopicInfo, more bool, total int) {
	return e.TopicPageFrom(after, true, first, limit)
}

// TopicPageFrom is TopicPage after one item of a page: the topic named
// after, or the pattern of that name when afterPattern is true. A topic
// and a pattern may share a name (a "*" in a published topic's name is
// a plain character), the topic first: a page that ends with the topic
// goes on with the pattern.
func (e *Engine) TopicPageFrom(after string, afterPattern, first bool, limit int) (page []TopicInfo, more bool, total int) {
	e.topicsMu.RLock()
	all := make([]*topic, 0, len(e.topics)+len(e.pats.byName))
	for _, t := range e.topics {
		all = append(all, t)
	}
	for _, t := range e.pats.byName { // the patterns subscribers hold, marked Pattern
		all = append(all, t)
	}
	e.topicsMu.RUnlock()
	total = len(all)
	picked := all[:0]
	for _, t := range all {
		if first || t.name > after || t.name == after && t.pattern && !afterPattern {
			picked = append(picked, t)
		}
	}
	slices.SortFunc(picked, func(a, b *topic) int {
		if c := strings.Compare(a.name, b.name); c != 0 || a.pattern == b.pattern {
			return c
		}
		if a.pattern {
			return 1 // a topic before the pattern of the same name
		}
		return -1
	})
	if len(picked) > limit {
		picked, more = picked[:limit], true
	}
	page = make([]TopicInfo, len(picked))
	for i, t := range picked {
		page[i] = t.info()
	}
	return page, more, total
}

// HistoryRead is what History and Newest found in a topic's ring.
type HistoryRead struct {
	// Messages are in publish order. They are the engine's own, shared
	// with every subscriber: read them, never change them.
	Messages []*Message
	// More: the ring holds messages after the last one returned.
	More bool
	// Oldest is the Seq of the oldest message the ring holds (0: none).
	// Lost says the ring has lost messages (lapped, or dropped for the
	// history budget): messages between a Seq the caller asked from and
	// Oldest may be gone.
	Oldest uint64
	Lost   bool
	// Known: the topic exists on this engine.
	Known bool
}

// History returns up to limit messages of topic name whose Seq is above
// after, oldest first, from its ring (lock-free).
func (e *Engine) History(name string, after uint64, limit int) HistoryRead {
	t := e.lookup(name)
	if t == nil {
		return HistoryRead{}
	}
	r := t.ring
	start := r.Tail()
	if s, ok := r.Find(func(m *Message) bool { return m.Seq <= after }); ok {
		start = s + 1
	}
	return t.read(start, limit)
}

// Newest returns the newest limit messages of topic name, oldest first.
func (e *Engine) Newest(name string, limit int) HistoryRead {
	t := e.lookup(name)
	if t == nil {
		return HistoryRead{}
	}
	start := t.ring.Tail()
	if h := t.ring.Head(); h-start > uint64(limit) {
		start = h - uint64(limit)
	}
	return t.read(start, limit)
}

// SeqOfID returns the Seq of the newest message of topic name with id
// id that its ring holds.
func (e *Engine) SeqOfID(name, id string) (seq uint64, ok bool) {
	t := e.lookup(name)
	if t == nil {
		return 0, false
	}
	s, ok := t.ring.Find(func(m *Message) bool { return m.ID == id })
	if !ok {
		return 0, false
	}
	m, ok, _ := t.ring.Get(s)
	if !ok {
		return 0, false
	}
	return m.Seq, true
}

// lookup returns topic name, or the pattern topic of the pattern name
// that subscribers hold (patindex.go), the pattern first when both exist;
// nil when there is none.
func (e *Engine) lookup(name string) *topic {
	e.topicsMu.RLock()
	defer e.topicsMu.RUnlock()
	if IsPattern(name) {
		// A topic of that name (a "*" in a published topic's name is a
		// plain character) has no subscriber of its own: a subscriber's
		// name with a "*" is the pattern, whose ring holds the topic's
		// messages too.
		if t := e.pats.byName[name]; t != nil {
			return t
		}
	}
	if t := e.topics[name]; t != nil {
		return t
	}
	return e.pats.byName[name]
}

// read returns up to limit messages from ring sequence start on.
func (t *topic) read(start uint64, limit int) HistoryRead {
	r := t.ring
	hr := HistoryRead{Known: true}
	tail, head := r.Tail(), r.Head()
	hr.Lost = tail > t.first
	if m, ok, _ := r.Get(tail); ok {
		hr.Oldest = m.Seq
	}
	s := max(start, tail)
	for ; s < head && len(hr.Messages) < limit; s++ {
		m, ok, lapped := r.Get(s)
		if lapped {
			// Dropped while we read: what follows may be too.
			hr.Lost = true
			s = max(s, r.Tail()-1)
			continue
		}
		if ok {
			hr.Messages = append(hr.Messages, m)
		}
	}
	hr.More = s < r.Head()
	return hr
}

// RemoteAddr is the address of the subscriber's client (nil before
// Serve). Safe from any goroutine once Serve has registered it.
func (sub *Subscriber) RemoteAddr() net.Addr {
	if sub.conn == nil {
		return nil
	}
	return sub.conn.RemoteAddr()
}

// Presence returns the subscribers of topic name (every subscriber when
// all is true) whose id is above after, at most limit of them, in id
// order; more says that others follow, total how many subscribers the
// topic (or the engine) has. The Subscribers returned are live objects:
// their exported fields are read-only once Serve registered them (State
// belongs to the hooks; see lua's SubscriberKeys). A subscriber may have
// left by the time the caller reads it.
func (e *Engine) Presence(name string, all bool, after uint64, limit int) (page []*Subscriber, more bool, total int64) {
	var t *topic
	if all {
		total = e.counters.subscribers.Load()
	} else {
		if t = e.lookup(name); t == nil {
			return nil, false, 0
		}
		total = t.subscribers.Load()
	}
	sel := &lowestIDs{limit: limit}
	for _, s := range e.shards {
		s.mu.Lock()
		list := s.subs
		if t != nil {
			list = nil
			if st := s.byTopic[t]; st != nil {
				list = st.subs
			}
		}
		for _, sub := range list {
			if sub.ID > after {
				sel.offer(sub)
			}
		}
		s.mu.Unlock()
	}
	page = sel.subs
	slices.SortFunc(page, func(a, b *Subscriber) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return page, sel.seen > limit, total
}

// lowestIDs keeps the limit subscribers with the lowest ids offered: a
// max-heap on ID, so an id above the largest kept costs one comparison.
type lowestIDs struct {
	subs  []*Subscriber
	limit int
	seen  int // subscribers offered
}

func (h *lowestIDs) offer(sub *Subscriber) {
	h.seen++
	switch {
	case h.limit <= 0:
	case len(h.subs) < h.limit:
		heap.Push(h, sub)
	case sub.ID < h.subs[0].ID:
		h.subs[0] = sub
		heap.Fix(h, 0)
	}
}

func (h *lowestIDs) Len() int           { return len(h.subs) }
func (h *lowestIDs) Less(i, j int) bool { return h.subs[i].ID > h.subs[j].ID }
func (h *lowestIDs) Swap(i, j int)      { h.subs[i], h.subs[j] = h.subs[j], h.subs[i] }
func (h *lowestIDs) Push(x any)         { h.subs = append(h.subs, x.(*Subscriber)) }
func (h *lowestIDs) Pop() any {
	n := len(h.subs) - 1
	x := h.subs[n]
	h.subs = h.subs[:n]
	return x
}

// Disconnect ends the stream of subscriber id with ": disconnected" and,
// when retry is not negative, a retry hint of retry. It reports whether
// this engine has that subscriber. The stream ends on the subscriber's
// goroutine (the unsubscribe hook runs there), shortly after this returns.
func (e *Engine) Disconnect(id uint64, retry time.Duration) bool {
	if id == 0 {
		return false
	}
	s := e.shards[id%uint64(len(e.shards))] // as Assign placed it
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sub := range s.subs {
		if sub.ID == id {
			s.disconnect(sub, retry)
			return true
		}
	}
	return false
}

// DisconnectTopic ends the streams of every subscriber of topic name (a
// subscriber of several topics included) as Disconnect does, and returns
// how many it told to end.
func (e *Engine) DisconnectTopic(name string, retry time.Duration) int {
	t := e.lookup(name)
	if t == nil {
		return 0
	}
	n := 0
	for _, s := range e.shards {
		s.mu.Lock()
		if st := s.byTopic[t]; st != nil {
			for _, sub := range st.subs {
				s.disconnect(sub, retry)
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}

// disconnect hands sub to its goroutine to end its stream, as shutdown
// does. s.mu must be held.
func (s *shard) disconnect(sub *Subscriber, retry time.Duration) {
	ms := int64(-1)
	if retry >= 0 {
		ms = retry.Milliseconds()
	}
	sub.goodbyeRetry.Store(ms) // before the kick bit that makes finish read it
	// The bit before the CAS, as in shutdown: an owner (stSelf: its
	// goroutine, mid slow write or start) that makes the CAS fail sees
	// the bit as it lets go.
	sub.kick.Or(kickDisconnect)
	if sub.state.CompareAndSwap(stIdle, stSelf) {
		sub.wake()
	} else if !sub.polled {
		_ = sub.conn.SetReadDeadline(aLongTimeAgo) // in case it is back in Read
	}
}

// appendGoodbye appends the frame that ends a disconnected stream.
func appendGoodbye(dst []byte, retryMS int64) []byte {
	if retryMS < 0 {
		return AppendComment(dst, "disconnected")
	}
	return AppendRetry(dst, "disconnected", retryMS)
}
