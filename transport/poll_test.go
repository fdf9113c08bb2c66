//go:build linux

package transport

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
)

// TestIdleStreamsHoldNoGoroutine: plain and TLS streams, once their head
// is out, hold no goroutine of the server (the engine's poller watches
// them); each still gets what is published, and a client that closes is
// noticed (the subscriber count, Closed.Left, the stream slot).
func TestIdleStreamsHoldNoGoroutine(t *testing.T) {
	const n = 60
	for _, useTLS := range []bool{false, true} {
		t.Run("tls="+strconv.FormatBool(useTLS), func(t *testing.T) {
			var addr string
			var eng *engine.Engine
			var srv *Server
			dialer := func() net.Conn { return dial(t, addr) }
			pub := func(body string) { publishJSON(t, addr, body) }
			if useTLS {
				a, e, s, ccfg := startTLSServer(t, engine.Config{KeepAlive: -1}, Config{})
				addr, eng, srv = a, e, s
				dialer = func() net.Conn { return dialTLS(t, addr, ccfg) }
				client := &http.Client{Timeout: wait, Transport: &http.Transport{TLSClientConfig: ccfg}}
				t.Cleanup(client.CloseIdleConnections)
				pub = func(body string) {
					resp, err := client.Post("https://"+addr+"/sse", "application/json", strings.NewReader(body))
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusAccepted {
						t.Fatalf("publish: %d", resp.StatusCode)
					}
				}
			} else {
				addr, eng, srv = startServer(t, engine.Config{KeepAlive: -1}, Config{})
			}
			// One stream first, so that the engine's and fasthttp's own
			// goroutines are counted in the baseline.
			first := startStream(t, dialer(), "/sse?topic=idle")
			first.expectOK()
			before := settledGoroutines(t)
			var streams []*sseClient
			var conns []net.Conn
			for range n {
				c := dialer()
				s := startStream(t, c, "/sse?topic=idle")
				s.expectOK()
				streams = append(streams, s)
				conns = append(conns, c)
			}
			waitFor(t, wait, "the subscribers", func() bool { return eng.Subscribers("idle") == n+1 })
			held := settledGoroutines(t) - before
			// Each test client holds its own goroutines (none here: they
			// are read on demand), so this is the server's.
			t.Logf("%d idle streams (tls %v): %d more goroutines", n, useTLS, held)
			if held > n/4 {
				t.Errorf("%d idle streams hold %d goroutines, want almost none", n, held)
			}
			pub(`{"id":"1","data":"x","topic":"idle"}`)
			for _, s := range append(streams, first) {
				if b := s.mustNext(); b.Event == nil || b.Event.LastEventID != "1" {
					t.Fatalf("got %q", b.Raw)
				}
			}
			for _, c := range conns {
				c.Close()
			}
			waitFor(t, wait, "the closes to be noticed", func() bool { return eng.Subscribers("idle") == 1 })
			waitFor(t, wait, "the stream slots back", func() bool { return srv.Streams() == 1 })
			if got := eng.Stats().Closed.Left; got != n {
				t.Errorf("Closed.Left %d, want %d", got, n)
			}
		})
	}
}

// settledGoroutines is the server process's goroutines less fasthttp's
// idle workers, once the count has stopped falling.
func settledGoroutines(t *testing.T) int {
	n := readUsage(t).Goroutines
	for range 100 {
		time.Sleep(20 * time.Millisecond)
		m := readUsage(t).Goroutines
		if m >= n {
			return m
		}
		n = m
	}
	return n
}
