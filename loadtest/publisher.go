package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// publisher sends publishes one after another on one keep-alive HTTP/1.1
// connection, so the server sees its messages in seq order. It is owned
// by one goroutine (loop).
type publisher struct {
	idx    int
	target *Target
	url    *url.URL
	opts   *publishOptions

	conn net.Conn
	br   *bufio.Reader

	seq    uint64
	sent   []int64 // send times of acknowledged publishes, in seq order
	errors map[string]int
	failed int64

	data, id, req, body []byte
	datas, ids          [][]byte // a batch's payloads and ids (--batch)
}

type publishOptions struct {
	Rate     float64 // per second; <0 as fast as possible
	Duration time.Duration
	Count    int64 // 0 = no limit
	Size     int
	WithID   bool
	// Publishers is how many connections publish from the start. At a
	// fixed rate, up to MaxPublishers are opened while the pacer finds
	// every one busy.
	Publishers, MaxPublishers int
	// Batch, above 1, sends that many messages per request (--batch:
	// tinysse's batch publish); Rate still counts messages.
	Batch int
}

// publishRun is the publishing phase: publishers fed by a pacer.
type publishRun struct {
	target *Target
	url    *url.URL
	opts   *publishOptions

	mu   sync.Mutex   // guards pubs while run runs
	pubs []*publisher // index = publisher number in the payload
	wg   sync.WaitGroup

	started atomic.Int64 // publishes started, all publishers
	acked   atomic.Int64
	skipped atomic.Int64 // pacer ticks dropped: every publisher busy, no more allowed
}

func newPublishRun(t *Target, u *url.URL, o *publishOptions) *publishRun {
	return &publishRun{target: t, url: u, opts: o}
}

// run publishes until the duration or count is reached or ctx ends.
func (r *publishRun) run(ctx context.Context) {
	o := r.opts
	limit := o.Duration
	if o.Rate > 0 {
		// The pacer stops after rate x duration ticks; the limit only
		// bounds publishers that fall behind.
		limit += max(time.Second, o.Duration/10)
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var ticks chan struct{}
	if o.Rate > 0 {
		// A tick waits at most ~10ms for a free publisher before another
		// connection is opened, or, at MaxPublishers, the tick is dropped
		// and counted: the rate stays honest.
		ticks = make(chan struct{}, max(1, int(o.Rate/100)))
		go r.pace(ctx, ticks)
	}
	for range o.Publishers {
		r.add(ctx, ticks)
	}
	r.wg.Wait()
	for _, p := range r.publishers() {
		if p.conn != nil {
			p.conn.Close()
		}
	}
}

// add starts one more publisher, unless there are MaxPublishers already.
func (r *publishRun) add(ctx context.Context, ticks <-chan struct{}) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pubs) >= max(r.opts.Publishers, r.opts.MaxPublishers) {
		return false
	}
	p := &publisher{idx: len(r.pubs), target: r.target, url: r.url, opts: r.opts, errors: make(map[string]int)}
	r.pubs = append(r.pubs, p)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		p.loop(ctx, r, ticks)
	}()
	return true
}

func (r *publishRun) publishers() []*publisher {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pubs
}

// pace puts one tick in ticks per 1/rate seconds, on a fixed schedule from
// the start (a late wake-up sends the missed ticks at once), rate x
// duration ticks in all.
func (r *publishRun) pace(ctx context.Context, ticks chan struct{}) {
	defer close(ticks)
	o := r.opts
	start := time.Now()
	rate := o.Rate / float64(max(o.Batch, 1)) // a tick is one request
	total := int64(rate * o.Duration.Seconds())
	if o.Count > 0 {
		total = min(total, o.Count/int64(max(o.Batch, 1)))
	}
	var n int64
	for {
		elapsed := time.Since(start)
		due := int64(elapsed.Seconds()*rate) + 1
		for ; n < due; n++ {
			if n >= total {
				return
			}
			select {
			case ticks <- struct{}{}:
				continue
			default:
			}
			if !r.add(ctx, ticks) {
				r.skipped.Add(1)
				continue
			}
			select {
			case ticks <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
		next := time.Duration(float64(n) / rate * float64(time.Second))
		select {
		case <-ctx.Done():
			return
		case <-time.After(next - elapsed):
		}
	}
}

func (p *publisher) loop(ctx context.Context, r *publishRun, ticks <-chan struct{}) {
	for ctx.Err() == nil {
		if ticks != nil {
			select {
			case _, ok := <-ticks:
				if !ok {
					return
				}
			case <-ctx.Done():
				return
			}
		}
		per := int64(max(p.opts.Batch, 1))
		if n := r.started.Add(per); p.opts.Count > 0 && n > p.opts.Count {
			return
		}
		if err := p.publish(); err != nil {
			p.failed++
			p.errors[describe(err)]++
			if p.conn != nil && !errors.Is(err, errNotPublished) {
				p.conn.Close()
				p.conn = nil
			}
			// Don't spin on a failing server.
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		r.acked.Add(per)
	}
}

var errNotPublished = errors.New("not published")

// publish sends one message and reads the answer.
func (p *publisher) publish() error {
	if p.conn == nil {
		conn, err := net.DialTimeout("tcp", p.url.Host, 5*time.Second)
		if err != nil {
			return err
		}
		p.conn, p.br = conn, bufio.NewReaderSize(conn, 4096)
	}
	now := time.Now().UnixNano()
	k := max(p.opts.Batch, 1)
	if k == 1 {
		p.seq++
		p.data = appendPayload(p.data[:0], p.idx, p.seq, now, p.opts.Size)
		p.id = p.appendID(p.id[:0], p.seq)
		p.req = p.target.AppendPublish(p.req[:0], p.url, p.id, p.data)
	} else {
		for len(p.datas) < k {
			p.datas, p.ids = append(p.datas, nil), append(p.ids, nil)
		}
		for i := range k {
			seq := p.seq + uint64(i) + 1
			p.datas[i] = appendPayload(p.datas[i][:0], p.idx, seq, now, p.opts.Size)
			p.ids[i] = p.appendID(p.ids[i][:0], seq)
		}
		p.seq += uint64(k)
		p.req = p.target.AppendBatch(p.req[:0], p.url, p.ids[:k], p.datas[:k])
	}
	_ = p.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := p.conn.Write(p.req); err != nil {
		return err
	}
	status, keep, body, err := readResponse(p.br, p.body[:0])
	p.body = body
	if err != nil {
		return err
	}
	if !keep {
		p.conn.Close()
		p.conn = nil
	}
	if !p.target.Published(status, body) {
		return fmt.Errorf("%w: status %d %.60q", errNotPublished, status, body)
	}
	for range k {
		p.sent = append(p.sent, now)
	}
	return nil
}

// appendID appends the id of message seq, if messages carry ids.
func (p *publisher) appendID(dst []byte, seq uint64) []byte {
	if !p.opts.WithID {
		return dst
	}
	dst = strconv.AppendInt(dst, int64(p.idx), 10)
	dst = append(dst, '-')
	return strconv.AppendUint(dst, seq, 10)
}

// maxBody is how much of a publish answer's body is kept for
// Target.Published; the rest is read and discarded.
const maxBody = 4096

// readResponse reads one HTTP/1.1 response and appends up to maxBody bytes
// of its body to body.
func readResponse(br *bufio.Reader, body []byte) (status int, keepAlive bool, _ []byte, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, body, err
	}
	// "HTTP/1.x NNN reason": read in place (the tool makes tens of
	// thousands of these a second next to the server it measures).
	proto, rest := field(line)
	code, _ := field(rest)
	if !bytes.HasPrefix(proto, []byte("HTTP/1.")) || len(code) == 0 {
		return 0, false, body, fmt.Errorf("bad status line %q", line)
	}
	if status, err = strconv.Atoi(string(code)); err != nil {
		return 0, false, body, fmt.Errorf("bad status line %q", line)
	}
	keepAlive = bytes.HasPrefix(proto, []byte("HTTP/1.1"))
	length, chunked := -1, false
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, false, body, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, _ := bytes.Cut(h, []byte(":"))
		k, v = bytes.TrimSpace(k), bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(v)); err != nil || length < 0 {
				return 0, false, body, fmt.Errorf("bad Content-Length %q", v)
			}
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.Contains(bytes.ToLower(v), []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")):
			if bytes.EqualFold(v, []byte("close")) {
				keepAlive = false
			}
		}
	}
	w := &capped{b: body}
	switch {
	case chunked:
		if _, err = io.Copy(w, httputil.NewChunkedReader(br)); err == nil {
			err = skipTrailer(br)
		}
	case length >= 0 && length <= br.Size():
		var b []byte
		if b, err = br.Peek(length); err == nil { // the usual short answer, without a copy buffer
			_, _ = w.Write(b)
			_, err = br.Discard(length)
		}
	case length >= 0:
		_, err = io.CopyN(w, br, int64(length))
	case status != 204 && status != 304:
		// Body until close.
		_, err = io.Copy(w, br)
		keepAlive = false
	}
	return status, keepAlive, w.b, err
}

// field splits b at its first run of white space after any leading one,
// as the first element of bytes.Fields would, without the slice.
func field(b []byte) (first, rest []byte) {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f' }
	i := 0
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	j := i
	for j < len(b) && !isSpace(b[j]) {
		j++
	}
	return b[i:j], b[j:]
}

// capped keeps the first maxBody bytes written to it and drops the rest.
type capped struct{ b []byte }

func (c *capped) Write(p []byte) (int, error) {
	if room := maxBody - len(c.b); room > 0 {
		c.b = append(c.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// skipTrailer reads a chunked body's trailer, up to its blank line.
func skipTrailer(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return nil
		}
	}
}

// timeline of the run's acknowledged publishes; call after run.
func (r *publishRun) timeline() timeline {
	pubs := r.publishers()
	t := make(timeline, len(pubs))
	for i, p := range pubs {
		t[i] = p.sent
	}
	return t
}
