package testserver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tinysse/tinysse/internal/sseparse"
)

// StreamConn is what a stream is read from: a raw socket (HTTP/1.1), or
// an HTTP/2 response body with a read deadline.
type StreamConn interface {
	io.ReadCloser
	SetReadDeadline(time.Time) error
}

// Stream is one subscriber. Its frames are read by sseparse, the module's
// one SSE parser, so a test judges the server's bytes by what a browser's
// EventSource would see; ReadUntil reads the raw bytes instead.
type Stream struct {
	T      testing.TB // the test a failure is reported to
	Conn   StreamConn
	Status int
	Header http.Header
	Body   string // the body of a refusal (Status != 200)
	// Timeout bounds MustNext and ReadUntil; Wait when 0.
	Timeout time.Duration
	p       *sseparse.Parser
	buf     []byte
	raw     []byte // read by ReadUntil and not consumed yet
}

// NewStream reads the stream of an answer whose head was read already.
func NewStream(t testing.TB, c StreamConn, status int, header http.Header) *Stream {
	return &Stream{T: t, Conn: c, Status: status, Header: header, p: sseparse.New(), buf: make([]byte, 32<<10)}
}

// On returns s reporting to t: a stream made by a test and used in its
// subtests must fail the subtest. Both share the connection and the
// parser (bytes not parsed yet are given to the parser first).
func (s *Stream) On(t testing.TB) *Stream {
	s.feedRaw()
	c := *s
	c.T = t
	return &c
}

// Subscribe opens a stream at target (path and query) on a new connection;
// headers are name, value pairs. It returns once the response head is
// read; a refusal's body is read whole into Body.
func Subscribe(t testing.TB, addr, target string, headers ...string) *Stream {
	t.Helper()
	return StartStream(t, Dial(t, addr), target, headers...)
}

// Open subscribes and requires the opening ": ok" block.
func Open(t testing.TB, addr, target string, headers ...string) *Stream {
	t.Helper()
	s := Subscribe(t, addr, target, headers...)
	s.ExpectOK()
	return s
}

// StartStream sends the subscribe request on c and reads the response
// head.
func StartStream(t testing.TB, c net.Conn, target string, headers ...string) *Stream {
	t.Helper()
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\n", target, c.RemoteAddr())
	for i := 0; i+1 < len(headers); i += 2 {
		fmt.Fprintf(&req, "%s: %s\r\n", headers[i], headers[i+1])
	}
	req.WriteString("\r\n")
	_ = c.SetDeadline(time.Now().Add(Wait))
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
	s := NewStream(t, c, resp.StatusCode, resp.Header)
	if s.Status != http.StatusOK {
		br := bufio.NewReader(io.MultiReader(bytes.NewReader(head[i:]), c))
		body, _ := io.ReadAll(io.LimitReader(br, max(resp.ContentLength, 0)))
		s.Body = string(body)
		return s
	}
	s.raw = append(s.raw, head[i:]...)
	return s
}

// Parser is the stream's parser, which keeps every event and comment.
func (s *Stream) Parser() *sseparse.Parser { return s.p }

func (s *Stream) feedRaw() {
	if len(s.raw) > 0 {
		s.p.Feed(s.raw)
		s.raw = nil
	}
}

// Next returns the next block of the stream, waiting at most d.
func (s *Stream) Next(d time.Duration) (sseparse.Block, error) {
	s.feedRaw()
	deadline := time.Now().Add(d)
	for {
		if b, ok := s.p.Next(); ok {
			return b, nil
		}
		_ = s.Conn.SetReadDeadline(deadline)
		n, err := s.Conn.Read(s.buf)
		s.p.Feed(s.buf[:n])
		if err != nil {
			if b, ok := s.p.Next(); ok {
				return b, nil
			}
			return sseparse.Block{}, err
		}
	}
}

// MustNext returns the next block or fails the test after Wait.
func (s *Stream) MustNext() sseparse.Block {
	s.T.Helper()
	b, err := s.Next(s.timeout())
	if err != nil {
		s.T.Fatalf("waiting for a block: %v", err)
	}
	return b
}

// NextSkipping returns the next block for which skip is false.
func (s *Stream) NextSkipping(skip func(sseparse.Block) bool) sseparse.Block {
	s.T.Helper()
	for {
		if b := s.MustNext(); !skip(b) {
			return b
		}
	}
}

// NextEvent returns the next dispatched event, skipping blocks that
// dispatch none (comments, keep-alives, an id alone).
func (s *Stream) NextEvent() sseparse.Event {
	s.T.Helper()
	return *s.NextSkipping(func(b sseparse.Block) bool { return b.Event == nil }).Event
}

// ExpectLines reads the next block and requires exactly these lines.
func (s *Stream) ExpectLines(want ...string) sseparse.Block {
	s.T.Helper()
	b := s.MustNext()
	if !slices.Equal(b.Lines, want) {
		s.T.Fatalf("block %q, want lines %q", b.Raw, want)
	}
	return b
}

// ExpectOK requires a 200 and reads the stream's opening ": ok" block.
func (s *Stream) ExpectOK() {
	s.T.Helper()
	if s.Status != http.StatusOK {
		s.T.Fatalf("subscribe: status %d %s, want 200", s.Status, s.Body)
	}
	if b := s.MustNext(); b.Raw != ": ok\n\n" {
		s.T.Fatalf("stream starts with %q, want \": ok\\n\\n\"", b.Raw)
	}
}

// Drain reads blocks until the server closes the stream, waiting at most d
// in all; it returns the blocks read and fails if the stream stays open.
func (s *Stream) Drain(d time.Duration) []sseparse.Block {
	s.T.Helper()
	var got []sseparse.Block
	deadline := time.Now().Add(d)
	for {
		b, err := s.Next(time.Until(deadline))
		if err == nil {
			got = append(got, b)
			continue
		}
		if IsClosed(err) {
			return got
		}
		s.T.Fatalf("stream still open after %v (err %v); read %d blocks", d, err, len(got))
	}
}

// Quiet requires that no block for which skip is false (nil: no block)
// arrives for d.
func (s *Stream) Quiet(d time.Duration, skip func(sseparse.Block) bool) {
	s.T.Helper()
	deadline := time.Now().Add(d)
	for {
		b, err := s.Next(time.Until(deadline))
		if err != nil {
			if !IsTimeout(err) {
				s.T.Fatalf("stream failed: %v", err)
			}
			return
		}
		if skip == nil || !skip(b) {
			s.T.Fatalf("unexpected block %q", b.Raw)
		}
	}
}

// ReadUntil reads the raw stream until it holds marker and returns
// everything up to and including it (bytes not yet given to the parser).
func (s *Stream) ReadUntil(marker string) string {
	s.T.Helper()
	_ = s.Conn.SetReadDeadline(time.Now().Add(s.timeout()))
	for {
		if i := bytes.Index(s.raw, []byte(marker)); i >= 0 {
			out := string(s.raw[:i+len(marker)])
			s.raw = s.raw[i+len(marker):]
			return out
		}
		n, err := s.Conn.Read(s.buf)
		s.raw = append(s.raw, s.buf[:n]...)
		if err != nil && n == 0 {
			s.T.Fatalf("waiting for %q: %v (have %q)", marker, err, s.raw)
		}
	}
}

// TakeRaw returns the bytes read and not yet parsed (past the head, or
// past ReadUntil's marker) and forgets them: for a test that reads the
// connection itself from there on.
func (s *Stream) TakeRaw() []byte {
	b := s.raw
	s.raw = nil
	return b
}

// ExpectClosed requires the server to close the stream with nothing more.
func (s *Stream) ExpectClosed() {
	s.T.Helper()
	_ = s.Conn.SetReadDeadline(time.Now().Add(Wait))
	rest, err := io.ReadAll(s.Conn)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		s.T.Fatalf("stream not closed: %v", err)
	}
	if len(s.raw)+len(rest) != 0 {
		s.T.Errorf("before closing the stream carried %q", append(s.raw, rest...))
	}
}

func (s *Stream) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return Wait
}

// Close closes the connection.
func (s *Stream) Close() { s.Conn.Close() }

// IsClosed says whether err is the peer closing the stream.
func IsClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

// IsTimeout says whether err is a read deadline passing.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// IsKeepAlive matches a keep-alive comment block with the default text.
func IsKeepAlive(b sseparse.Block) bool { return b.Raw == ": keep-alive\n\n" }
