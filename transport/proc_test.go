package transport

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// usage is what a leak would grow: this process's resident memory, open
// descriptors and goroutines (less fasthttp's idle workers). The tests that use it run the server in this
// process, so it counts the server and the test's own clients.
type usage struct {
	RSS        int64 // bytes
	FDs        int
	Goroutines int
}

func (u usage) String() string {
	return fmt.Sprintf("rss %.1f MiB, fds %d, goroutines %d", float64(u.RSS)/(1<<20), u.FDs, u.Goroutines)
}

func readUsage(t testing.TB) usage {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	var u usage
	for _, line := range bytes.Split(status, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kb, _ := strconv.ParseInt(string(bytes.Fields(v)[0]), 10, 64)
			u.RSS = kb << 10
		}
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	u.FDs = len(fds)
	u.Goroutines = runtime.NumGoroutine() - idleWorkers()
	return u
}

// idleWorkers counts fasthttp's idle worker goroutines: its pool keeps a
// worker for up to twice MaxIdleWorkerDuration (10s) after a connection,
// bounded by Concurrency. They are a cache, not a leak.
func idleWorkers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	idle := 0
	for _, g := range bytes.Split(buf, []byte("\n\ngoroutine ")) {
		if bytes.Contains(g, []byte("[chan receive")) && bytes.Contains(g, []byte("fasthttp.(*workerPool).workerFunc")) {
			idle++
		}
	}
	return idle
}

// settle waits until descriptors and goroutines are back to at most base
// plus slack each (goroutines of net/http's idle connections and of the
// runtime come and go), and returns the last reading.
func settle(t testing.TB, base usage, slack int, d time.Duration) (usage, bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		u := readUsage(t)
		if u.FDs <= base.FDs+slack && u.Goroutines <= base.Goroutines+slack {
			return u, true
		}
		if time.Now().After(deadline) {
			return u, false
		}
		httpClient.CloseIdleConnections()
		time.Sleep(50 * time.Millisecond)
	}
}
