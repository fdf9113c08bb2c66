package transport

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

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
	forEachProto(t, func(t *testing.T, p proto) {
		var hookCalls atomic.Int32
		ecfg := engine.Config{Hooks: engine.Hooks{Subscribe: func(s *engine.Subscriber) (bool, error) {
			hookCalls.Add(1)
			return s.Request.Query != "deny", nil
		}}}
		addr, eng, srv := p.startServer(t, ecfg, Config{MaxSubscribers: 2})
		a := p.subscribe(t, addr, "/sse")
		a.expectOK()
		b := subscribed(t, eng, p.subscribe(t, addr, "/sse"), "", 2)

		start := time.Now()
		c := p.subscribe(t, addr, "/sse")
		if d := time.Since(start); d > fastRefusal {
			t.Errorf("refusal took %v", d)
		}
		wantError(t, answer{Status: c.Status, Header: c.Header, Body: c.Body}, http.StatusServiceUnavailable)
		if c.Header.Get("Retry-After") == "" {
			t.Error("no Retry-After on the 503")
		}
		if n := hookCalls.Load(); n != 2 {
			t.Errorf("subscribe hook ran %d times, want 2 (not for the refused one)", n)
		}
		if n := srv.Streams(); n != 2 {
			t.Errorf("%d stream slots taken after a refusal, want 2", n)
		}

		p.publishJSON(t, addr, `{"id":"1","data":"still here"}`)
		a.expectLines("id: 1", "data: still here")
		b.expectLines("id: 1", "data: still here")

		a.conn.Close()
		waitFor(t, wait, "the slot back", func() bool { return srv.Streams() == 1 })
		d := p.subscribe(t, addr, "/sse?deny")
		wantError(t, answer{Status: d.Status, Header: d.Header, Body: d.Body}, http.StatusForbidden)
		if n := srv.Streams(); n != 1 {
			t.Errorf("%d stream slots taken after a rejected subscribe, want 1", n)
		}
		e := subscribed(t, eng, p.subscribe(t, addr, "/sse"), "", 2)
		p.publishJSON(t, addr, `{"id":"2","data":"again"}`)
		e.expectLines("id: 2", "data: again")
		b.expectLines("id: 2", "data: again")
	})
}

// TestMaxSubscribersSlotBackBeforeClose: a stream the server ends gives
// its slot back before its socket closes, not after the Unsubscribe hook
// (here a slow one): at MaxSubscribers 1, a client that reconnects the
// moment it reads the end gets its stream, not a 503.
func TestMaxSubscribersSlotBackBeforeClose(t *testing.T) {
	t.Parallel()
	unsubscribed := make(chan struct{}, 4)
	ecfg := engine.Config{Hooks: engine.Hooks{Unsubscribe: func(*engine.Subscriber) {
		time.Sleep(500 * time.Millisecond) // a hook that writes somewhere slow
		unsubscribed <- struct{}{}
	}}}
	addr, eng, srv := startServer(t, ecfg, Config{MaxSubscribers: 1})
	a := subscribed(t, eng, subscribe(t, addr, "/sse?topic=t"), "t", 1)
	if n := eng.DisconnectTopic("t", 0); n != 1 {
		t.Fatalf("disconnected %d", n)
	}
	a.drain(wait) // to the end the server wrote
	b := subscribe(t, addr, "/sse?topic=t")
	if b.Status != http.StatusOK {
		t.Fatalf("reconnect at once: %d %s (slots taken: %d)", b.Status, b.Body, srv.Streams())
	}
	b.expectOK()
	select {
	case <-unsubscribed:
		t.Error("the reconnect waited for the Unsubscribe hook")
	default:
	}
	<-unsubscribed
	waitSubscribers(t, eng, "t", 1)
	if n := srv.Streams(); n != 1 {
		t.Errorf("%d slots taken, want 1 (the slot given back once)", n)
	}
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
// forgotten. HTTP/1.1 only: the count is taken at accept, before anything
// is read; TestMaxConnsPerIPH2 has what it means for HTTP/2.
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
	forEachProto(t, func(t *testing.T, p proto) {
		addr, eng, _ := p.startServer(t, engine.Config{MaxTopics: 3}, Config{})
		s := subscribed(t, eng, p.subscribe(t, addr, "/sse?topic=a"), "a", 1)
		for _, tp := range []string{"a", "b", "c"} {
			p.publishTo(t, addr, "/sse?topic="+tp, `{"data":"to `+tp+`"}`)
		}
		s.expectLines("data: to a")
		for _, target := range []string{"/sse?topic=d", "/sse?topic=a&topic=d", "/sse?topic=e&topic=a"} {
			wantError(t, p.post(t, addr, target, "application/json", `{"data":"refused"}`), http.StatusServiceUnavailable)
		}
		if n := eng.Topics(); n != 3 {
			t.Errorf("%d topics, want 3", n)
		}
		p.publishTo(t, addr, "/sse?topic=a", `{"data":"a again"}`)
		s.expectLines("data: a again") // nothing of the refused ones came first
		p.publishTo(t, addr, "/sse?topic=c", `{"data":"c again"}`)

		// A subscriber cannot make topics beyond the bound either: each
		// costs a ring of Capacity entries, and 64 of them per request
		// over many connections would hold memory no limit counts. The
		// topics held, a pattern, and the default stream once it exists,
		// stay open to subscribers.
		for _, target := range []string{"/sse?topic=d", "/sse?topic=a&topic=d", "/sse"} {
			r := p.subscribe(t, addr, target)
			wantError(t, answer{Status: r.Status, Header: r.Header, Body: r.Body}, http.StatusServiceUnavailable)
			if !strings.Contains(r.Body, "topic limit") {
				t.Errorf("subscribe %s: %s", target, r.Body)
			}
		}
		if n := eng.Topics(); n != 3 {
			t.Errorf("%d topics after refused subscribes, want 3", n)
		}
		both := p.subscribe(t, addr, "/sse?topic=b&topic=c&topic=x/*")
		both.expectOK()
		p.publishTo(t, addr, "/sse?topic=b", `{"data":"b again"}`)
		both.expectLines("data: b again")
	})
}

// TestMaxConnsPerIPH2: over HTTP/2 an address's event streams count
// against MaxConnsPerIP as its connections do (over HTTP/1.1 each would be
// one): a stream beyond the bound gets a JSON 429 on a connection that
// goes on serving, a stream that ends gives its slot back, and other
// addresses are not concerned. A connection refused at accept to a client
// that opened with the HTTP/2 preface gets a GOAWAY whose debug data is
// the JSON error (ENHANCE_YOUR_CALM), since it would not read HTTP/1.1.
func TestMaxConnsPerIPH2(t *testing.T) {
	t.Parallel()
	addr, eng, srv := h2c.startServer(t, engine.Config{}, Config{MaxConnsPerIP: 3})
	one := h2ClientFrom(t, "127.0.0.1")
	// The connection is one slot, each stream one more.
	a := h2c.subscribeWith(t, one, addr, "/sse")
	a.expectOK()
	b := h2c.subscribeWith(t, one, addr, "/sse")
	b.expectOK()
	waitSubscribers(t, eng, "", 2)
	c := h2c.subscribeWith(t, one, addr, "/sse")
	wantError(t, answer{Status: c.Status, Header: c.Header, Body: c.Body}, http.StatusTooManyRequests)
	if c.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After on the 429")
	}
	if st := srv.Stats(); st.H2Conns != 1 || st.H2Streams != 2 || st.SubscribeRejected[RejectLimit] != 1 {
		t.Errorf("stats %+v, want one HTTP/2 connection, two streams, one refusal counted as limit", st)
	}
	// Another address is not concerned; the same connection still serves.
	d := h2c.subscribeWith(t, h2ClientFrom(t, "127.0.0.2"), addr, "/sse")
	d.expectOK()
	if r := checkPublished(t, "/sse", "", h2cPost(t, one, addr, `{"data":"x"}`)); r.Subscribers != 3 {
		t.Errorf("publish reached %d subscribers, want 3", r.Subscribers)
	}
	a.expectLines("data: x")

	// A stream that ends gives its slot back.
	a.conn.Close()
	waitSubscribers(t, eng, "", 2)
	e := h2c.subscribeWith(t, one, addr, "/sse")
	e.expectOK()

	// At its bound (one connection, two streams), a new connection from
	// the address is refused at accept: in HTTP/2, for a client that
	// spoke it first.
	raw := startH2(t, addr, dialFrom(t, "127.0.0.1", addr))
	var away *http2.GoAwayFrame
	for away == nil {
		f, err := raw.next(wait)
		if err != nil {
			t.Fatalf("refused connection: %v, want a GOAWAY", err)
		}
		away, _ = f.(*http2.GoAwayFrame)
	}
	if away.ErrCode != http2.ErrCodeEnhanceYourCalm || string(away.DebugData()) != tooManyBody {
		t.Errorf("GOAWAY %v %q, want ENHANCE_YOUR_CALM %q", away.ErrCode, away.DebugData(), tooManyBody)
	}
	if _, err := raw.next(wait); !errors.Is(err, io.EOF) && !isClosed(err) {
		t.Errorf("after the GOAWAY: %v, want the connection closed", err)
	}
	if n := srv.Stats().ConnsRefusedPerIP; n != 1 {
		t.Errorf("%d connections refused per address, want 1", n)
	}
}

// h2ClientFrom is an HTTP/2 (prior knowledge) client whose connections
// come from the loopback address local.
func h2ClientFrom(t *testing.T, local string) *http.Client {
	tr := h2Transport(0)
	d := net.Dialer{Timeout: wait, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	tr.DialContext = d.DialContext
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// h2cPost publishes body to /sse with c.
func h2cPost(t *testing.T, c *http.Client, addr, body string) answer {
	t.Helper()
	resp, err := c.Post("http://"+addr+"/sse", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b := new(strings.Builder)
	_, _ = bufio.NewReader(resp.Body).WriteTo(b)
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: b.String()}
}
