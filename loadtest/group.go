package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, from 1µs to 100s, to three
// significant digits.
const (
	latMin, latMax = 1, 100e6
	latDigits      = 3
)

func newHistogram() *hdr.Histogram { return hdr.New(latMin, latMax, latDigits) }

// group holds one share of the subscribers, in one process: the parent's
// own when there are few, otherwise one per worker process.
type group struct {
	cfg     workerConfig
	target  *Target
	url     *url.URL
	request []byte // the subscribe request, the same for every sub

	mu      sync.Mutex // guards subs[i].conn (while connecting), closing and h2
	subs    []*sub
	closing bool // set once: from here on a connection that ends is ours, not a drop

	// With cfg.HTTP2, the connections the streams share: stream i uses
	// h2[i % len]; each is made by the first stream that needs it.
	h2 []*h2conn

	wg sync.WaitGroup // one per sub goroutine

	connected atomic.Int64 // streams ready and still open
	failedN   atomic.Int64 // never became ready
	dropped   atomic.Int64 // became ready, then ended before closing

	// Histograms and counts are sharded by sub index so that the streams'
	// flushes rarely wait on each other.
	shards []histShard

	errMu  sync.Mutex
	errors map[string]int // guarded by errMu: why streams failed or dropped
}

type histShard struct {
	mu sync.Mutex
	h  *hdr.Histogram // guarded by mu: latencies since the last report
	c  counts         // guarded by mu: since the start
	_  [64]byte
}

func newGroup(cfg workerConfig) (*group, error) {
	t := targets[cfg.Target]
	if t == nil {
		return nil, fmt.Errorf("unknown target %q", cfg.Target)
	}
	u, err := targetURL(cfg.URL, t.SubPath)
	if err != nil {
		return nil, err
	}
	if cfg.ReadBuffer < minReadBuffer { // the flag refuses it; a worker's config is checked again
		return nil, fmt.Errorf("read buffer of %d bytes: at least %d", cfg.ReadBuffer, minReadBuffer)
	}
	g := &group{
		cfg:     cfg,
		target:  t,
		url:     u,
		request: t.AppendSubscribe(nil, u),
		subs:    make([]*sub, cfg.Subscribers),
		shards:  make([]histShard, 8),
		errors:  make(map[string]int),
	}
	for i := range g.shards {
		g.shards[i].h = newHistogram()
	}
	for i := range g.subs {
		g.subs[i] = &sub{g: g, idx: i}
	}
	if cfg.HTTP2 {
		if cfg.H2Conns < 1 {
			return nil, errors.New("HTTP/2 needs at least one connection")
		}
		for range cfg.H2Conns {
			g.h2 = append(g.h2, &h2conn{g: g, streams: make(map[uint32]*sub)})
		}
	}
	return g, nil
}

// connectAll starts the subs at cfg.ConnectRate per second until all are
// started or ctx ends.
func (g *group) connectAll(ctx context.Context) {
	start := time.Now()
	for i, s := range g.subs {
		if g.cfg.ConnectRate > 0 {
			at := start.Add(time.Duration(float64(i) / g.cfg.ConnectRate * float64(time.Second)))
			if d := time.Until(at); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			s.run(ctx)
		}()
	}
}

// track records a sub's connection so that close can end it. It reports
// false if the group is already closing.
func (g *group) track(s *sub, conn io.Closer) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return false
	}
	s.conn = conn
	return true
}

// close ends every stream and waits (bounded) for their goroutines.
func (g *group) close(wait time.Duration) {
	g.mu.Lock()
	g.closing = true
	for _, s := range g.subs {
		if s.conn != nil {
			s.conn.Close()
		}
	}
	g.mu.Unlock()
	for _, c := range g.h2 {
		c.close()
	}
	waitFor(&g.wg, wait)
}

// waitFor waits for wg up to d and reports whether it was done in time.
// After a timeout, a goroutine stays waiting on wg.
func waitFor(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

func (g *group) isClosing() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closing
}

// failed: s never became ready.
func (g *group) failed(s *sub, err error) {
	if s.conn != nil {
		s.conn.Close()
	}
	if errors.Is(err, context.Canceled) || g.isClosing() {
		return
	}
	g.failedN.Add(1)
	g.noteError("connect: " + describe(err))
}

// ended: s's stream ended, by our close or not.
func (g *group) ended(s *sub, err error) {
	s.conn.Close()
	if s.readyNS == 0 {
		g.failed(s, err)
		return
	}
	g.connected.Add(-1)
	if !g.isClosing() {
		g.dropped.Add(1)
		g.noteError("stream ended: " + describe(err))
	}
}

func (g *group) noteError(e string) {
	g.errMu.Lock()
	g.errors[e]++
	g.errMu.Unlock()
}

// record takes a sub's counts and latencies.
func (g *group) record(idx int, c *counts, lat []int64) {
	sh := &g.shards[idx%len(g.shards)]
	sh.mu.Lock()
	sh.c.add(*c)
	for _, v := range lat {
		_ = sh.h.RecordValue(v)
	}
	sh.mu.Unlock()
}

// report gathers the counts so far and the latencies since the last report.
// The final one adds, for each sub that became ready, when it did and how
// many of the messages sent after that it got.
func (g *group) report(final bool) workerReport {
	r := workerReport{
		Final:     final,
		Connected: g.connected.Load(),
		Failed:    g.failedN.Load(),
		Dropped:   g.dropped.Load(),
	}
	delta := newHistogram()
	for i := range g.shards {
		sh := &g.shards[i]
		sh.mu.Lock()
		r.Counts.add(sh.c)
		delta.Merge(sh.h)
		sh.h.Reset()
		sh.mu.Unlock()
	}
	if delta.TotalCount() > 0 {
		b, err := delta.Encode(hdr.V2CompressedEncodingCookieBase)
		if err == nil {
			r.Hist = string(b)
		}
	}
	if final {
		for _, s := range g.subs {
			if s.readyNS != 0 {
				r.Ready = append(r.Ready, s.readyNS)
				r.Fresh = append(r.Fresh, s.fresh)
			}
		}
		g.errMu.Lock()
		if len(g.errors) > 0 {
			r.Errors = make(map[string]int, len(g.errors))
			for k, v := range g.errors {
				r.Errors[k] = v
			}
		}
		g.errMu.Unlock()
	}
	return r
}
