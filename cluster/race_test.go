//go:build race

package cluster_test

// raceEnabled: the fault cases exercise child processes, which the race
// detector does not watch; they skip under it.
const raceEnabled = true
