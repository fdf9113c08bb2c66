package main

import (
	"strings"
	"testing"
)

// TestWorkerReadBufferChecked: a worker's config (the JSON line it reads
// on stdin) with a read buffer below the flag's least is refused, not
// run: a zero-length buffer would read nothing forever, a negative one
// panic. (Found by review.)
func TestWorkerReadBufferChecked(t *testing.T) {
	for _, n := range []int{-1, 0, minReadBuffer - 1} {
		_, err := newGroup(workerConfig{Target: "tinysse", URL: "http://127.0.0.1:1/sse", Subscribers: 1, ReadBuffer: n})
		if err == nil || !strings.Contains(err.Error(), "read buffer") {
			t.Errorf("read buffer %d: %v, want refused", n, err)
		}
	}
	if _, err := newGroup(workerConfig{Target: "tinysse", URL: "http://127.0.0.1:1/sse", Subscribers: 1, ReadBuffer: minReadBuffer}); err != nil {
		t.Errorf("read buffer %d: %v", minReadBuffer, err)
	}
}
