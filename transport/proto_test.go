package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/testcert"
	"github.com/tinysse/tinysse/internal/testserver"
)

// The end-to-end tests run over each protocol the server speaks, through
// one handler: forEachProto runs a test body once per protocol, and the
// body talks to the server through its proto (p.do, p.subscribe, ...),
// which is HTTP/1.1 on a raw socket or net/http for http1, and net/http's
// HTTP/2 client for h2c (prior knowledge on the plain listener) and h2
// (TLS with ALPN). Every answer is checked to have come over the protocol
// asked for. A test that runs over HTTP/1.1 only says why.

// proto is one protocol the tests speak.
type proto struct {
	name string
	h2   bool
	tls  bool
}

var (
	http1    = proto{name: "http1.1"}
	h2c      = proto{name: "h2c", h2: true}
	h2tls    = proto{name: "h2", h2: true, tls: true}
	http1tls = proto{name: "http1.1-tls", tls: true}
	// protocols are those every end-to-end test runs over; TLS has its own
	// tests (TestTLSStream over both of its protocols).
	protocols = []proto{http1, h2c}
)

// forEachProto runs f as one parallel subtest per protocol.
func forEachProto(t *testing.T, f func(t *testing.T, p proto)) {
	t.Helper()
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			f(t, p)
		})
	}
}

// sharedCert is the certificate every TLS test server of the package
// serves, made once (its clients trust only it).
var sharedCert = sync.OnceValue(func() *testcert.Cert {
	c, err := testcert.Make()
	if err != nil {
		panic(err)
	}
	return c
})

// startServer is startServer for p: TLS with the shared certificate for h2.
func (p proto) startServer(t testing.TB, ecfg engine.Config, tcfg Config) (string, *engine.Engine, *Server) {
	t.Helper()
	if p.tls && tcfg.TLS == nil {
		tcfg.TLS = sharedCert().Server(t)
	}
	addr, eng, srv := startServer(t, ecfg, tcfg)
	t.Cleanup(func() {
		for _, c := range h2Clients {
			c.CloseIdleConnections()
		}
	})
	return addr, eng, srv
}

// url is the URL of target (path and query) on addr in p's scheme.
func (p proto) url(addr, target string) string {
	if p.tls {
		return "https://" + addr + target
	}
	return "http://" + addr + target
}

// h2Transport is net/http's HTTP/2 client, with prior knowledge on plain
// connections and ALPN on TLS ones. window, when not zero, is each stream's
// receive window: a stream whose body is not read stalls once it is full,
// and only that stream.
func h2Transport(window int) *http.Transport {
	var ps http.Protocols
	ps.SetUnencryptedHTTP2(true)
	ps.SetHTTP2(true)
	tr := &http.Transport{
		Protocols:          &ps,
		TLSClientConfig:    &tls.Config{RootCAs: sharedCert().Pool, ServerName: "127.0.0.1"},
		DisableCompression: true, // send what the HTTP/1.1 tests send: no Accept-Encoding
		HTTP2:              &http.HTTP2Config{},
	}
	if window > 0 {
		tr.HTTP2.MaxReceiveBufferPerStream = window
	}
	return tr
}

var (
	// http1TLSClient speaks HTTP/1.1 over TLS only (ALPN http/1.1).
	http1TLSClient = &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: sharedCert().Pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}},
	}}
	h2Client     = &http.Client{Transport: h2Transport(0)}
	h2TinyClient = &http.Client{Transport: h2Transport(16 << 10)}
	h2Clients    = []*http.Client{h2Client, h2TinyClient, http1TLSClient}
)

// do sends one request (url built with "http://"; p's scheme replaces it)
// and requires the answer to come over p.
func (p proto) do(t testing.TB, method, url, body string, headers ...string) answer {
	t.Helper()
	if !p.h2 && !p.tls {
		return do(t, method, url, body, headers...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.rescheme(url), rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == bodyOfUnknownLength {
			// A reader of unknown length: no content-length is sent.
			req.Body, req.ContentLength = io.NopCloser(io.MultiReader(strings.NewReader(headers[i+1]))), -1
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	c, major := h2Client, 2
	if !p.h2 {
		c, major = http1TLSClient, 1
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", method, url, p.name, err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != major {
		t.Fatalf("%s %s: answered over %s, want HTTP/%d", method, url, resp.Proto, major)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

// rawGet sends GET target exactly as written (no path cleaning, escapes
// kept) and reads the answer; a redirect is not followed.
func (p proto) rawGet(t testing.TB, addr, target string) answer {
	t.Helper()
	if !p.h2 {
		return rawExchange(t, addr, "GET "+target+" HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url(addr, "/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Path, req.URL.Opaque = "", target // sent as :path as is
	resp, err := h2Client.Transport.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s over %s: %v", target, p.name, err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("GET %s: answered over %s, want HTTP/2", target, resp.Proto)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

// bodyOfUnknownLength, as a header name given to proto.do over HTTP/2,
// sends its value as the body without a content-length.
const bodyOfUnknownLength = "tinysse-test-body-of-unknown-length"

func (p proto) rescheme(url string) string {
	if p.tls {
		return strings.Replace(url, "http://", "https://", 1)
	}
	return url
}

// post, publishJSON and publishTo are the helpers of the same name over p.
func (p proto) post(t testing.TB, addr, target, ctype, body string) answer {
	t.Helper()
	var hdr []string
	if ctype != "" {
		hdr = []string{"Content-Type", ctype}
	}
	return p.do(t, http.MethodPost, "http://"+addr+target, body, hdr...)
}

func (p proto) publishJSON(t testing.TB, addr, body string) publishReply {
	t.Helper()
	return p.publishTo(t, addr, "/sse", body)
}

func (p proto) publishTo(t testing.TB, addr, target, body string) publishReply {
	t.Helper()
	if !p.h2 && !p.tls {
		return publishTo(t, addr, target, body)
	}
	return checkPublished(t, target, body, p.post(t, addr, target, "application/json", body))
}

// subscribe opens a stream over p and reads its head.
func (p proto) subscribe(t testing.TB, addr, target string, headers ...string) *sseClient {
	t.Helper()
	switch {
	case p.tls && !p.h2:
		return startStream(t, dialTLS(t, addr, &tls.Config{RootCAs: sharedCert().Pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}}), target, headers...)
	case !p.h2:
		return subscribe(t, addr, target, headers...)
	}
	return p.subscribeWith(t, h2Client, addr, target, headers...)
}

// subscribeStalling opens a stream that the test may stop reading: over
// HTTP/1.1 through a tiny socket receive buffer, over HTTP/2 with a small
// stream window (the connection, shared with other streams, stays fine).
func (p proto) subscribeStalling(t testing.TB, addr, target string) *sseClient {
	t.Helper()
	if !p.h2 {
		return startStream(t, dialTinyBuffer(t, addr), target)
	}
	return p.subscribeWith(t, h2TinyClient, addr, target)
}

// subscribeBody opens a stream over HTTP/2 whose request body is body.
func (p proto) subscribeBody(t testing.TB, addr, target string, body io.Reader) *sseClient {
	t.Helper()
	return p.request(t, h2Client, addr, target, body)
}

func (p proto) subscribeWith(t testing.TB, c *http.Client, addr, target string, headers ...string) *sseClient {
	t.Helper()
	return p.request(t, c, addr, target, nil, headers...)
}

func (p proto) request(t testing.TB, c *http.Client, addr, target string, body io.Reader, headers ...string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url(addr, target), body)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	type result struct {
		resp *http.Response
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := c.Do(req)
		got <- result{resp, err}
	}()
	var r result
	select {
	case r = <-got:
	case <-time.After(wait):
		cancel()
		t.Fatalf("subscribe %s over %s: no answer in %v", target, p.name, wait)
	}
	if r.err != nil {
		cancel()
		t.Fatalf("subscribe %s over %s: %v", target, p.name, r.err)
	}
	if r.resp.ProtoMajor != 2 {
		cancel()
		t.Fatalf("subscribe %s: answered over %s, want HTTP/2", target, r.resp.Proto)
	}
	bc := newBodyConn(r.resp.Body, cancel)
	t.Cleanup(func() { bc.Close() })
	s := newSSEClient(testserver.NewStream(t, bc, r.resp.StatusCode, r.resp.Header))
	if s.Status != http.StatusOK {
		_ = bc.SetReadDeadline(time.Now().Add(wait))
		b, _ := io.ReadAll(bc)
		s.Body = string(b)
	}
	return s
}

// bodyConn reads an HTTP/2 response body as the tests read a socket: with
// read deadlines. A goroutine reads the body ahead by one chunk at most,
// so a test that stops reading stops the stream's window too.
type bodyConn struct {
	body   io.ReadCloser
	cancel context.CancelFunc
	chunks chan []byte // closed after the body's last chunk
	err    error       // why the body ended; written before chunks is closed

	// Owned by the reader (the test's goroutine).
	pending []byte
	dl      time.Time
	ended   error
}

func newBodyConn(body io.ReadCloser, cancel context.CancelFunc) *bodyConn {
	b := &bodyConn{body: body, cancel: cancel, chunks: make(chan []byte)}
	go b.pump()
	return b
}

func (b *bodyConn) pump() {
	defer close(b.chunks)
	for {
		buf := make([]byte, 16<<10)
		n, err := b.body.Read(buf)
		if n > 0 {
			b.chunks <- buf[:n]
		}
		if err != nil {
			if err != io.EOF {
				// A reset stream (the server cut it) ends it as surely
				// as its end: the tests treat both as closed.
				err = fmt.Errorf("%w (%v)", io.EOF, err)
			}
			b.err = err
			return
		}
	}
}

func (b *bodyConn) Read(p []byte) (int, error) {
	if len(b.pending) == 0 {
		if b.ended != nil {
			return 0, b.ended
		}
		var timeout <-chan time.Time
		if !b.dl.IsZero() {
			d := time.Until(b.dl)
			if d <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			tm := time.NewTimer(d)
			defer tm.Stop()
			timeout = tm.C
		}
		select {
		case c, ok := <-b.chunks:
			if !ok {
				b.ended = b.err
				return 0, b.ended
			}
			b.pending = c
		case <-timeout:
			return 0, os.ErrDeadlineExceeded
		}
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	return n, nil
}

func (b *bodyConn) SetReadDeadline(t time.Time) error {
	b.dl = t
	return nil
}

// Close leaves: the stream is reset (RST_STREAM CANCEL).
func (b *bodyConn) Close() error {
	b.cancel()
	return b.body.Close()
}
