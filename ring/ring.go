package ring

import (
	"errors"
	"sync/atomic"
)

// ErrCapacity is returned by New for a capacity that is not a power of two.
var ErrCapacity = errors.New("ring: capacity must be a power of two between 1 and 2^30")

// Ring holds the last Cap() values appended to it, less those its writer
// dropped from the old end (DropOldest).
//
// Memory-ordering argument (compare sync/poolqueue.go):
//
// The writer owns every slot. To publish value v with sequence s it stores
// an immutable *entry{seq: s, val: v} into slots[s&mask] with an atomic
// pointer store, and only then stores head = s+1. Go's atomics are
// sequentially consistent, so a reader that loads head and sees s+1 is
// guaranteed to see, on its later load of slots[s&mask], the entry for s or
// a store made after it. It can never see an older entry or a half-written
// one: an entry is fully built before the pointer to it is stored and is
// never modified afterwards.
//
// The stores made to slots[s&mask] after the entry for s are, in order:
// nil, if the writer drops s (DropOldest, always the oldest value held),
// then the entry for s+Cap (or nil first if that one is dropped too), and
// so on. A slot is only ever cleared while it holds the oldest value, and
// values are dropped in sequence order, so after the entry for s the slot
// holds nothing that belongs to a sequence below s.
//
// So a reader with cursor c does:
//
//	c >= head                      -> nothing new yet
//	slot[c&mask].seq == c          -> the value for c
//	slot[c&mask] nil or .seq > c   -> lapped: c was dropped, or overwritten
//	                                  by the writer going round
//
// A reader that loaded the entry for c before it was dropped may still use
// it: the entry is immutable, and the value leaves the ring (for the
// garbage collector, once no reader holds it) at the nil store, which is
// where the drop takes effect.
//
// floor is a hint for readers that must resynchronise (Tail): the writer
// stores floor = s+1 before it clears the slot of s. It never decides
// whether a value is there; the slot does.
//
// No reader writes to the ring, so readers never contend with each other or
// with the writer beyond sharing cache lines.
type Ring[T any] struct {
	// mask is Cap()-1; immutable after New.
	mask uint64
	// slots[i] is written only by the writer (Append, DropOldest), read by
	// anyone.
	slots []atomic.Pointer[entry[T]]
	// head is the sequence number the next Append will use. Written only by
	// the writer, after the slot store, so a reader that sees head = s+1
	// also sees slot s (see the argument above).
	head atomic.Uint64
	// floor is one past the last sequence DropOldest dropped (0: none).
	// Written only by the writer, before the slot store that drops.
	floor atomic.Uint64
}

// entry is immutable once stored in a slot.
type entry[T any] struct {
	seq uint64
	val T
}

// New returns an empty ring holding up to capacity values.
func New[T any](capacity int) (*Ring[T], error) {
	if capacity < 1 || capacity > 1<<30 || capacity&(capacity-1) != 0 {
		return nil, ErrCapacity
	}
	return &Ring[T]{
		mask:  uint64(capacity - 1),
		slots: make([]atomic.Pointer[entry[T]], capacity),
	}, nil
}

// Cap returns the number of values the ring keeps.
func (r *Ring[T]) Cap() int { return int(r.mask + 1) }

// Head returns the sequence number the next Append will get: values
// [Tail(), Head()) are readable.
func (r *Ring[T]) Head() uint64 { return r.head.Load() }

// Tail returns the oldest sequence number still in the ring. While an
// Append is between its slot store and its head store, or DropOldest
// between its floor store and its slot store, Tail's value may itself have
// just gone; a lapped reader should resume at max(Tail(), cursor+1) and
// expect to be told lapped once more in that case.
func (r *Ring[T]) Tail() uint64 {
	return r.tail(r.head.Load())
}

// tail is Tail for a head already loaded. floor is loaded after head, so
// it may be past that head when drops and appends ran between the loads:
// then nothing of [.., head) is left.
func (r *Ring[T]) tail(h uint64) uint64 {
	t := uint64(0)
	if n := r.mask + 1; h > n {
		t = h - n
	}
	return min(max(t, r.floor.Load()), h)
}

// Len returns how many values the ring holds: Head() - Tail(), from one
// load of head.
func (r *Ring[T]) Len() int {
	h := r.head.Load()
	return int(h - r.tail(h))
}

// Append stores v under the next sequence number and returns it, with the
// value the ring no longer holds because v took its slot (ok false when
// the slot was empty or its value dropped).
// Only one goroutine may call Append and DropOldest at a time.
func (r *Ring[T]) Append(v T) (seq uint64, overwritten T, ok bool) {
	s := r.head.Load() // only the writer stores head, so this is our own value
	old := r.slots[s&r.mask].Swap(&entry[T]{seq: s, val: v})
	r.head.Store(s + 1) // publishes the slot store above to readers
	if old != nil {
		return s, old.val, true
	}
	return s, overwritten, false
}

// DropOldest removes the oldest value from the ring and returns it; ok is
// false when the ring is empty. Readers whose cursor is at that value are
// lapped from then on. The slot no longer points at the value, so the ring
// does not keep it alive.
// Only one goroutine may call Append and DropOldest at a time.
func (r *Ring[T]) DropOldest() (v T, ok bool) {
	h := r.head.Load()
	s := r.tail(h)
	if s == h {
		return v, false
	}
	slot := &r.slots[s&r.mask]
	e := slot.Load()
	r.floor.Store(s + 1) // before the slot: Tail never names a cleared slot as readable for long
	slot.Store(nil)
	return e.val, true
}

// Skip makes an empty ring that was never appended to start at sequence
// seq: Head and Tail return seq, and Prepend has room below it. Only the
// writer may call it, before any reader has the ring.
func (r *Ring[T]) Skip(seq uint64) {
	r.head.Store(seq)
	r.floor.Store(seq)
}

// Prepend stores v under Tail()-1, older than every value held, and
// reports whether it did: not when the ring is full or Tail() is 0. It
// is for filling a ring with older values while the writer appends newer
// ones, before any reader has the ring: a reader told lapped at Tail()-1
// would find a value there afterwards. The caller must not prepend below
// a value DropOldest dropped (it would come back). Only the writer.
func (r *Ring[T]) Prepend(v T) bool {
	h := r.head.Load()
	t := r.tail(h)
	if t == 0 || h-t > r.mask {
		return false
	}
	s := t - 1 // its slot is empty: s+Cap() is not written yet, and nothing below the tail is held
	r.slots[s&r.mask].Store(&entry[T]{seq: s, val: v})
	r.floor.Store(s)
	return true
}

// Oldest returns the oldest value in the ring and its sequence number; ok
// is false when the ring is empty. Exact for the writer; a reader may find
// the value gone by the time it uses it.
func (r *Ring[T]) Oldest() (v T, seq uint64, ok bool) {
	h := r.head.Load()
	s := r.tail(h)
	if s == h {
		return v, 0, false
	}
	e := r.slots[s&r.mask].Load()
	if e == nil || e.seq != s {
		return v, 0, false
	}
	return e.val, s, true
}

// Get returns the value with sequence cursor.
// ok is false when cursor has not been written yet (cursor >= Head()).
// lapped is true when the value was overwritten or dropped: the reader fell
// behind what the ring holds and must resynchronise, at max(Tail(),
// cursor+1).
func (r *Ring[T]) Get(cursor uint64) (v T, ok, lapped bool) {
	if cursor >= r.head.Load() {
		return v, false, false
	}
	e := r.slots[cursor&r.mask].Load()
	if e == nil || e.seq != cursor {
		// head > cursor means slot cursor was written; what the slot holds
		// after that is nil (dropped) or a later sequence.
		return v, false, true
	}
	return e.val, true, false
}

// Find returns the sequence number of the newest value in the ring for
// which match returns true, scanning from newest to oldest. It is safe
// against a concurrent Append or DropOldest: values overwritten or dropped
// while scanning are skipped, never misreported.
func (r *Ring[T]) Find(match func(T) bool) (seq uint64, found bool) {
	h := r.head.Load()
	for s := h; s > 0 && h-s <= r.mask; {
		s--
		e := r.slots[s&r.mask].Load()
		if e == nil || e.seq != s {
			return 0, false // lapped or dropped while scanning: older slots are gone too
		}
		if match(e.val) {
			return s, true
		}
	}
	return 0, false
}
