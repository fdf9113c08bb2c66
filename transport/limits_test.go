package transport

import (
	"bufio"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
)

// A refusal of a limit must come at once, not after a timeout.
const fastRefusal = time.Second

// TestMaxSubscribers: beyond MaxSubscribers a subscribe gets a fast 503
// (before any hook), the streams already open go on untouched, publishing
// is not counted, a refused or hook-rejected subscribe keeps no slot, and a
// slot given back by a leaving subscriber can be taken again.
func TestMaxSubscribers(t *testing.T) {
	t.Parallel()
	hookCalls := 0
	ecfg := engine.Config{Hooks: engine.Hooks{Subscribe: func(s *engine.Subscriber) (bool, error) {
		hookCalls++ // only the transport's request goroutine, one subscribe at a time here
		return s.Request.Query != "deny", nil
	}}}
	addr, eng, srv := startServer(t, ecfg, Config{MaxSubscribers: 2})
	a := subscribe(t, addr, "/sse")
	a.expectOK()
	b := subscribe(t, addr, "/sse")
	b.expectOK()
	waitSubscribers(t, eng, "", 2)

	start := time.Now()
	c := subscribe(t, addr, "/sse")
	if d := time.Since(start); d > fastRefusal {
		t.Errorf("refusal took %v", d)
	}
	wantError(t, answer{Status: c.Status, Header: c.Header, Body: c.Body}, http.StatusServiceUnavailable)
	if c.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After on the 503")
	}
	if hookCalls != 2 {
		t.Errorf("subscribe hook ran %d times, want 2 (not for the refused one)", hookCalls)
	}
	if n := srv.Streams(); n != 2 {
		t.Errorf("%d stream slots taken after a refusal, want 2", n)
	}

	publishJSON(t, addr, `{"id":"1","data":"still here"}`)
	a.expectLines("id: 1", "data: still here")
	b.expectLines("id: 1", "data: still here")

	a.conn.Close()
	waitFor(t, wait, "the slot back", func() bool { return srv.Streams() == 1 })
	d := subscribe(t, addr, "/sse?deny")
	wantError(t, answer{Status: d.Status, Header: d.Header, Body: d.Body}, http.StatusForbidden)
	if n := srv.Streams(); n != 1 {
		t.Errorf("%d stream slots taken after a rejected subscribe, want 1", n)
	}
	e := subscribe(t, addr, "/sse")
	e.expectOK()
	waitSubscribers(t, eng, "", 2)
	publishJSON(t, addr, `{"id":"2","data":"again"}`)
	e.expectLines("id: 2", "data: again")
	b.expectLines("id: 2", "data: again")
}

// dialFrom connects to addr from the loopback address local (127.0.0.x).
func dialFrom(t *testing.T, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: wait, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", local, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestMaxConnsPerIP: the listener counts every connection of an address,
// streams and idle ones alike; beyond MaxConnsPerIP that address gets a
// fast 429 while other addresses and the open streams go on; a closed
// connection gives its slot back, and an address with none left is
// forgotten.
func TestMaxConnsPerIP(t *testing.T) {
	t.Parallel()
	addr, eng, srv := startServer(t, engine.Config{}, Config{MaxConnsPerIP: 2})
	a := startStream(t, dialFrom(t, "127.0.0.1", addr), "/sse")
	a.expectOK()
	idle := dialFrom(t, "127.0.0.1", addr) // holds a slot without a request
	waitFor(t, wait, "two connections", func() bool { return srv.OpenConns() == 2 })

	start := time.Now()
	c := dialFrom(t, "127.0.0.1", addr)
	_ = c.SetDeadline(time.Now().Add(wait))
	ans := readAnswer(t, bufio.NewReader(c)) // refused before it sends anything
	if d := time.Since(start); d > fastRefusal {
		t.Errorf("refusal took %v", d)
	}
	wantError(t, ans, http.StatusTooManyRequests)
	if ans.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After on the 429")
	}

	b := startStream(t, dialFrom(t, "127.0.0.2", addr), "/sse")
	b.expectOK()
	waitSubscribers(t, eng, "", 2)
	pub := dialFrom(t, "127.0.0.3", addr)
	_ = pub.SetDeadline(time.Now().Add(wait))
	body := `{"id":"1","data":"x"}`
	if _, err := pub.Write([]byte("POST /sse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 21\r\n\r\n" + body)); err != nil {
		t.Fatal(err)
	}
	if r := readAnswer(t, bufio.NewReader(pub)); r.Status != http.StatusAccepted {
		t.Fatalf("publish from another address: %d %s", r.Status, r.Body)
	}
	a.expectLines("id: 1", "data: x")
	b.expectLines("id: 1", "data: x")

	idle.Close()
	waitFor(t, wait, "the idle slot back", func() bool { return srv.OpenConns() == 3 })
	d := startStream(t, dialFrom(t, "127.0.0.1", addr), "/sse")
	d.expectOK()

	for _, cl := range []*sseClient{a, b, d} {
		cl.conn.Close()
	}
	pub.Close()
	waitFor(t, wait, "every connection closed", func() bool { return srv.OpenConns() == 0 })
	if n := srv.ln.Load().addresses(); n != 0 {
		t.Errorf("%d addresses still counted with no connection open", n)
	}
}

// TestMaxTopics: a publish that would create a topic beyond MaxTopics is
// refused with 503 and publishes nothing, not even to its topics that
// exist; existing topics go on taking messages.
func TestMaxTopics(t *testing.T) {
	t.Parallel()
	addr, eng, _ := startServer(t, engine.Config{MaxTopics: 3}, Config{})
	s := subscribe(t, addr, "/sse?topic=a")
	s.expectOK()
	waitSubscribers(t, eng, "a", 1)
	for _, tp := range []string{"a", "b", "c"} {
		publishTo(t, addr, "/sse?topic="+tp, `{"data":"to `+tp+`"}`)
	}
	s.expectLines("data: to a")
	for _, target := range []string{"/sse?topic=d", "/sse?topic=a&topic=d", "/sse?topic=e&topic=a"} {
		wantError(t, post(t, addr, target, "application/json", `{"data":"refused"}`), http.StatusServiceUnavailable)
	}
	if n := eng.Topics(); n != 3 {
		t.Errorf("%d topics, want 3", n)
	}
	publishTo(t, addr, "/sse?topic=a", `{"data":"a again"}`)
	s.expectLines("data: a again") // nothing of the refused ones came first
	publishTo(t, addr, "/sse?topic=c", `{"data":"c again"}`)
}
