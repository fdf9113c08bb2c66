package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/tinysse/tinysse/internal/sseparse"
	"io"
	"net"
	"net/http/httputil"
	"time"
)

// sub is one subscriber connection: a raw HTTP/1.1 GET on a net.Conn read
// through a small buffer (grown while the stream is busy) by a tiny SSE parser. It is cheaper than
// net/http by a goroutine and several buffers per connection, which is what
// lets one process hold thousands of streams.
//
// All fields are owned by the sub's goroutine (run), except conn, which
// is set under g.mu (track) so that the group can close it; the group
// reads readyNS and fresh only after run has returned.
type sub struct {
	g    *group
	idx  int       // index in the group, also picks the histogram shard
	conn io.Closer // the socket (HTTP/1.1), or the stream (HTTP/2: closing resets it)

	h2 h2sub // HTTP/2 only (h2.go)

	readyNS int64    // unix ns at which the stream counted as subscribed; 0 if never
	fresh   int64    // deliveries sent at or after readyNS, each counted once
	windows []window // by publisher index

	// The message being parsed: its data line's payload, until the blank
	// line that dispatches it.
	pending     bool
	pendingPub  int
	pendingSeq  uint64
	pendingSent int64

	long  []byte         // a line of the response head longer than the read buffer, assembled
	lines sseparse.Lines // the event stream's lines (HTML Standard: CR, LF or CRLF)
	now   int64          // unix ns at which the bytes being parsed were read

	// Counts and latencies not yet handed to the group (see flush).
	c    counts
	lat  [32]int64 // microseconds
	nlat int
}

// counts are one sub's (or a group's) delivery counters.
type counts struct {
	Deliveries int64 `json:"deliveries"` // messages with a payload, all of them
	Early      int64 `json:"early"`      // sent before the stream was ready: not expected, not lost
	Duplicates int64 `json:"duplicates"`
	OutOfOrder int64 `json:"out_of_order"`
	Foreign    int64 `json:"foreign"` // messages without our payload
	Lagged     int64 `json:"lagged"`  // ": lagged" comments (server dropped us as too slow)
}

func (c *counts) add(o counts) {
	c.Deliveries += o.Deliveries
	c.Early += o.Early
	c.Duplicates += o.Duplicates
	c.OutOfOrder += o.OutOfOrder
	c.Foreign += o.Foreign
	c.Lagged += o.Lagged
}

var errHandshake = errors.New("not an event stream")

// run connects, waits for the stream to be ready, then reads it until the
// connection ends. It reports how the stream went to the group.
func (s *sub) run(ctx context.Context) {
	g := s.g
	if g.cfg.HTTP2 {
		s.runH2(ctx)
		return
	}
	err := s.connect(ctx)
	if err != nil {
		g.failed(s, err)
		return
	}
	err = s.read()
	s.flush()
	g.ended(s, err)
}

func (s *sub) connect(ctx context.Context) error {
	g := s.g
	d := net.Dialer{Timeout: g.cfg.HandshakeTimeout}
	conn, err := d.DialContext(ctx, "tcp", g.url.Host)
	if err != nil {
		return err
	}
	if !g.track(s, conn) {
		conn.Close()
		return context.Canceled
	}
	_ = conn.SetDeadline(time.Now().Add(g.cfg.HandshakeTimeout))
	if _, err := conn.Write(g.request); err != nil {
		return err
	}
	return nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// read parses the response head and the event stream. It returns when the
// connection ends (the group closing it included).
func (s *sub) read() error {
	g := s.g
	br := bufio.NewReaderSize(s.conn.(net.Conn), g.cfg.ReadBuffer)
	chunked, err := s.readHead(br)
	if err != nil {
		return err
	}
	if chunked {
		br = bufio.NewReaderSize(httputil.NewChunkedReader(br), g.cfg.ReadBuffer)
	}
	if g.target.Ready == nil {
		s.ready()
	}
	// The rest of the stream is read into a buffer of our own: it starts
	// at --read-buffer, so that thousands of idle streams stay small, and
	// doubles (to maxReadBuffer) whenever one read fills it, so that a
	// busy stream takes one system call per many messages. Without chunked
	// framing br is done with once its buffered bytes are parsed (an idle
	// stream then holds one buffer, not two).
	var r io.Reader = br
	if !chunked {
		if n := br.Buffered(); n > 0 {
			b, _ := br.Peek(n)
			s.feed(b)
		}
		r = s.conn.(net.Conn)
	}
	buf := make([]byte, g.cfg.ReadBuffer)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			s.feed(buf[:n])
		}
		if err != nil {
			return err
		}
		buf = grown(buf, n)
	}
}

// minReadBuffer and maxReadBuffer bound a stream's read buffer: the
// first is the least --read-buffer takes, the second its growth.
const (
	minReadBuffer = 64
	maxReadBuffer = 64 << 10
)

// grown is the buffer for the next read after one that gave n bytes into
// buf: twice as large (at most maxReadBuffer) if that read filled it.
func grown(buf []byte, n int) []byte {
	if n < len(buf) || len(buf) >= maxReadBuffer {
		return buf
	}
	return make([]byte, min(2*len(buf), maxReadBuffer))
}

// feed parses what one read gave (a socket read, or an HTTP/2 DATA
// frame): every message in it arrived at the same time, so the clock is
// read once, and the counts go to the group once.
func (s *sub) feed(b []byte) {
	s.now = time.Now().UnixNano()
	s.lines.Feed(b, s.line)
	s.flush()
}

// line takes one line of the event stream from s.lines: before the stream
// counts as subscribed, the target's Ready judges it; after, parseLine.
func (s *sub) line(line []byte, _ string) {
	if line == nil {
		return // the LF of a CRLF split across reads
	}
	if s.readyNS == 0 {
		if s.g.target.Ready(line) {
			if s.g.cfg.HTTP2 {
				s.h2.isReady.Store(true)
			}
			s.ready()
		}
		return
	}
	s.parseLine(line)
}

func (s *sub) ready() {
	s.readyNS = time.Now().UnixNano()
	if s.g.cfg.HTTP2 {
		s.h2.handshake.Stop()
	} else {
		_ = s.conn.(net.Conn).SetDeadline(time.Time{})
	}
	s.g.connected.Add(1)
}

// readHead reads the response head: a 200 with an event stream, or an error
// that quotes the status line.
func (s *sub) readHead(br *bufio.Reader) (chunked bool, err error) {
	status, err := s.readLine(br)
	if err != nil {
		return false, fmt.Errorf("reading response: %w", err)
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200")) && !bytes.HasPrefix(status, []byte("HTTP/1.0 200")) {
		return false, fmt.Errorf("%w: %q", errHandshake, status)
	}
	for {
		h, err := s.readLine(br)
		if err != nil {
			return false, fmt.Errorf("reading response head: %w", err)
		}
		if len(h) == 0 {
			return chunked, nil
		}
		k, v, _ := bytes.Cut(h, []byte(":"))
		if bytes.EqualFold(bytes.TrimSpace(k), []byte("Transfer-Encoding")) &&
			bytes.Contains(bytes.ToLower(v), []byte("chunked")) {
			chunked = true
		}
	}
}

// readLine returns the next line without its "\n" or "\r\n". The slice is
// valid until the next call.
func (s *sub) readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		s.long = append(s.long[:0], line...)
		for err == bufio.ErrBufferFull {
			line, err = br.ReadSlice('\n')
			s.long = append(s.long, line...)
		}
		line = s.long
	}
	if err != nil {
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// parseLine applies one line of the event stream (HTML Standard,
// "Server-sent events": a blank line dispatches the event; fields split
// by sseparse.Field). Only what the tool counts is kept: the first data
// line's payload and ": lagged" comments.
func (s *sub) parseLine(line []byte) {
	if len(line) == 0 {
		if s.pending {
			s.pending = false
			s.deliver(s.now)
		}
		return
	}
	name, value, comment := sseparse.Field(line)
	switch {
	case comment:
		if bytes.HasPrefix(value, []byte("lagged")) {
			s.c.Lagged++
		}
	case string(name) == "data":
		if s.pending {
			return // a later data line of the same event
		}
		if f := s.g.target.Payload; f != nil {
			p, isPub := f(value)
			if !isPub {
				return // the server's own event
			}
			value = p
		}
		pub, seq, sent, ok := parsePayload(value)
		if !ok {
			s.c.Foreign++
			return
		}
		s.pending, s.pendingPub, s.pendingSeq, s.pendingSent = true, pub, seq, sent
	}
}

// deliver checks the pending message: its latency, order and whether the
// stream had to get it.
func (s *sub) deliver(now int64) {
	s.c.Deliveries++
	for len(s.windows) <= s.pendingPub {
		s.windows = append(s.windows, window{})
	}
	switch s.windows[s.pendingPub].see(s.pendingSeq) {
	case duplicate:
		s.c.Duplicates++
		return
	case late, tooLate:
		s.c.OutOfOrder++
	}
	if s.pendingSent >= s.readyNS {
		s.fresh++
	} else {
		s.c.Early++
	}
	us := (now - s.pendingSent) / 1e3
	s.lat[s.nlat] = max(us, 1)
	s.nlat++
	if s.nlat == len(s.lat) {
		s.flush()
	}
}

// flush hands counts and latencies to the group.
func (s *sub) flush() {
	if s.nlat == 0 && s.c == (counts{}) {
		return
	}
	s.g.record(s.idx, &s.c, s.lat[:s.nlat])
	s.c, s.nlat = counts{}, 0
}

// describe shortens a connection error for the report.
func describe(err error) string {
	var ne *net.OpError
	if errors.As(err, &ne) && ne.Err != nil {
		return ne.Op + ": " + ne.Err.Error()
	}
	return err.Error()
}
