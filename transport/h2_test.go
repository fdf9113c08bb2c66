package transport

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"golang.org/x/net/http2"
)

// What only HTTP/2 has: many streams on one connection, its own limits,
// and the connection itself stalling under its streams.

// TestH2StalledConnection: a client that stops reading its socket while
// its windows are wide open stalls the whole connection; its streams end
// at their write timeout (or with the connection), the connection is cut
// off within a few write timeouts (a write to its socket blocked that
// long, or the PING it got after as long without a frame from it went
// unanswered as long again), and a subscriber on another connection never
// waits.
func TestH2StalledConnection(t *testing.T) {
	t.Parallel()
	const writeTimeout = 500 * time.Millisecond
	addr, eng, srv := h2c.startServer(t, engine.Config{WriteTimeout: writeTimeout, Capacity: 4096, KeepAlive: -1}, Config{})
	// Windows as large as allowed, so that nothing but the socket stops
	// the server's writes; the socket's receive buffer is tiny.
	raw := startH2(t, addr, dialTinyBuffer(t, addr), http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	if err := raw.fr.WriteWindowUpdate(0, 1<<31-1-65535); err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint32{1, 3} {
		if err := raw.get(id, "/sse?topic=stall"); err != nil {
			t.Fatal(err)
		}
	}
	reader := subscribed(t, eng, h2c.subscribe(t, addr, "/sse?topic=stall"), "stall", 3)
	if n := srv.Stats().H2Conns; n != 2 {
		t.Fatalf("%d HTTP/2 connections, want 2", n)
	}

	published, took := publishUntilCut(t, h2c, addr, eng, "stall", 3, 5000, reader)
	t.Logf("the stalled connection's 2 streams ended after %d messages, %v", published, took)
	if took > 10*writeTimeout {
		t.Errorf("cutting off the stalled connection took %v, want a few times the write timeout %v", took, writeTimeout)
	}
	waitFor(t, 6*writeTimeout+wait, "the stalled connection to close", func() bool { return srv.Stats().H2Conns == 1 })
	if c := eng.Stats().Closed; c.Slow+c.Left < 2 {
		t.Errorf("closes %+v, want the two stalled streams counted", c)
	}
	h2c.publishTo(t, addr, "/sse?topic=stall", bigMessage(published+1))
	readID(t, reader, published+1)
}

// TestH2MaxStreams: a connection has at most H2MaxStreams streams open: the
// server says so in its SETTINGS, refuses a stream beyond it (its own,
// REFUSED_STREAM or PROTOCOL_ERROR) while the streams already open go on,
// and takes a new one once one has ended.
func TestH2MaxStreams(t *testing.T) {
	t.Parallel()
	addr, eng, _ := h2c.startServer(t, engine.Config{KeepAlive: -1}, Config{H2MaxStreams: 3})
	raw := dialH2(t, addr)
	var max uint32
	for max == 0 {
		_ = raw.c.SetReadDeadline(time.Now().Add(wait))
		f, err := raw.fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			v, ok := sf.Value(http2.SettingMaxConcurrentStreams)
			if !ok {
				t.Fatal("no SETTINGS_MAX_CONCURRENT_STREAMS")
			}
			max = v
			_ = raw.fr.WriteSettingsAck()
		}
	}
	if max != 3 {
		t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS %d, want 3", max)
	}
	for _, id := range []uint32{1, 3, 5, 7} {
		if err := raw.get(id, "/sse?topic=m"); err != nil {
			t.Fatal(err)
		}
	}
	for {
		f, err := raw.next(wait)
		if err != nil {
			t.Fatalf("waiting for the fourth stream's refusal: %v", err)
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok {
			if rst.StreamID != 7 || (rst.ErrCode != http2.ErrCodeRefusedStream && rst.ErrCode != http2.ErrCodeProtocol) {
				t.Fatalf("RST_STREAM %d %v, want stream 7 refused", rst.StreamID, rst.ErrCode)
			}
			break
		}
	}
	waitSubscribers(t, eng, "m", 3)
	if err := raw.fr.WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
		t.Fatal(err)
	}
	waitSubscribers(t, eng, "m", 2)
	if err := raw.get(9, "/sse?topic=m"); err != nil {
		t.Fatal(err)
	}
	waitSubscribers(t, eng, "m", 3)
}

// TestH2HeaderListSize: a header list larger than HTTP/1.1's head limit
// gets the API's JSON 431, as over HTTP/1.1; one larger than x/net's own
// bound is answered 431 by x/net, without being kept, and the connection
// goes on serving; one that goes on in CONTINUATION frames past that bound
// closes the connection (GOAWAY, PROTOCOL_ERROR) without being decoded.
func TestH2HeaderListSize(t *testing.T) {
	t.Parallel()
	addr, _, _ := h2c.startServer(t, engine.Config{}, Config{})
	a := h2c.do(t, http.MethodGet, "http://"+addr+"/sse", "", "X-Big", strings.Repeat("b", maxHeadBytes))
	wantError(t, a, http.StatusRequestHeaderFieldsTooLarge)

	// 21,000 bytes decoded in three fields, under 16 KiB encoded
	// (Huffman): one frame. (One field longer than the bound is a
	// decoding error that closes the connection.)
	raw := dialH2(t, addr)
	seven := strings.Repeat("h", 7000)
	block := raw.block("GET", "/sse", "x-a", seven, "x-b", seven, "x-c", seven)
	if len(block) > 16<<10 {
		t.Fatalf("block of %d bytes: does not fit one frame", len(block))
	}
	if err := raw.headers(1, block, true); err != nil {
		t.Fatal(err)
	}
	if err := raw.get(3, "/healthz"); err != nil {
		t.Fatal(err)
	}
	got := raw.firstStatuses(t, 2)
	if got[1] != http.StatusRequestHeaderFieldsTooLarge || got[3] != http.StatusNotFound {
		t.Errorf("statuses %v, want 431 for stream 1 and 404 (no health path) for stream 3", got)
	}

	// Far past the bound, in CONTINUATION frames: the connection ends.
	raw = dialH2(t, addr)
	var fields []string
	for i := range 100 {
		fields = append(fields, fmt.Sprintf("x-%d", i), strings.Repeat("h", 1000))
	}
	if err := raw.headers(1, raw.block("GET", "/sse", fields...), true); err != nil {
		t.Logf("writing the header block: %v (the server may close first)", err)
	}
	for {
		f, err := raw.next(wait)
		if err != nil {
			t.Fatalf("no GOAWAY: %v", err)
		}
		if away, ok := f.(*http2.GoAwayFrame); ok {
			if away.ErrCode != http2.ErrCodeProtocol {
				t.Errorf("GOAWAY %v, want PROTOCOL_ERROR", away.ErrCode)
			}
			break
		}
	}
	h2c.publishJSON(t, addr, `{"data":"still serving"}`)
}

// TestH2SameRequest: hooks see the same request over both protocols: the
// subscribe, catchup, unsubscribe and publish hooks get equal
// engine.Request values (the client's port aside) for the same request,
// header names in lower case, :authority as host.
func TestH2SameRequest(t *testing.T) {
	t.Parallel()
	type seen struct {
		mu   sync.Mutex
		reqs map[string]*engine.Request // by hook
	}
	headers := []string{"Accept-Encoding", "identity", "X-Thing", "one", "Cookie", "a=1; b=2", "Origin", "https://app.example", "Last-Event-ID", "zz", "User-Agent", "test/1"}
	run := func(t *testing.T, p proto) map[string]engine.Request {
		s := &seen{reqs: map[string]*engine.Request{}}
		note := func(hook string, r *engine.Request) {
			s.mu.Lock()
			s.reqs[hook] = r
			s.mu.Unlock()
		}
		hooks := engine.Hooks{
			Subscribe: func(sub *engine.Subscriber) (bool, error) { note("subscribe", sub.Request); return true, nil },
			Catchup: func(sub *engine.Subscriber, _ string, _ bool) ([]*engine.Message, error) {
				note("catchup", sub.Request)
				return nil, nil
			},
			Unsubscribe: func(sub *engine.Subscriber) { note("unsubscribe", sub.Request) },
			Publish:     func(r *engine.Request, _ *engine.Message) (bool, error) { note("publish", r); return true, nil },
		}
		addr, eng, _ := p.startServer(t, engine.Config{Hooks: hooks}, Config{})
		sub := subscribed(t, eng, p.subscribe(t, addr, "/sse?topic=req&x=%20y", headers...), "req", 1)
		a := p.do(t, http.MethodPost, "http://"+addr+"/sse?topic=req&x=%20y", `{"data":"d"}`, append(headers, "Content-Type", "application/json")...)
		if a.Status != http.StatusAccepted {
			t.Fatalf("publish: %d %s", a.Status, a.Body)
		}
		sub.conn.Close()
		waitSubscribers(t, eng, "req", 0)
		waitFor(t, wait, "the unsubscribe hook", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.reqs["unsubscribe"] != nil })
		out := map[string]engine.Request{}
		s.mu.Lock()
		defer s.mu.Unlock()
		for k, r := range s.reqs {
			c := *r
			c.Port = 0
			c.Headers = map[string]string{}
			for hk, hv := range r.Headers {
				switch hk {
				case "host":
					c.Headers[hk] = strings.Replace(hv, addr, "ADDR", 1) // each run has its server
				default:
					c.Headers[hk] = hv
				}
			}
			out[k] = c
		}
		return out
	}
	h1 := run(t, http1)
	h2 := run(t, h2c)
	for _, hook := range []string{"subscribe", "catchup", "unsubscribe", "publish"} {
		if !reflect.DeepEqual(h1[hook], h2[hook]) {
			t.Errorf("%s hook:\nHTTP/1.1 %+v\nHTTP/2   %+v", hook, h1[hook], h2[hook])
		}
	}
	if r := h2["subscribe"]; r.Headers["x-thing"] != "one" || r.Headers["host"] == "" || r.Query != "topic=req&x=+y" || r.IP != "127.0.0.1" {
		t.Errorf("HTTP/2 request %+v", r)
	}
}

// TestH2BodyLimit: over HTTP/2 a publish body announced larger than the
// limit is answered 413 at once, with no 100 Continue for a client that
// asked for one; a body of unknown length is refused as soon as it grows
// past the limit; both count as too_large, and the connection goes on.
func TestH2BodyLimit(t *testing.T) {
	t.Parallel()
	addr, _, srv := h2c.startServer(t, engine.Config{}, Config{MaxBodySize: 1000})
	raw := dialH2(t, addr)
	if err := raw.headers(1, raw.block("POST", "/sse", "content-type", "application/json", "content-length", "100000", "expect", "100-continue"), false); err != nil {
		t.Fatal(err)
	}
	if err := raw.headers(3, raw.block("POST", "/sse", "content-type", "application/json"), false); err != nil {
		t.Fatal(err)
	}
	chunk := []byte(strings.Repeat("x", 600))
	for range 3 {
		if err := raw.fr.WriteData(3, false, chunk); err != nil {
			t.Fatal(err)
		}
	}
	got := map[uint32]int{}
	body := map[uint32]string{}
	ended := map[uint32]bool{}
	for len(ended) < 2 {
		f, err := raw.next(wait)
		if err != nil {
			t.Fatalf("after %v %v: %v", got, body, err)
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if _, seen := got[f.StreamID]; !seen {
				got[f.StreamID] = status(f)
			}
			if f.StreamEnded() {
				ended[f.StreamID] = true
			}
		case *http2.DataFrame:
			body[f.StreamID] += string(f.Data())
			if f.StreamEnded() {
				ended[f.StreamID] = true
			}
		case *http2.RSTStreamFrame:
			ended[f.StreamID] = true
		}
	}
	if got[1] != http.StatusRequestEntityTooLarge || got[3] != http.StatusRequestEntityTooLarge {
		t.Errorf("first answers %v, want 413 for both (no 100 first)", got)
	}
	// The refusal reaches the client whole: its JSON error, although the
	// client was still sending (or announced more) body.
	for _, id := range []uint32{1, 3} {
		if !strings.Contains(body[id], `{"error":"body is larger than 1000 bytes"}`) {
			t.Errorf("stream %d: body %q, want the JSON error", id, body[id])
		}
	}
	if n := srv.Stats().PublishRejected[RejectTooLarge]; n != 2 {
		t.Errorf("%d publishes counted too_large, want 2", n)
	}
	h2c.publishJSON(t, addr, `{"data":"still serving"}`)
}

// TestH2SlowBody: a publish whose body stops coming is answered 408 at
// ReadTimeout, as over HTTP/1.1 (TestSlowloris), and the connection goes
// on serving.
func TestH2SlowBody(t *testing.T) {
	t.Parallel()
	const readTimeout = 300 * time.Millisecond
	addr, _, _ := h2c.startServer(t, engine.Config{}, Config{ReadTimeout: readTimeout})
	raw := dialH2(t, addr)
	if err := raw.headers(1, raw.block("POST", "/sse", "content-type", "application/json", "content-length", "100"), false); err != nil {
		t.Fatal(err)
	}
	if err := raw.fr.WriteData(1, false, []byte(`{"data":"`)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		f, err := raw.next(wait)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		if h, ok := f.(*http2.MetaHeadersFrame); ok {
			if st := status(h); st != http.StatusRequestTimeout {
				t.Errorf("status %d, want 408", st)
			}
			break
		}
	}
	if d := time.Since(start); d < readTimeout/2 || d > readTimeout+2*time.Second {
		t.Errorf("answered after %v, want about %v", d, readTimeout)
	}
	h2c.publishJSON(t, addr, `{"data":"still serving"}`)
}
