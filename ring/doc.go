// Package ring is a fixed-capacity buffer of published values that many
// readers consume by cursor without taking a lock.
//
// One writer (callers serialise Append and DropOldest; the engine does so
// with its publish mutex) appends values; each appended value gets the
// next sequence number, starting at 0. The writer may also drop values
// from the old end before the ring laps them (the engine's byte budget for
// history), so that the ring stops pointing at them. Any number of readers
// hold their own cursor (the sequence number of the next value they want)
// and call Get, which is wait-free: a couple of atomic loads. A reader
// learns in O(1) whether its cursor was overwritten or dropped (lapped).
//
// Safe from several goroutines: Get, Head, Tail, Len, Cap, Find, Oldest.
// Append and DropOldest only from one goroutine at a time.
package ring
