package ring

import (
	"errors"
	"sync/atomic"
)

// ErrCapacity is returned by New for a capacity that is not a power of two.
var ErrCapacity = errors.New("ring: capacity must be a power of two between 1 and 2^30")

// Ring holds the last Cap() values appended to it.
//
// Memory-ordering argument (compare sync/poolqueue.go):
//
// The writer owns every slot. To publish value v with sequence s it stores
// an immutable *entry{seq: s, val: v} into slots[s&mask] with an atomic
// pointer store, and only then stores head = s+1. Go's atomics are
// sequentially consistent, so a reader that loads head and sees s+1 is
// guaranteed to see, on its later load of slots[s&mask], the entry for s or
// an entry written after it (sequence s+Cap, s+2*Cap, ...). It can never see
// an older entry or a half-written one: an entry is fully built before the
// pointer to it is stored and is never modified afterwards.
//
// So a reader with cursor c does:
//
//	c >= head          -> nothing new yet
//	slot[c&mask].seq == c -> the value for c
//	slot[c&mask].seq >  c -> lapped: the writer has gone round since
//
// No reader writes to the ring, so readers never contend with each other or
// with the writer beyond sharing cache lines.
type Ring[T any] struct {
	// mask is Cap()-1; immutable after New.
	mask uint64
	// slots[i] is written only by the writer (Append), read by anyone.
	slots []atomic.Pointer[entry[T]]
	// head is the sequence number the next Append will use. Written only by
	// the writer, after the slot store, so a reader that sees head = s+1
	// also sees slot s (see the argument above).
	head atomic.Uint64
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
// Append is between its slot store and its head store, Tail's value may
// itself have just been overwritten; a lapped reader should resume at
// max(Tail(), cursor+1) and expect to be told lapped once more in that case.
func (r *Ring[T]) Tail() uint64 {
	h := r.head.Load()
	if n := r.mask + 1; h > n {
		return h - n
	}
	return 0
}

// Append stores v under the next sequence number and returns it.
// Only one goroutine may call Append at a time.
func (r *Ring[T]) Append(v T) uint64 {
	s := r.head.Load() // only the writer stores head, so this is our own value
	r.slots[s&r.mask].Store(&entry[T]{seq: s, val: v})
	r.head.Store(s + 1) // publishes the slot store above to readers
	return s
}

// Get returns the value with sequence cursor.
// ok is false when cursor has not been written yet (cursor >= Head()).
// lapped is true when the value was overwritten: the reader fell more than
// Cap() values behind and must resynchronise, at max(Tail(), cursor+1).
func (r *Ring[T]) Get(cursor uint64) (v T, ok, lapped bool) {
	if cursor >= r.head.Load() {
		return v, false, false
	}
	e := r.slots[cursor&r.mask].Load()
	if e.seq != cursor {
		// e.seq > cursor: head > cursor means slot cursor was written, and
		// entries of a slot only ever grow in sequence.
		return v, false, true
	}
	return e.val, true, false
}

// Find returns the sequence number of the newest value in the ring for
// which match returns true, scanning from newest to oldest. It is safe
// against a concurrent Append: values overwritten while scanning are
// skipped, never misreported.
func (r *Ring[T]) Find(match func(T) bool) (seq uint64, found bool) {
	h := r.head.Load()
	for s := h; s > 0 && h-s <= r.mask; {
		s--
		e := r.slots[s&r.mask].Load()
		if e == nil || e.seq != s {
			return 0, false // lapped while scanning: older slots are gone too
		}
		if match(e.val) {
			return s, true
		}
	}
	return 0, false
}
