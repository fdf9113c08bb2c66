//go:build race

package transport

// raceEnabled: the race detector keeps shadow memory for every allocation,
// so RSS bounds are checked without it (the plain go test run) only.
const raceEnabled = true
