package testserver

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Wait bounds every single read, request or condition of a test.
const Wait = 5 * time.Second

// Buffer collects what a server's goroutines write (logs, a script's
// prints, a child's output) while the test reads it.
// Max, when above 0, is how many bytes it keeps: later writes are dropped
// (enough to tell what happened, from a process that logs a lot).
type Buffer struct {
	Max int
	mu  sync.Mutex
	b   bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Max > 0 && s.b.Len() > s.Max {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Lines returns the complete lines written so far.
func (s *Buffer) Lines() []string {
	text := s.String()
	i := strings.LastIndexByte(text, '\n')
	if i < 0 {
		return nil
	}
	return strings.Split(text[:i], "\n")
}

// Count counts the complete lines equal to line.
func (s *Buffer) Count(line string) int {
	n := 0
	for _, l := range s.Lines() {
		if l == line {
			n++
		}
	}
	return n
}

// FreeAddr returns a 127.0.0.1 address nobody listened on a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// FreePort is the port of a FreeAddr.
func FreePort(t testing.TB) int {
	t.Helper()
	_, port, err := net.SplitHostPort(FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Eventually polls cond every few milliseconds until it holds, failing the
// test after d (Wait when d is 0).
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if d == 0 {
		d = Wait
	}
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Server is what Serve runs: transport.Server, or anything like it.
type Server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// Serve runs srv on 127.0.0.1 on a port of the kernel's choice and
// returns its address. When the test ends it shuts srv down (a test may
// have done so already) and requires Serve to return nil within Wait.
func Serve(t testing.TB, srv Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Wait)
		defer cancel()
		_ = srv.Shutdown(ctx)
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(Wait):
			t.Errorf("Serve did not return after Shutdown")
		}
		Client.CloseIdleConnections()
	})
	return ln.Addr().String()
}
