//go:build race

package transport

// raceEnabled: the race detector slows everything about tenfold, so tests
// that compare delays only report them.
const raceEnabled = true
