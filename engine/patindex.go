package engine

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"slices"
	"strings"
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
// Locking. patterns.byName is guarded by Engine.topicsMu (like
// Engine.topics); patterns.index is read by publishes under Engine.pubMu
// and changed only with both topicsMu (write) and pubMu held, in that
// order: making and removing a pattern topic are the only places that take
// pubMu under topicsMu (locksordering.txt). Making one walks the topic map
// for the matching topics under topicsMu's read lock (publishes to
// existing topics go on; only making a topic waits), then takes the write
// lock and walks again only if a topic was made in between
// (Engine.topicsMade). Holding topicsMu's write lock while the ring is
// filled means no topic is made meanwhile, so every topic that could have
// messages is among those matched; holding pubMu means none of them
// moves, and every later publish finds the pattern in the index. Cost of
// making a pattern topic: O(topics) name matches under the read lock, and
// under both locks O(matching topics) head reads and a sort, and
// O(Capacity × log Capacity) to merge; removing it: O(what its ring
// holds), under both.

// patterns is the engine's pattern topics.
type patterns struct {
	byName map[string]*topic // guarded by Engine.topicsMu; nil until the first pattern
	index  patIndex          // see the locking note above
	// gen counts changes of index (0: never a pattern); a topic's cached
	// matches (topic.pats) hold while its patsGen equals it. Changed with
	// index, read under Engine.pubMu.
	gen uint64
	// scratch is backfill's buffer, kept between patterns (under pubMu;
	// cleared after use so it holds no topic).
	scratch []seqCursor
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
// with release.
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
	// Walk the topic map under the read lock: publishes to existing
	// topics go on meanwhile; only making a topic waits.
	e.topicsMu.RLock()
	made := e.topicsMade
	matched := e.matchTopics(p, nil)
	e.topicsMu.RUnlock()

	e.topicsMu.Lock()
	defer e.topicsMu.Unlock()
	if t = e.pats.byName[p.src]; t != nil {
		t.refs.Add(1)
		return t
	}
	if e.topicsMade != made {
		// A topic was made since: walk again, now that none can be. (A
		// topic removed since had an empty ring: the backfill skips it.)
		matched = e.matchTopics(p, matched[:0])
	}
	t = e.newTopic(p.src)
	t.pattern = true
	t.refs.Store(1)
	if e.pats.byName == nil {
		e.pats.byName = make(map[string]*topic)
	}
	e.pats.byName[p.src] = t
	e.pubMu.Lock()
	e.backfill(t, matched)
	e.pats.index.add(p, t)
	e.pats.gen++
	e.pubMu.Unlock()
	return t
}

// matchTopics appends to dst the topics p matches. topicsMu must be held
// (read or write).
func (e *Engine) matchTopics(p Pattern, dst []*topic) []*topic {
	for _, t := range e.topics {
		if p.Match(t.name) {
			dst = append(dst, t)
		}
	}
	return dst
}

// releasePattern is release for a pattern topic: the last reference
// removes it from the index and empties its ring.
func (e *Engine) releasePattern(t *topic) {
	if t.refs.Add(-1) != 0 {
		return
	}
	e.topicsMu.Lock()
	defer e.topicsMu.Unlock()
	if t.refs.Load() != 0 || e.pats.byName[t.name] != t {
		return // taken again meanwhile (acquire re-checks under the lock)
	}
	delete(e.pats.byName, t.name)
	e.pubMu.Lock()
	e.pats.index.remove(MustPattern(t.name))
	e.pats.gen++
	for {
		m, ok := t.ring.DropOldest()
		if !ok {
			break
		}
		e.history.leaveRing(m, t)
	}
	e.pubMu.Unlock()
}

// backfill fills pattern topic t's empty ring with the messages of the
// topics its pattern matches (matched: every topic that could hold any),
// merged by Seq: the newest Capacity of them, from the
// newest point where every matching topic still holds all its messages
// (a topic whose ring lost messages, lapped or dropped for the budget,
// holds none older than its oldest; messages of other topics older than
// that would replay with a hole). topicsMu (write) and pubMu must be held.
func (e *Engine) backfill(t *topic, matched []*topic) {
	h := seqHeap{items: e.pats.scratch[:0]}
	defer func() {
		clear(h.items[:cap(h.items)]) // keep the buffer, not the topics
		e.pats.scratch = h.items[:0]
	}()
	var floor uint64 // messages with Seq below it are left out
	for _, src := range matched {
		if src.ring.Len() == 0 {
			continue
		}
		head, tail := src.ring.Head(), src.ring.Tail()
		if tail > 0 {
			if m, ok, _ := src.ring.Get(tail); ok {
				floor = max(floor, m.Seq)
			}
		}
		c := seqCursor{r: src, next: head - 1, tail: tail}
		c.load()
		h.items = append(h.items, c)
	}
	if len(h.items) == 0 {
		return
	}
	// A topic whose newest message is older than Capacity distinct
	// messages at the heads of other topics has nothing among the newest
	// Capacity: only the topics with those heads take part in the merge
	// (a message at the head of several topics counts once).
	cut := false // older messages were left out
	if len(h.items) > e.cfg.Capacity {
		slices.SortFunc(h.items, func(a, b seqCursor) int { return cmp.Compare(b.m.Seq, a.m.Seq) })
		distinct, keep := 0, len(h.items)
		for i := range h.items {
			if i == 0 || h.items[i].m != h.items[i-1].m {
				if distinct == e.cfg.Capacity {
					keep = i
					break
				}
				distinct++
			}
		}
		if keep < len(h.items) {
			h.items, cut = h.items[:keep], true
		}
	}
	heap.Init(&h)
	picked := make([]*Message, 0, min(e.cfg.Capacity, 64))
	for len(h.items) > 0 {
		c := &h.items[0]
		m := c.m
		if m.Seq < floor || len(picked) == e.cfg.Capacity && picked[len(picked)-1] != m {
			cut = true
			break
		}
		if n := len(picked); n == 0 || picked[n-1] != m { // a message in two matching topics goes in once
			picked = append(picked, m)
		}
		if c.next == c.tail {
			heap.Pop(&h)
			continue
		}
		c.next--
		c.load()
		heap.Fix(&h, 0)
	}
	t.lossy = cut || floor > 0
	for i := len(picked) - 1; i >= 0; i-- {
		m := picked[i]
		t.ring.Append(m) // the ring is empty and holds Capacity: nothing is overwritten
		e.history.joinRing(m, t)
	}
}

// seqCursor reads one topic's ring from the newest message back.
type seqCursor struct {
	r          *topic
	next, tail uint64 // ring sequence of m; the oldest held
	m          *Message
}

func (c *seqCursor) load() {
	c.m, _, _ = c.r.ring.Get(c.next) // under pubMu nothing moves: present
}

// seqHeap is a max-heap on the Seq of each cursor's message (ties: the
// same message through two topics, or local messages, which no wildcard
// reads; the pointer order keeps one message's copies together).
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
