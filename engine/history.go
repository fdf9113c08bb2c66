package engine

import (
	"errors"
	"sync/atomic"
	"unsafe"
)

// The history budget (Config.MaxHistoryBytes, --max-history-bytes).
//
// Rings keep history for replay whether anyone subscribes or not, and
// count it in messages: without a bound in bytes, MaxTopics × Capacity
// messages of the largest body is far more memory than a server has. The
// engine therefore keeps every message held by some ring on one list, in
// publish order, with the bytes it holds (heldSize), and after each publish
// drops the oldest messages, whichever topics they are in, until the total
// is back under the budget. A dropped message leaves every ring it was in
// (ring.DropOldest clears the slot, so nothing keeps it alive but a reader
// that is writing it right now); a subscriber whose cursor was on it is
// lapped, and a replay from before it finds a gap, exactly as when a ring
// laps. A topic emptied this way that nobody holds is removed, so that
// MaxTopics does not fill with topics that have nothing left.
//
// Why the oldest message on the list is the oldest in each of its rings:
// a ring holds its messages in publish order, and a message older than m
// still in one of m's rings would be held, so on the list before m.
//
// Everything here runs under Engine.pubMu, the rings' single writer; the
// totals are atomics only so that Stats can read them.

// DefaultMaxHistoryBytes is Config.MaxHistoryBytes's default: 256 MiB.
const DefaultMaxHistoryBytes = 256 << 20

// ErrTooLarge is returned by Publish for a message that alone holds more
// than Config.MaxHistoryBytes: no ring could keep it.
var ErrTooLarge = errors.New("engine: message is larger than the history budget")

// Sizer is implemented by a Message.State that holds memory of its own
// (the Lua runtime's pub state: the publisher's request and the keys the
// publish hook added), so that the history budget counts it.
type Sizer interface {
	Size() int
}

// held is a message's place in the history: written only under
// Engine.pubMu, never read by the rings' readers.
type held struct {
	prev, next *Message // history's list, oldest first; nil at the ends and once off the list
	size       int64    // heldSize when it went in
	rings      int32    // rings holding it; off the list at 0
	topic      *topic   // its first topic (every message has one)
	more       []*topic // the others; nil for a single-topic message
}

// history is every message some ring holds, oldest first, and their bytes.
type history struct {
	limit          int64    // the budget; <= 0: none. Immutable after New.
	oldest, newest *Message // guarded by Engine.pubMu
	// bytes and evicted are written under pubMu, read by Stats.
	bytes   atomic.Int64
	evicted atomic.Uint64 // messages dropped for the budget
}

// messageOverhead is what a held message costs besides its strings and
// frame: the Message itself.
const messageOverhead = int64(unsafe.Sizeof(Message{}))

// ringEntryOverhead is what each ring holding a message costs for it: the
// ring's immutable entry (a sequence and a pointer) and the string header
// of the topic's name in Topics.
const ringEntryOverhead = 16 + int64(unsafe.Sizeof(""))

// heldSize is the bytes a published message holds in rings topics: its
// encoded frame (capacity, which is what was allocated), every string
// field, its state when that says, and the fixed costs.
func heldSize(m *Message, rings int) int64 {
	n := messageOverhead + int64(cap(m.Frame)+len(m.ID)+len(m.Event)+len(m.Data))
	for _, c := range m.Comments {
		n += int64(len(c)) + int64(unsafe.Sizeof(c))
	}
	for _, t := range m.Topics {
		n += int64(len(t))
	}
	if s, ok := m.State.(Sizer); ok {
		n += int64(s.Size())
	}
	return n + int64(rings)*ringEntryOverhead
}

// add puts m, just appended to topics' rings, at the new end, counting
// size bytes (heldSize). pubMu must be held.
func (h *history) add(m *Message, topics []*topic, size int64) {
	m.held = held{prev: h.newest, size: size, rings: int32(len(topics)), topic: topics[0]}
	if len(topics) > 1 {
		m.held.more = append([]*topic(nil), topics[1:]...)
	}
	if h.newest != nil {
		h.newest.held.next = m
	} else {
		h.oldest = m
	}
	h.newest = m
	h.bytes.Add(m.held.size)
}

// overwritten notes that a ring lapped m (its slot went to a newer
// message): m leaves the history once no ring holds it. pubMu must be held.
func (h *history) overwritten(m *Message) {
	if m.held.rings <= 0 {
		return // never counted (a test appending to a ring by hand)
	}
	if m.held.rings--; m.held.rings == 0 {
		h.unlink(m)
	}
}

// unlink takes m off the list and forgets its topics, so that a message
// that left the history keeps nothing else alive. pubMu must be held.
func (h *history) unlink(m *Message) {
	if m.held.prev != nil {
		m.held.prev.held.next = m.held.next
	} else {
		h.oldest = m.held.next
	}
	if m.held.next != nil {
		m.held.next.held.prev = m.held.prev
	} else {
		h.newest = m.held.prev
	}
	h.bytes.Add(-m.held.size)
	// Field by field: clearing the whole struct costs a bulk write barrier.
	m.held.prev, m.held.next, m.held.topic, m.held.more = nil, nil, nil, nil
	m.held.rings, m.held.size = 0, 0
}

// trim drops the oldest messages from every ring they are in until
// another room bytes fit under the limit (the message about to be added:
// it is not on the list yet, so it is never dropped, and a subscriber can
// always read the newest message). It returns emptied with the topics
// whose ring it emptied appended. pubMu must be held.
func (h *history) trim(room int64, emptied []*topic) []*topic {
	for h.limit > 0 && h.bytes.Load()+room > h.limit && h.oldest != nil {
		m := h.oldest
		emptied = dropFrom(m, m.held.topic, emptied)
		for _, t := range m.held.more {
			emptied = dropFrom(m, t, emptied)
		}
		h.unlink(m)
		h.evicted.Add(1)
	}
	return emptied
}

// dropFrom drops m from t's ring if the ring still holds it (it is then
// the ring's oldest; a ring that lapped m does not). pubMu must be held.
func dropFrom(m *Message, t *topic, emptied []*topic) []*topic {
	if v, _, ok := t.ring.Oldest(); !ok || v != m {
		return emptied
	}
	t.ring.DropOldest()
	if t.ring.Len() == 0 {
		emptied = append(emptied, t)
	}
	return emptied
}

// HistoryBytes returns what the rings hold now, as counted against
// Config.MaxHistoryBytes. Safe from any goroutine: one atomic load.
func (e *Engine) HistoryBytes() int64 { return e.history.bytes.Load() }
