package transport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/sseparse"
)

// The end-to-end tests run the real server on a loopback socket and talk to
// it as clients do: net/http for plain requests, a raw socket and the
// Standard's parser (sseparse_test.go) for streams. Every read has a
// deadline, so a broken server fails a test instead of hanging it.

// wait bounds every single read or request of a test.
const wait = 5 * time.Second

// startServer runs a Server on 127.0.0.1 on a port of the kernel's choice,
// and shuts it down when the test ends.
func startServer(t testing.TB, ecfg engine.Config, tcfg Config) (addr string, eng *engine.Engine, srv *Server) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if ecfg.Logger == nil {
		ecfg.Logger = quiet
	}
	if tcfg.Logger == nil {
		tcfg.Logger = quiet
	}
	eng, err := engine.New(ecfg)
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	srv, err = New(tcfg, eng)
	if err != nil {
		t.Fatalf("transport.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = srv.Shutdown(ctx) // a test may have shut it down already
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(wait):
			t.Errorf("Serve did not return after Shutdown")
		}
		httpClient.CloseIdleConnections()
	})
	return ln.Addr().String(), eng, srv
}

var httpClient = &http.Client{Timeout: wait}

// answer is a complete HTTP response.
type answer struct {
	Status int
	Header http.Header
	Body   string
}

// do sends one request; headers are name, value pairs.
func do(t testing.TB, method, url, body string, headers ...string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

// post publishes body with content type ctype to http://addr+target.
func post(t testing.TB, addr, target, ctype, body string) answer {
	t.Helper()
	var hdr []string
	if ctype != "" {
		hdr = []string{"Content-Type", ctype}
	}
	return do(t, http.MethodPost, "http://"+addr+target, body, hdr...)
}

type publishReply struct {
	Queued      int `json:"queued"`
	Subscribers int `json:"subscribers"`
}

// publishJSON publishes a JSON body to /sse and requires a 202.
func publishJSON(t testing.TB, addr, body string) publishReply {
	t.Helper()
	return publishTo(t, addr, "/sse", body)
}

func publishTo(t testing.TB, addr, target, body string) publishReply {
	t.Helper()
	return checkPublished(t, target, body, post(t, addr, target, "application/json", body))
}

// checkPublished requires a to be a 202 with the publish answer's JSON.
func checkPublished(t testing.TB, target, body string, a answer) publishReply {
	t.Helper()
	if a.Status != http.StatusAccepted {
		t.Fatalf("POST %s %s: status %d %s, want 202", target, body, a.Status, a.Body)
	}
	if ct := a.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("POST %s: content type %q, want application/json", target, ct)
	}
	var r publishReply
	dec := json.NewDecoder(strings.NewReader(a.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("POST %s: 202 body %q: %v", target, a.Body, err)
	}
	return r
}

// wantError checks a refusal: status, JSON content type and a body that is
// exactly one object {"error": "<non-empty>"}.
func wantError(t testing.TB, a answer, status int) {
	t.Helper()
	if a.Status != status {
		t.Errorf("status %d (body %s), want %d", a.Status, a.Body, status)
	}
	if ct := a.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q, want application/json", ct)
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(a.Body), &e); err != nil {
		t.Errorf("error body %q is not JSON: %v", a.Body, err)
		return
	}
	msg, ok := e["error"].(string)
	if len(e) != 1 || !ok || msg == "" {
		t.Errorf("error body %q, want {\"error\": \"...\"}", a.Body)
	}
}

// rawExchange writes req as is on a new connection and reads one response.
func rawExchange(t testing.TB, addr, req string) answer {
	t.Helper()
	c := dial(t, addr)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("write: %v", err)
	}
	return readAnswer(t, bufio.NewReader(c))
}

func readAnswer(t testing.TB, br *bufio.Reader) answer {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialTinyBuffer connects with the smallest receive buffer the kernel
// allows, set before the handshake so the advertised window stays small:
// a client that does not read then stops the server's writes quickly.
func dialTinyBuffer(t testing.TB, addr string) net.Conn {
	t.Helper()
	return dialBuffer(t, addr, 1024)
}

// dialBuffer connects with a receive buffer of size bytes, fixed before
// the handshake (the kernel no longer grows it).
func dialBuffer(t testing.TB, addr string, size int) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: wait, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = setRcvBuf(fd, size)
		})
		return errors.Join(err, serr)
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// streamConn is what a stream is read from: a raw socket (HTTP/1.1), or
// an HTTP/2 response body (bodyConn).
type streamConn interface {
	io.ReadCloser
	SetReadDeadline(time.Time) error
}

// sseClient is one subscriber on a raw socket, or on an HTTP/2 stream.
type sseClient struct {
	t      testing.TB
	conn   streamConn
	Status int
	Header http.Header
	Body   string // the body of a refusal (Status != 200)
	p      *sseparse.Parser
	buf    []byte
}

// on returns s reporting to t: a client made by a test and used in its
// subtests must fail the subtest.
func (s *sseClient) on(t testing.TB) *sseClient {
	c := *s
	c.t = t
	return &c
}

// subscribe opens a stream at target (path and query); headers are name,
// value pairs. It returns once the response head is read.
func subscribe(t testing.TB, addr, target string, headers ...string) *sseClient {
	t.Helper()
	return startStream(t, dial(t, addr), target, headers...)
}

// startStream sends the subscribe request on c and reads the response head.
// A refusal's body is read whole into Body.
func startStream(t testing.TB, c net.Conn, target string, headers ...string) *sseClient {
	t.Helper()
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\n", target, c.RemoteAddr())
	for i := 0; i+1 < len(headers); i += 2 {
		fmt.Fprintf(&req, "%s: %s\r\n", headers[i], headers[i+1])
	}
	req.WriteString("\r\n")
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, req.String()); err != nil {
		t.Fatalf("subscribe %s: %v", target, err)
	}
	_ = c.SetWriteDeadline(time.Time{})

	// Read up to the end of the head by hand, so that no stream byte is
	// left in a reader we do not own.
	var head []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		head = append(head, buf[:n]...)
		if bytes.Contains(head, []byte("\r\n\r\n")) {
			break
		}
		if err != nil {
			t.Fatalf("subscribe %s: reading head: %v (got %q)", target, err, head)
		}
	}
	i := bytes.Index(head, []byte("\r\n\r\n")) + 4
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head[:i])), nil)
	if err != nil {
		t.Fatalf("subscribe %s: bad response head %q: %v", target, head[:i], err)
	}
	s := &sseClient{t: t, conn: c, Status: resp.StatusCode, Header: resp.Header, p: sseparse.New(), buf: buf}
	if s.Status != http.StatusOK {
		rest := head[i:]
		br := bufio.NewReader(io.MultiReader(bytes.NewReader(rest), c))
		body, _ := io.ReadAll(io.LimitReader(br, max(resp.ContentLength, 0)))
		s.Body = string(body)
		return s
	}
	s.p.Feed(head[i:])
	return s
}

// next returns the next block of the stream, waiting at most d.
func (s *sseClient) next(d time.Duration) (sseparse.Block, error) {
	deadline := time.Now().Add(d)
	for {
		if b, ok := s.p.Next(); ok {
			return b, nil
		}
		_ = s.conn.SetReadDeadline(deadline)
		n, err := s.conn.Read(s.buf)
		s.p.Feed(s.buf[:n])
		if err != nil {
			if b, ok := s.p.Next(); ok {
				return b, nil
			}
			return sseparse.Block{}, err
		}
	}
}

// mustNext returns the next block or fails the test.
func (s *sseClient) mustNext() sseparse.Block {
	s.t.Helper()
	b, err := s.next(wait)
	if err != nil {
		s.t.Fatalf("waiting for a block: %v", err)
	}
	return b
}

// nextSkipping returns the next block for which skip is false.
func (s *sseClient) nextSkipping(skip func(sseparse.Block) bool) sseparse.Block {
	s.t.Helper()
	for {
		if b := s.mustNext(); !skip(b) {
			return b
		}
	}
}

// expectLines reads the next block and requires exactly these lines.
func (s *sseClient) expectLines(want ...string) sseparse.Block {
	s.t.Helper()
	b := s.mustNext()
	if !slices.Equal(b.Lines, want) {
		s.t.Fatalf("block %q, want lines %q", b.Raw, want)
	}
	return b
}

// expectOK reads the stream's opening ": ok" block.
func (s *sseClient) expectOK() {
	s.t.Helper()
	if s.Status != http.StatusOK {
		s.t.Fatalf("subscribe: status %d %s, want 200", s.Status, s.Body)
	}
	if b := s.mustNext(); b.Raw != ": ok\n\n" {
		s.t.Fatalf("stream starts with %q, want \": ok\\n\\n\"", b.Raw)
	}
}

// drain reads blocks until the server closes the stream, waiting at most d
// in all; it returns the blocks read and fails if the stream stays open.
func (s *sseClient) drain(d time.Duration) []sseparse.Block {
	s.t.Helper()
	var got []sseparse.Block
	deadline := time.Now().Add(d)
	for {
		b, err := s.next(time.Until(deadline))
		if err == nil {
			got = append(got, b)
			continue
		}
		if isClosed(err) {
			return got
		}
		s.t.Fatalf("stream still open after %v (err %v); read %d blocks", d, err, len(got))
	}
}

// quiet requires that no block arrives for d.
func (s *sseClient) quiet(d time.Duration) {
	s.t.Helper()
	b, err := s.next(d)
	if err == nil {
		s.t.Fatalf("unexpected block %q", b.Raw)
	}
	if !isTimeout(err) {
		s.t.Fatalf("stream failed: %v", err)
	}
}

func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

// isKeepAlive matches a keep-alive comment block with the default text.
func isKeepAlive(b sseparse.Block) bool { return b.Raw == ": keep-alive\n\n" }

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitSubscribers waits until topic has n registered subscribers. A client
// sees ": ok" just before its shard registers it.
func waitSubscribers(t testing.TB, eng *engine.Engine, topic string, n int) {
	t.Helper()
	waitFor(t, wait, fmt.Sprintf("%d subscribers on topic %q", n, topic), func() bool {
		return eng.Subscribers(topic) == n
	})
}
