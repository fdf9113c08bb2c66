package engine

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Pattern subscriptions (issue 17, "Subscribing to a pattern").
//
// A subscriber may name a pattern ("sports/*", "sports/**", see Pattern)
// instead of a topic. Each distinct pattern that some subscriber holds is
// a topic of its own, a pattern topic: it has a ring like any topic, and a
// publish appends the message to the ring of every pattern topic one of
// its topics matches, under the same lock and in the same pass as to the
// topics' own rings. Everything downstream is then the exact-topic path,
// unchanged: the shard's index by topic, dirty marking, the lowest
// cursors, the merge of a subscriber's rings by Seq (a message reached
// through several of its subscriptions is the same *Message, written
// once), lag, and replay by Last-Event-ID, which finds the id in the
// pattern's ring, where the matching topics' messages already are merged
// in publish order.
//
// Finding the pattern topics of a publish costs O(patterns that match)
// plus one map lookup per segment of the topic name along the trie's
// literal and "*" branches (patIndex), never O(patterns held): a publish
// to a topic no pattern matches walks one map lookup. Patterns "*" and
// "**" alone (every topic) sit beside the trie.
//
// A pattern topic is made by its first subscriber (acquirePattern) and
// removed when its last one leaves (releasePattern). When it is made, its
// ring is filled with what the matching topics' rings hold, merged by Seq
// (the newest Capacity messages, from the point where every matching
// topic still holds all of its messages: backfill), so that a subscriber
// coming back with Last-Event-ID after the pattern's last subscriber left
// replays as if the pattern had been there all along. Its ring holds
// Capacity messages of all matching topics together: a pattern reader
// lags, and its replay reaches back, Capacity messages across them.
//
// Pattern topics are not in Engine.topics: they do not count towards
// MaxTopics, are never made by a publish, and are held only while
// subscribed (bounded by the subscribers and the transport's topics per
// request). The history budget counts each ring entry of a pattern, as of
// any topic (heldSize's per-ring overhead), and drops messages from pattern
// rings too (held.more lists them).
//
// Locking. patterns.byName and patterns.making are guarded by
// Engine.topicsMu (like Engine.topics); patterns.index is read by
// publishes under Engine.pubMu and changed only with both topicsMu
// (write) and pubMu held, in that order: making and removing a pattern
// topic are the only places that take pubMu under topicsMu
// (locksordering.txt), for the index change alone.
//
// Making one never holds a lock that publishes wait for while it reads
// the matching topics (issue 13: a client must not stall every
// publisher). In order (acquirePattern, backfill):
//  1. Under topicsMu (write) and pubMu: the pattern enters making and the
//     index, and upTo is the last Seq given. From then on a publish that
//     matches appends to its ring (which starts at sequence Capacity,
//     ring.Skip, so that the backfill fits below), and the messages up
//     to upTo are those it lacks. O(pattern segments).
//  2. Under topicsMu's read lock: the topic map is copied, a pointer per
//     topic (publishes go on; a topic being made waits that long).
//  3. No lock: the copy is matched against the pattern, and the matching
//     rings are read lock-free from their newest message with Seq up to
//     upTo back, and merged (pickBackfill).
//  4. Under pubMu, fillChunk messages at a time: the picked messages go
//     into the ring below the live ones, newest first (ring.Prepend), each
//     counted in the history (joinRing) while the history still holds it
//     and the ring has room.
//  5. Under topicsMu (write): the pattern moves from making to byName.
//     Others asking for it meanwhile wait for that (making.done).
// Removing one takes it out of byName and the index under both locks,
// then empties its ring fillChunk entries per hold of pubMu. Holds of
// either lock are timed for tests (patterns.onHold): see
// TestPatternMakeHoldsLocksBriefly.

// patterns is the engine's pattern topics.
type patterns struct {
	byName map[string]*topic // guarded by Engine.topicsMu; nil until the first pattern
	// making is the patterns being made: in the index, filling, not yet
	// in byName. Guarded by Engine.topicsMu.
	making map[string]*making
	index  patIndex // see the locking note above
	// gen counts changes of index (0: never a pattern); a topic's cached
	// matches (topic.pats) hold while its patsGen equals it. Changed with
	// index, read under Engine.pubMu.
	gen uint64
	// For tests, set before the engine is used: duringPick is called by
	// backfill once it has found where to start reading each matching
	// ring and before it merges them, holding no lock;
	// onHold is told how long making or removing a pattern held a lock
	// that publishes wait for (pubMu, topicsMu's write lock), each time.
	duringPick func()
	onHold     func(time.Duration)
}

// lockHeld takes mu (pubMu, or topicsMu's write lock) for making or
// removing a pattern; unlockHeld releases it and tells patterns.onHold
// how long it was held.
func (e *Engine) lockHeld(mu sync.Locker) time.Time {
	mu.Lock()
	if e.pats.onHold == nil {
		return time.Time{}
	}
	return time.Now()
}

func (e *Engine) unlockHeld(mu sync.Locker, since time.Time) {
	if e.pats.onHold == nil {
		mu.Unlock()
		return
	}
	d := time.Since(since)
	mu.Unlock()
	e.pats.onHold(d)
}

// patIndex finds the pattern topics that match a topic name: a trie by
// segment.
type patIndex struct {
	root patNode
	all  []*topic // "*" and "**" alone: every topic but internal ones
}

type patNode struct {
	lit  map[string]*patNode // children by literal segment
	star *patNode            // the child for a "*" segment
	here *topic              // the pattern that ends at this node
	rest *topic              // the pattern "<this node's path>/**"
}

// matches appends to dst the pattern topics whose pattern matches topic
// name, each once (dst may already hold some: they are not added again).
// Engine.pubMu must be held. It allocates only when dst grows.
func (x *patIndex) matches(dst []*topic, name string) []*topic {
	if strings.HasPrefix(name, InternalPrefix) {
		return dst // no wildcard matches an internal topic
	}
	for _, t := range x.all {
		dst = addTopic(dst, t)
	}
	return x.root.match(dst, name)
}

// match walks n with name the rest of the topic (at least one segment,
// possibly empty).
func (n *patNode) match(dst []*topic, name string) []*topic {
	if n.rest != nil {
		dst = addTopic(dst, n.rest) // "**" takes the one or more segments left
	}
	seg, tail, more := strings.Cut(name, "/")
	for _, c := range [2]*patNode{n.lit[seg], n.star} {
		switch {
		case c == nil:
		case !more:
			if c.here != nil {
				dst = addTopic(dst, c.here)
			}
		default:
			dst = c.match(dst, tail)
		}
	}
	return dst
}

func addTopic(dst []*topic, t *topic) []*topic {
	if slices.Contains(dst, t) {
		return dst
	}
	return append(dst, t)
}

// add indexes pattern p (wild) as t.
func (x *patIndex) add(p Pattern, t *topic) {
	if p.all {
		x.all = append(x.all, t)
		return
	}
	n := &x.root
	for rest := p.src; ; {
		seg, tail, more := strings.Cut(rest, "/")
		if seg == "**" {
			n.rest = t // ParsePattern: only as the last segment
			return
		}
		n = n.child(seg)
		if !more {
			n.here = t
			return
		}
		rest = tail
	}
}

func (n *patNode) child(seg string) *patNode {
	if seg == "*" {
		if n.star == nil {
			n.star = &patNode{}
		}
		return n.star
	}
	c := n.lit[seg]
	if c == nil {
		if n.lit == nil {
			n.lit = make(map[string]*patNode)
		}
		c = &patNode{}
		n.lit[seg] = c
	}
	return c
}

// remove takes pattern p out of the index, and the nodes it leaves empty.
func (x *patIndex) remove(p Pattern) {
	if p.all {
		x.all = slices.DeleteFunc(x.all, func(t *topic) bool { return t.name == p.src })
		return
	}
	x.root.remove(p.src)
}

// remove takes the pattern rest (below n) out and reports whether n is
// left empty.
func (n *patNode) remove(rest string) bool {
	seg, tail, more := strings.Cut(rest, "/")
	switch {
	case seg == "**":
		n.rest = nil
	default:
		c := n.star
		if seg != "*" {
			c = n.lit[seg]
		}
		if c == nil {
			return false
		}
		var empty bool
		if more {
			empty = c.remove(tail)
		} else {
			c.here = nil
			empty = c.empty()
		}
		if empty {
			if seg == "*" {
				n.star = nil
			} else {
				delete(n.lit, seg)
			}
		}
	}
	return n.empty()
}

func (n *patNode) empty() bool {
	return n.here == nil && n.rest == nil && n.star == nil && len(n.lit) == 0
}

// MaxPatternsPerSubscriber bounds the wildcard patterns one subscriber may
// name (the transport refuses more): each costs a ring the publishes that
// match it append to, and making a new one walks every topic.
const MaxPatternsPerSubscriber = 8

// ParseSubscription parses a topic a subscriber named: a topic name, or a
// pattern (Pattern's syntax). Stricter than ParsePattern, which reads JWT
// claims: in a pattern with a wildcard, no segment may be empty ("a//*",
// "/*", "a/*/"). The error names s.
func ParseSubscription(s string) (Pattern, error) {
	p, err := ParsePattern(s)
	if err == nil && p.wild && !p.all && slices.Contains(strings.Split(s, "/"), "") {
		err = errors.Join(ErrPattern, errors.New("a pattern must not have an empty segment"))
	}
	if err != nil {
		return Pattern{}, fmt.Errorf("invalid topic pattern %q: %s", s, strings.ReplaceAll(strings.TrimPrefix(err.Error(), ErrPattern.Error()+"\n"), "\n", ": "))
	}
	return p, nil
}

// IsPattern says whether a subscriber's topic s is a wildcard pattern (it
// has a "*"); ParseSubscription says whether it is a valid one.
func IsPattern(s string) bool { return strings.Contains(s, "*") }

// acquireSub is acquire for a subscriber's topic: a pattern topic for a
// wildcard pattern (made on first use), else the topic. An invalid
// pattern (the transport refuses them) is read as a topic name.
func (e *Engine) acquireSub(name string) *topic {
	if IsPattern(name) {
		if p, err := ParseSubscription(name); err == nil && p.wild {
			return e.acquirePattern(p)
		}
	}
	return e.acquire(name)
}

// acquirePattern returns p's pattern topic, made and filled (backfill) on
// first use, with one more reference held by the caller, who gives it back
// with release. Others asking for p while it is being made wait for it.
func (e *Engine) acquirePattern(p Pattern) *topic {
	e.topicsMu.RLock()
	t := e.pats.byName[p.src]
	if t != nil {
		t.refs.Add(1)
	}
	e.topicsMu.RUnlock()
	if t != nil {
		return t
	}
	held := e.lockHeld(&e.topicsMu)
	if t = e.pats.byName[p.src]; t != nil {
		t.refs.Add(1)
		e.unlockHeld(&e.topicsMu, held)
		return t
	}
	if mk := e.pats.making[p.src]; mk != nil {
		mk.t.refs.Add(1)
		e.unlockHeld(&e.topicsMu, held)
		<-mk.done
		return mk.t
	}
	t = e.newTopic(p.src)
	t.pattern = true
	t.refs.Store(1)
	// Room below the ring's first live message for the backfill.
	t.base = uint64(e.cfg.Capacity)
	t.ring.Skip(t.base)
	mk := &making{t: t, done: make(chan struct{})}
	if e.pats.making == nil {
		e.pats.making = make(map[string]*making)
	}
	e.pats.making[p.src] = mk
	pub := e.lockHeld(&e.pubMu)
	e.pats.index.add(p, t)
	e.pats.gen++
	upTo := e.seq // every later publish finds t in the index
	e.unlockHeld(&e.pubMu, pub)
	e.unlockHeld(&e.topicsMu, held)

	e.backfill(t, p, upTo)

	held = e.lockHeld(&e.topicsMu)
	delete(e.pats.making, p.src)
	if e.pats.byName == nil {
		e.pats.byName = make(map[string]*topic)
	}
	e.pats.byName[p.src] = t
	e.unlockHeld(&e.topicsMu, held)
	close(mk.done)
	return t
}

// making is a pattern topic being made: in the index, not yet in byName.
type making struct {
	t    *topic
	done chan struct{} // closed once t is filled and in byName
}

// fillChunk is how many ring entries making or removing a pattern topic
// handles per hold of the publish lock.
const fillChunk = 64

// releasePattern is release for a pattern topic: the last reference
// removes it from the map and the index, then empties its ring.
func (e *Engine) releasePattern(t *topic) {
	if t.refs.Add(-1) != 0 {
		return
	}
	held := e.lockHeld(&e.topicsMu)
	if t.refs.Load() != 0 || e.pats.byName[t.name] != t {
		e.unlockHeld(&e.topicsMu, held)
		return // taken again meanwhile (acquire re-checks under the lock)
	}
	delete(e.pats.byName, t.name)
	pub := e.lockHeld(&e.pubMu)
	e.pats.index.remove(MustPattern(t.name))
	e.pats.gen++
	e.unlockHeld(&e.pubMu, pub)
	e.unlockHeld(&e.topicsMu, held)
	// No publish appends to the ring any more; the history budget may
	// still drop from it (held.more), under pubMu as this is.
	for emptied := false; !emptied; {
		pub := e.lockHeld(&e.pubMu)
		for range fillChunk {
			m, ok := t.ring.DropOldest()
			if !ok {
				emptied = true
				break
			}
			e.history.leaveRing(m, t)
		}
		e.unlockHeld(&e.pubMu, pub)
	}
}

// backfill fills pattern topic t, already in the index (every message
// with Seq above upTo that its pattern p matches is appended to its ring
// by its publish), with the messages up to upTo of the topics p matches:
// merged by Seq, the newest that fit in the ring beside what publishes
// appended meanwhile, from the newest point where every matching topic
// still holds all its messages (a topic whose ring lost messages, lapped
// or dropped for the budget, holds none older than its oldest; messages
// of other topics older than that would replay with a hole). Nothing is
// in both parts: a publish gives the next Seq under pubMu, where upTo was
// read and t put in the index. Nothing is in neither: a message up to
// upTo went to a topic that was in the map before its publish and stays
// there while its ring holds anything.
//
// The costly part takes no lock: the topics are copied from the map under
// its read lock (a pointer each), matched and their rings read lock-free
// (pickBackfill). Then the picked messages go into the ring below what
// publishes appended, newest first, fillChunk of them per hold of the
// publish lock, each only while the history still holds it (the budget
// drops oldest first, so once one is gone so are the older ones, and the
// ring never gets a hole) and while the ring has room.
func (e *Engine) backfill(t *topic, p Pattern, upTo uint64) {
	fb := fillBufs.Get().(*fillBuf)
	defer fb.put()
	e.copyTopics(fb)
	lossy := pickBackfill(fb, p, upTo, e.cfg.Capacity, e.pats.duringPick)
	put := e.fill(t, fb.picked)
	t.first = uint64(e.cfg.Capacity) - uint64(put)
	t.lossy = lossy || put < len(fb.picked)
}

// fill puts picked (newest first) into pattern topic t's ring below what
// it holds, fillChunk messages per hold of the publish lock, and returns
// how many went in: it stops at the first that the history no longer
// holds (the budget drops oldest first, so the older ones are gone too),
// or when the ring is full. Each entry is counted in the history budget,
// which drops the oldest messages to make room for it as for a publish's.
func (e *Engine) fill(t *topic, picked []*Message) (put int) {
	var emptied []*topic
	for put < len(picked) {
		pub := e.lockHeld(&e.pubMu)
		n := put
		for ; n < len(picked) && n-put < fillChunk; n++ {
			m := picked[n]
			// The entry counts in the history budget: make room for it
			// first, as a publish does (the oldest go, m perhaps).
			emptied = e.history.trim(ringEntryOverhead, emptied)
			if m.held.rings <= 0 || !t.ring.Prepend(m) {
				break // gone from the history, or no room left
			}
			e.history.joinRing(m, t)
		}
		e.unlockHeld(&e.pubMu, pub)
		for _, src := range emptied {
			e.dropIfUnused(src)
		}
		emptied = emptied[:0]
		stopped := n-put < fillChunk && n < len(picked)
		put = n
		if stopped {
			break
		}
	}
	return put
}

// fillBuf is backfill's buffers, kept between patterns (fillBufs).
type fillBuf struct {
	topics  []*topic
	cursors []seqCursor
	picked  []*Message // newest first
}

var fillBufs = sync.Pool{New: func() any { return new(fillBuf) }}

// put gives fb back to fillBufs, holding no topic or message.
func (fb *fillBuf) put() {
	clear(fb.topics[:cap(fb.topics)])
	clear(fb.cursors[:cap(fb.cursors)])
	clear(fb.picked[:cap(fb.picked)])
	fb.topics, fb.cursors, fb.picked = fb.topics[:0], fb.cursors[:0], fb.picked[:0]
	fillBufs.Put(fb)
}

// copyTopics puts every topic of the map in fb.topics: a pointer copy
// per topic under the map's read lock.
func (e *Engine) copyTopics(fb *fillBuf) {
	e.topicsMu.RLock()
	defer e.topicsMu.RUnlock()
	for _, src := range e.topics {
		fb.topics = append(fb.topics, src)
	}
}

// pickBackfill puts in fb.picked, newest first, the newest Capacity
// messages with Seq up to upTo of the topics in fb.topics that p
// matches, each once, from the newest point where every one of them
// still holds all its messages; lossy when it left older messages out.
// It takes no lock: the rings move meanwhile, and a ring found lapped
// or dropped below a message counts as having lost the messages older
// than it. A ring holding no message up to upTo counts as whole: if it
// lost some, they went either to the budget, which drops oldest first
// (every message older than them is gone from the history, and backfill
// stops at the first one gone), or because more than Capacity messages
// published after upTo lapped it, and those are in the pattern's ring,
// which then has no room for the backfill.
// during, if not nil, is called between the two (tests).
func pickBackfill(fb *fillBuf, p Pattern, upTo uint64, capacity int, during func()) (lossy bool) {
	h := seqHeap{items: fb.cursors[:0]}
	defer func() { fb.cursors = h.items[:0] }()
	for _, src := range fb.topics {
		if !p.Match(src.name) {
			continue
		}
		if c := (seqCursor{r: src}); c.start(upTo) {
			h.items = append(h.items, c)
		}
	}
	if during != nil {
		during()
	}
	if len(h.items) == 0 {
		return false
	}
	// A topic whose newest message is older than Capacity distinct
	// messages at the heads of other topics has nothing among the newest
	// Capacity: only the topics with those heads take part in the merge
	// (a message at the head of several topics counts once).
	if len(h.items) > capacity {
		slices.SortFunc(h.items, func(a, b seqCursor) int { return cmp.Compare(b.m.Seq, a.m.Seq) })
		distinct, keep := 0, len(h.items)
		for i := range h.items {
			if i == 0 || h.items[i].m != h.items[i-1].m {
				if distinct == capacity {
					keep = i
					break
				}
				distinct++
			}
		}
		if keep < len(h.items) {
			h.items, lossy = h.items[:keep], true
		}
	}
	heap.Init(&h)
	var floor uint64 // messages with Seq below it are left out
	for len(h.items) > 0 {
		c := &h.items[0]
		m := c.m
		if m.Seq < floor || len(fb.picked) == capacity && fb.picked[len(fb.picked)-1] != m {
			return true
		}
		if n := len(fb.picked); n == 0 || fb.picked[n-1] != m { // a message in two matching topics goes in once
			fb.picked = append(fb.picked, m)
		}
		if c.next == 0 {
			heap.Pop(&h) // read down to its first message: it lost nothing
			continue
		}
		next, ok, _ := c.r.ring.Get(c.next - 1)
		if !ok { // lapped or dropped: older messages of its topic may be gone
			floor = max(floor, m.Seq)
			heap.Pop(&h)
			continue
		}
		c.next, c.m = c.next-1, next
		heap.Fix(&h, 0)
	}
	return lossy || floor > 0
}

// seqCursor reads one topic's ring from the newest message back,
// lock-free.
type seqCursor struct {
	r    *topic
	next uint64 // ring sequence of m
	m    *Message
}

// start points c at the newest message with Seq up to upTo in its ring
// and reports whether there is one still held.
func (c *seqCursor) start(upTo uint64) bool {
	r := c.r.ring
	for s := r.Head(); s > 0; {
		s--
		m, ok, _ := r.Get(s)
		if !ok {
			return false // lapped or dropped: see pickBackfill
		}
		if m.Seq <= upTo {
			c.next, c.m = s, m
			return true
		}
	}
	return false
}

// seqHeap is a max-heap on the Seq of each cursor's message (ties: the
// same message through two topics, or local messages, which no wildcard
// reads).
type seqHeap struct{ items []seqCursor }

func (h *seqHeap) Len() int { return len(h.items) }
func (h *seqHeap) Less(i, j int) bool {
	a, b := h.items[i].m, h.items[j].m
	return a.Seq > b.Seq
}
func (h *seqHeap) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *seqHeap) Push(x any)    { h.items = append(h.items, x.(seqCursor)) }
func (h *seqHeap) Pop() any {
	n := len(h.items) - 1
	x := h.items[n]
	h.items = h.items[:n]
	return x
}

// withPatterns returns topics followed by the pattern topics that a
// message published to them goes to as well, each once. This is the one
// place a publish path finds its pattern readers (a batch publish calls
// it per message, or once per topic set). Engine.pubMu must be held; dst
// is reused when it has room.
//
// Each topic keeps the pattern topics that match it (topic.pats), valid
// while the index has not changed since (patterns.gen, advanced by every
// pattern made or removed): a publish to a topic walks the trie only the
// first time after a change, and otherwise costs one comparison, so that
// patterns unrelated to a topic cost its publishes nothing
// (BenchmarkPublishExactWithPatterns).
func (e *Engine) withPatterns(dst, topics []*topic) []*topic {
	dst = append(dst[:0], topics...)
	if e.pats.gen == 0 {
		return dst // no pattern was ever subscribed
	}
	for _, t := range topics {
		if t.patsGen != e.pats.gen {
			t.pats, t.patsGen = e.pats.index.matches(t.pats[:0], t.name), e.pats.gen
		}
		for _, p := range t.pats {
			dst = addTopic(dst, p)
		}
	}
	return dst
}

// joinRing counts that m, already held, is now in pattern topic t's ring
// too (backfill). pubMu must be held.
func (h *history) joinRing(m *Message, t *topic) {
	if m.held.rings <= 0 {
		return // never counted (a test appending to a ring by hand)
	}
	m.held.rings++
	m.held.more = append(m.held.more, t)
	m.held.size += ringEntryOverhead
	h.bytes.Add(ringEntryOverhead)
}

// leaveRing counts that m left pattern topic t's ring, which is being
// emptied as the pattern goes: m leaves the history once no ring holds
// it. pubMu must be held.
func (h *history) leaveRing(m *Message, t *topic) {
	if m.held.rings <= 0 {
		return
	}
	if i := slices.Index(m.held.more, t); i >= 0 {
		m.held.more = slices.Delete(m.held.more, i, i+1)
	}
	m.held.size -= ringEntryOverhead
	h.bytes.Add(-ringEntryOverhead)
	if m.held.rings--; m.held.rings == 0 {
		h.unlink(m)
	}
}
