package main

import (
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/testserver/inproc"
)

// TestRunStuck: --stuck opens connections that never read next to the
// subscribers; the report says when the server cut them off, and the
// subscribers' checks still hold.
func TestRunStuck(t *testing.T) {
	const writeTimeout = 500 * time.Millisecond
	ts := inproc.Start(t, inproc.Config{Engine: engine.Config{WriteTimeout: writeTimeout}})
	o, err := parseFlags([]string{"--url", ts.URL("/sse"), "--subscribers", "3", "--stuck", "5",
		"--size", "32768", "--publish-rate", "200", "--duration", "1s", "--settle", "200ms", "--drain", "2s", "--quiet", "--workers", "0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	res := runOK(t, o)
	if !res.OK || res.Deliveries.Lost != 0 || res.Deliveries.Lagged != 0 {
		t.Fatalf("subscribers next to stuck connections: ok %v, %d lost, %d lagged, errors %v", res.OK, res.Deliveries.Lost, res.Deliveries.Lagged, res.Errors)
	}
	st := res.Stuck
	if st == nil || st.Conns != 5 {
		t.Fatalf("stuck report %+v", st)
	}
	if runtime.GOOS != "linux" {
		return
	}
	if !st.Measured || st.CutOff != 5 || st.CutOffMax <= writeTimeout.Seconds()/2 || st.CutOffMax > (writeTimeout+2*time.Second).Seconds() {
		t.Fatalf("stuck report %+v: want all 5 cut off about --write-timeout (%v) after the first publish", st, writeTimeout)
	}
	if n := ts.Engine.Stats().Closed.Slow; n != 5 {
		t.Errorf("the server counted %d slow disconnects, want 5", n)
	}
}

func TestStuckFlag(t *testing.T) {
	if _, err := parseFlags([]string{"--stuck", "-1"}, io.Discard); err == nil {
		t.Error("--stuck -1 accepted")
	}
	o, err := parseFlags([]string{"--stuck", "50"}, io.Discard)
	if err != nil || o.stuck != 50 {
		t.Errorf("--stuck 50: %v %+v", err, o)
	}
}
