// Package ring is a fixed-capacity buffer of published values that many
// readers consume by cursor without taking a lock.
//
// One writer (callers serialise Append, the engine does so with a per-topic
// mutex) appends values; each appended value gets the next sequence number,
// starting at 0. Any number of readers hold their own cursor (the sequence
// number of the next value they want) and call Get, which is wait-free: a
// couple of atomic loads. A reader learns in O(1) whether its cursor was
// overwritten (lapped) by newer values.
//
// Safe from several goroutines: Get, Head, Tail, Cap, Find. Append only from
// one goroutine at a time.
package ring
