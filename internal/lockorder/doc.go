// Package lockorder holds the test that keeps locksordering.txt (at the
// module's root) true: every sync.Mutex and sync.RWMutex of the module is
// listed there, in the order locks may be taken, and nothing listed is
// gone. It has no code of its own.
package lockorder
