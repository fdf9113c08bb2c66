package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// The server's lifecycle runs under one errgroup and one context (run):
// a part that fails at start-up or later stops the rest, in order. Each
// test below makes one part fail and checks that what was started before
// it was let go: the listening port is free again, the store (--store,
// an exclusive lock on its directory) can be opened by another server.
// None of them is parallel: TestLifecycleServeFails swaps the package's
// listen function, and a second run is stopped with SIGINT.

// wantFree fails unless addr can be listened on (nobody holds it).
func wantFree(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("%s is still held after run returned: %v", addr, err)
	}
	ln.Close()
}

// wantStoreFree starts a server on dir, which works only if the failed
// run let go of its lock, then stops it.
func wantStoreFree(t *testing.T, dir string) {
	t.Helper()
	var stderr syncBuffer
	ready := make(chan string, 1)
	exited := make(chan int, 1)
	go func() {
		exited <- run([]string{"--listen", "127.0.0.1:0", "--store", dir, "--shutdown-timeout", "2s"}, env(), &bytes.Buffer{}, &stderr, ready)
	}()
	select {
	case <-ready:
	case code := <-exited:
		t.Fatalf("the store was not let go: a new server on it exited %d: %s", code, stderr.String())
	case <-time.After(2 * wait):
		t.Fatal("a new server on the store did not get ready")
	}
	interruptRuns(t, exited, 1, 2*wait)
	if t.Failed() {
		t.Logf("stderr: %s", stderr.String())
	}
}

// TestLifecyclePortTaken: the listening port is taken. The store opened
// before it is closed again, and the script's startup hook never runs.
func TestLifecyclePortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	marker := filepath.Join(t.TempDir(), "started")
	script := writeScript(t, `function startup(cli) local f = io.open("`+marker+`", "w") f:write("x") f:close() end`)
	var stderr bytes.Buffer
	code := run([]string{"--listen", taken.Addr().String(), "--store", dir, "--script", script, "--unsafe-script"}, env(), &bytes.Buffer{}, &stderr, nil)
	if code != 1 || !strings.Contains(stderr.String(), "--listen") || !strings.Contains(stderr.String(), "address already in use") {
		t.Fatalf("exit %d, stderr %q; want 1 naming --listen", code, stderr.String())
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the startup hook ran although the server never listened")
	}
	wantStoreFree(t, dir)
}

// TestLifecycleNATSUnreachable: NATS cannot be reached at start: the node
// does not start, and nothing it would have started is left (no port, no
// goroutine retrying the connection).
func TestLifecycleNATSUnreachable(t *testing.T) {
	addr := freeAddr(t)
	before := goroutines()
	var stderr bytes.Buffer
	code := run([]string{"--listen", addr, "--nats", "nats://127.0.0.1:1"}, env(), &bytes.Buffer{}, &stderr, nil)
	if code != 1 || !strings.Contains(stderr.String(), "--nats") {
		t.Fatalf("exit %d, stderr %q; want 1 naming --nats", code, stderr.String())
	}
	wantFree(t, addr)
	waitGoroutines(t, before)
}

// TestLifecycleScriptError: the script's startup fails once the port is
// bound: the listener, the engine's shards and the store are let go.
func TestLifecycleScriptError(t *testing.T) {
	addr := freeAddr(t)
	dir := t.TempDir()
	script := writeScript(t, `function startup(cli) error("boom") end`)
	before := goroutines()
	var stderr bytes.Buffer
	code := run([]string{"--listen", addr, "--store", dir, "--script", script}, env(), &bytes.Buffer{}, &stderr, nil)
	if code != 1 || !strings.Contains(stderr.String(), "--script") || !strings.Contains(stderr.String(), "boom") {
		t.Fatalf("exit %d, stderr %q; want 1 naming --script and the error", code, stderr.String())
	}
	wantFree(t, addr)
	waitGoroutines(t, before)
	wantStoreFree(t, dir)
}

// TestLifecycleServeFails: the listener fails while the server runs. The
// rest shuts down in order: a subscriber gets the shutdown goodbye, run
// returns 1, and the store is let go.
func TestLifecycleServeFails(t *testing.T) {
	var mu sync.Mutex
	var ln net.Listener
	listen = func(network, addr string) (net.Listener, error) {
		l, err := net.Listen(network, addr)
		mu.Lock()
		ln = l
		mu.Unlock()
		return l, err
	}
	defer func() { listen = net.Listen }()
	dir := t.TempDir()
	var stderr syncBuffer
	ready := make(chan string, 1)
	exited := make(chan int, 1)
	go func() {
		exited <- run([]string{"--listen", "127.0.0.1:0", "--store", dir, "--shutdown-timeout", "2s"}, env(), &bytes.Buffer{}, &stderr, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case code := <-exited:
		t.Fatalf("exit %d: %s", code, stderr.String())
	case <-time.After(2 * wait):
		t.Fatal("run did not get ready")
	}
	sub := openStream(t, addr, "/sse")
	sub.readUntil(t, ": ok\n\n")
	mu.Lock()
	ln.Close() // the listener fails under the server
	mu.Unlock()
	sub.readUntil(t, ": shutdown\n")
	waitExit(t, exited, 1, 2*wait, "its listener failed")
	if !strings.Contains(stderr.String(), "--listen") {
		t.Errorf("stderr %q does not say the listener failed", stderr.String())
	}
	wantStoreFree(t, dir)
}

func goroutines() int { return runtime.NumGoroutine() }

// waitGoroutines waits until the goroutines are back to about before
// (a few of the runtime's and the test's own may come and go).
func waitGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for runtime.NumGoroutine() > before+3 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before run: some part was not stopped\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
