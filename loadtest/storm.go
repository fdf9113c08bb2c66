package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Reconnect-storm mode (--reconnect-storm, tinysse only): after a deploy
// or a network blip every browser comes back at once with Last-Event-ID.
//
//  1. --subscribers streams connect, spread over --storm-topics topics
//     ("storm-0", ...), and each reads the topic's base message (id
//     "s<k>-0"): RSS then is the steady state.
//  2. Every stream is closed; --storm-behind messages are published to
//     each topic (ids "s<k>-1", ...), in batches.
//  3. All streams reconnect within --storm-window, each with Last-Event-ID
//     "s<k>-0", while a publisher sends --publish-rate messages per second
//     (single publishes, round the topics) and times each 202.
//  4. Each stream must get exactly the missed messages, in order, first;
//     the live ones after them are not checked here.
//
// Reported: time from a reconnect's dial to its first replayed message
// and to its last (p50, p99), streams that failed or got anything else,
// the concurrent publisher's latency, and the server's RSS: steady state,
// peak during the storm (sampled every 20 ms) and their ratio. All
// streams run in this process (one descriptor each): keep --subscribers
// under the open-file limit less a few hundred.

// StormStats is the result of a reconnect-storm run.
type StormStats struct {
	Streams       int     `json:"streams"`
	Topics        int     `json:"topics"`
	Behind        int     `json:"behind"`         // messages missed per stream
	WindowSeconds float64 `json:"window_seconds"` // over which the reconnects were spread
	Complete      int64   `json:"complete"`       // got every missed message, in order
	Failed        int64   `json:"failed"`         // connect or read failed, or wrong messages
	// FirstMS and AllMS: from the reconnect's dial to its first and last
	// replayed message, milliseconds.
	FirstP50MS float64 `json:"first_p50_ms"`
	FirstP99MS float64 `json:"first_p99_ms"`
	AllP50MS   float64 `json:"all_p50_ms"`
	AllP99MS   float64 `json:"all_p99_ms"`
	// The concurrent publisher: 202s and their latency.
	Published      int64   `json:"published"`
	PublishFailed  int64   `json:"publish_failed"`
	PublishP50MS   float64 `json:"publish_p50_ms"`
	PublishP99MS   float64 `json:"publish_p99_ms"`
	PublishMaxMS   float64 `json:"publish_max_ms"`
	RSSSteady      int64   `json:"rss_steady,omitempty"` // bytes, connected and idle before the storm
	RSSPeak        int64   `json:"rss_peak,omitempty"`   // during the storm
	RSSPeakOverSte float64 `json:"rss_peak_over_steady,omitempty"`
	// CPU seconds from the first reconnect to the last stream complete:
	// the server's (with --pid) and this tool's own.
	ServerCPUSeconds float64 `json:"server_cpu_seconds,omitempty"`
	ClientCPUSeconds float64 `json:"client_cpu_seconds"`
	StormSeconds     float64 `json:"storm_seconds"`
}

func runStorm(ctx context.Context, o *options, stderr io.Writer) (*Result, error) {
	if o.target.Name != "tinysse" {
		return nil, errors.New("--reconnect-storm: only --target tinysse (it needs ids and Last-Event-ID replay from the rings)")
	}
	res := &Result{Target: o.target.Name, URL: o.subURL.String(), PubURL: o.pubURL.String(), Errors: map[string]int{}}
	res.Subscribers.Wanted = o.subscribers
	st := &StormStats{Streams: o.subscribers, Topics: o.stormTopics, Behind: o.stormBehind, WindowSeconds: o.stormWindow.Seconds()}
	res.Storm = st
	var errMu sync.Mutex
	fail := func(err error) {
		errMu.Lock()
		res.Errors[describe(err)]++
		errMu.Unlock()
	}
	say := func(format string, args ...any) {
		if !o.quiet {
			fmt.Fprintf(stderr, "storm: "+format+"\n", args...)
		}
	}
	topic := func(i int) int { return i % o.stormTopics }
	pub := &oneShotPublisher{o: o}
	defer pub.close()

	// 1. Connect, then publish and read the base message.
	say("connecting %d streams", o.subscribers)
	conns := make([]net.Conn, o.subscribers)
	readers := make([]*bufio.Reader, o.subscribers)
	var wg sync.WaitGroup
	var ready atomic.Int64
	pace := time.Duration(0)
	if o.connectRate > 0 {
		pace = time.Duration(float64(time.Second) / o.connectRate)
	}
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, br, err := stormSubscribe(o, topic(i), "")
			if err != nil {
				fail(err)
				return
			}
			conns[i], readers[i] = c, br
		}()
		if pace > 0 {
			time.Sleep(pace)
		}
	}
	wg.Wait()
	closeAll := func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}
	for k := range o.stormTopics {
		if err := pub.batch(k, 0, 1); err != nil {
			closeAll()
			return nil, fmt.Errorf("base message: %w", err)
		}
	}
	for i, c := range conns {
		if c == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := readEvents(readers[i], 1)
			if err == nil && got[0] != fmt.Sprintf("s%d-0", topic(i)) {
				err = fmt.Errorf("first event %q, want the base message", got[0])
			}
			if err != nil {
				fail(err)
				return
			}
			ready.Add(1)
		}()
	}
	wg.Wait()
	res.Subscribers.Ready = ready.Load()
	if res.Subscribers.Ready < int64(o.subscribers) {
		closeAll()
		return res, fmt.Errorf("only %d of %d streams connected and read the base message: %v", ready.Load(), o.subscribers, res.Errors)
	}
	time.Sleep(o.settle)
	if o.pid != 0 {
		s, err := readProc(o.pid)
		if err != nil {
			return nil, fmt.Errorf("--pid: %w", err)
		}
		st.RSSSteady = s.RSS
	}

	// 2. The blip: every stream closes; the topics move on.
	say("closing every stream; publishing %d messages per topic", o.stormBehind)
	closeAll()
	// One by one, round the topics (as they would have come), so that a
	// server without batch publish is measured the same way.
	for i := 1; i <= o.stormBehind; i++ {
		for k := range o.stormTopics {
			if err := pub.batch(k, i, 1); err != nil {
				return nil, fmt.Errorf("publishing the missed messages: %w", err)
			}
		}
	}
	time.Sleep(o.settle) // the server notices the closes

	// 3. The storm, with a publisher and an RSS sampler alongside.
	say("%d streams reconnect within %v", o.subscribers, o.stormWindow)
	stop := make(chan struct{})
	var side sync.WaitGroup
	var peak atomic.Int64
	if o.pid != 0 {
		side.Go(func() {
			for {
				if s, err := readProc(o.pid); err == nil && s.RSS > peak.Load() {
					peak.Store(s.RSS)
				}
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		})
	}
	pubHist := newHistogram()
	var published, pubFailed atomic.Int64
	if o.pub.Rate > 0 {
		// Connected before the storm, as a publisher with a kept-alive
		// connection is: its latency is then the publishes', not a
		// connect queued behind every reconnect.
		live := &oneShotPublisher{o: o}
		if err := live.connect(); err != nil {
			return nil, fmt.Errorf("concurrent publisher: %w", err)
		}
		side.Go(func() {
			defer live.close()
			every := time.Duration(float64(time.Second) / o.pub.Rate)
			next := time.Now()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-time.After(time.Until(next)):
				}
				next = next.Add(every)
				t0 := time.Now()
				if err := live.single(topic(n), "live-"+strconv.Itoa(n)); err != nil {
					pubFailed.Add(1)
					fail(fmt.Errorf("concurrent publisher: %w", err))
					continue
				}
				published.Add(1)
				_ = pubHist.RecordValue(max(1, time.Since(t0).Microseconds()))
			}
		})
	}
	cpuBefore, _ := readProc(o.pid)
	selfBefore, _ := readProc(os.Getpid())
	firstHist, allHist := newHistogram(), newHistogram()
	var histMu sync.Mutex
	var complete, failed atomic.Int64
	start := time.Now()
	for i := range o.subscribers {
		due := start.Add(time.Duration(float64(o.stormWindow) * float64(i) / float64(o.subscribers)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Until(due))
			k := topic(i)
			t0 := time.Now()
			c, br, err := stormSubscribe(o, k, fmt.Sprintf("s%d-0", k))
			var first, all time.Duration
			if err == nil {
				defer c.Close()
				err = readMissed(br, k, o.stormBehind, func() { first = time.Since(t0) })
				all = time.Since(t0)
			}
			if err != nil {
				failed.Add(1)
				fail(err)
				return
			}
			complete.Add(1)
			histMu.Lock()
			_ = firstHist.RecordValue(max(1, first.Microseconds()))
			_ = allHist.RecordValue(max(1, all.Microseconds()))
			histMu.Unlock()
		}()
	}
	wg.Wait()
	st.StormSeconds = math.Round(time.Since(start).Seconds()*100) / 100
	if o.pid != 0 {
		if after, err := readProc(o.pid); err == nil {
			st.ServerCPUSeconds = math.Round((after.CPU-cpuBefore.CPU)*100) / 100
		}
	}
	if self, err := readProc(os.Getpid()); err == nil {
		st.ClientCPUSeconds = math.Round((self.CPU-selfBefore.CPU)*100) / 100
	}
	close(stop)
	side.Wait()

	ms := func(h *hdr.Histogram, q float64) float64 {
		return math.Round(float64(h.ValueAtQuantile(q))/10) / 100
	}
	st.Complete, st.Failed = complete.Load(), failed.Load()
	st.FirstP50MS, st.FirstP99MS = ms(firstHist, 50), ms(firstHist, 99)
	st.AllP50MS, st.AllP99MS = ms(allHist, 50), ms(allHist, 99)
	st.Published, st.PublishFailed = published.Load(), pubFailed.Load()
	st.PublishP50MS, st.PublishP99MS = ms(pubHist, 50), ms(pubHist, 99)
	st.PublishMaxMS = math.Round(float64(pubHist.Max())/10) / 100
	if st.RSSSteady > 0 && peak.Load() > 0 {
		st.RSSPeak = peak.Load()
		st.RSSPeakOverSte = math.Round(float64(st.RSSPeak)/float64(st.RSSSteady)*100) / 100
	}
	res.OK = st.Complete == int64(o.subscribers) && st.PublishFailed == 0 && len(res.Errors) == 0
	return res, nil
}

// stormSubscribe opens a stream on topic storm-k, with Last-Event-ID
// when lastID is not empty, and reads up to ": ok".
func stormSubscribe(o *options, k int, lastID string) (net.Conn, *bufio.Reader, error) {
	c, err := net.DialTimeout("tcp", o.subURL.Host, o.handshakeTimeout)
	if err != nil {
		return nil, nil, err
	}
	_ = c.SetDeadline(time.Now().Add(o.handshakeTimeout + o.stormWindow + 30*time.Second))
	req := fmt.Sprintf("GET %s?topic=storm-%d HTTP/1.1\r\nHost: %s\r\n", o.subURL.Path, k, o.subURL.Host)
	if lastID != "" {
		req += "Last-Event-ID: " + lastID + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		c.Close()
		return nil, nil, err
	}
	br := bufio.NewReaderSize(c, 4096)
	status, err := br.ReadSlice('\n')
	if err != nil || !bytes.HasPrefix(status, []byte("HTTP/1.1 200")) {
		c.Close()
		return nil, nil, fmt.Errorf("subscribe: %q %v", status, err)
	}
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			c.Close()
			return nil, nil, err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break
		}
	}
	return c, br, nil
}

// readEvents reads the ids of the next k events (comments skipped).
func readEvents(br *bufio.Reader, k int) ([]string, error) {
	var ids []string
	id, has := "", false
	for len(ids) < k {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return ids, err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if has {
				ids = append(ids, id)
			}
			id, has = "", false
		case bytes.HasPrefix(line, []byte("id: ")):
			id = string(line[4:])
		case bytes.HasPrefix(line, []byte("data:")):
			has = true
		case line[0] == ':' && (bytes.Equal(line, []byte(": replay-gap")) || bytes.Equal(line, []byte(": lagged"))):
			return ids, fmt.Errorf("got %q", line)
		}
	}
	return ids, nil
}

// readMissed reads the missed messages of topic k, s<k>-1 to s<k>-n, and
// requires exactly them, first and in order; first is called at the first.
func readMissed(br *bufio.Reader, k, n int, first func()) error {
	for i := 1; i <= n; i++ {
		ids, err := readEvents(br, 1)
		if err != nil {
			return fmt.Errorf("after %d of %d missed messages: %w", i-1, n, err)
		}
		if i == 1 {
			first()
		}
		if want := fmt.Sprintf("s%d-%d", k, i); ids[0] != want {
			return fmt.Errorf("replayed message %d is %q, want %q", i, ids[0], want)
		}
	}
	return nil
}

// oneShotPublisher publishes over one keep-alive connection, one request
// at a time.
type oneShotPublisher struct {
	o    *options
	conn net.Conn
	br   *bufio.Reader
	req  []byte
	body []byte
}

func (p *oneShotPublisher) close() {
	if p.conn != nil {
		p.conn.Close()
	}
}

// batch publishes s<k>-from .. s<k>-(from+n-1) to storm-k in one request.
func (p *oneShotPublisher) batch(k, from, n int) error {
	ids, datas := make([][]byte, n), make([][]byte, n)
	for i := range n {
		ids[i] = fmt.Appendf(nil, "s%d-%d", k, from+i)
		datas[i] = appendPayload(nil, 0, uint64(from+i), time.Now().UnixNano(), p.o.pub.Size)
	}
	u := *p.o.pubURL
	u.RawQuery = "topic=storm-" + strconv.Itoa(k)
	if n == 1 {
		return p.do(p.o.target.AppendPublish(p.req[:0], &u, ids[0], datas[0]))
	}
	return p.do(p.o.target.AppendBatch(p.req[:0], &u, ids, datas))
}

// single publishes one message with id to storm-k.
func (p *oneShotPublisher) single(k int, id string) error {
	u := *p.o.pubURL
	u.RawQuery = "topic=storm-" + strconv.Itoa(k)
	return p.do(p.o.target.AppendPublish(p.req[:0], &u, []byte(id), appendPayload(nil, 1, 0, time.Now().UnixNano(), p.o.pub.Size)))
}

// connect dials the server unless connected.
func (p *oneShotPublisher) connect() error {
	if p.conn != nil {
		return nil
	}
	c, err := net.DialTimeout("tcp", p.o.pubURL.Host, 5*time.Second)
	if err != nil {
		return err
	}
	p.conn, p.br = c, bufio.NewReaderSize(c, 4096)
	return nil
}

func (p *oneShotPublisher) do(req []byte) error {
	p.req = req
	if err := p.connect(); err != nil {
		return err
	}
	_ = p.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := p.conn.Write(req); err != nil {
		p.close()
		p.conn = nil
		return err
	}
	status, keep, body, err := readResponse(p.br, p.body[:0])
	p.body = body
	if err != nil || !keep {
		p.close()
		p.conn = nil
	}
	if err != nil {
		return err
	}
	if status != 202 {
		return fmt.Errorf("publish: status %d %.80q", status, body)
	}
	return nil
}

// writeStormTable prints a storm run's figures.
func writeStormTable(row func(name, format string, args ...any), s *StormStats) {
	row("storm", "%d streams on %d topics, %d messages behind each, reconnecting within %.1fs", s.Streams, s.Topics, s.Behind, s.WindowSeconds)
	row("replayed", "%d complete and in order, %d failed", s.Complete, s.Failed)
	row("first message", "p50 %.1f ms  p99 %.1f ms after the dial", s.FirstP50MS, s.FirstP99MS)
	row("all missed", "p50 %.1f ms  p99 %.1f ms after the dial", s.AllP50MS, s.AllP99MS)
	row("publisher", "%d published during the storm, %d failed; p50 %.2f ms  p99 %.2f ms  max %.2f ms", s.Published, s.PublishFailed, s.PublishP50MS, s.PublishP99MS, s.PublishMaxMS)
	row("cpu", "storm took %.2fs: server %.2f s CPU, this tool %.2f s", s.StormSeconds, s.ServerCPUSeconds, s.ClientCPUSeconds)
	if s.RSSSteady > 0 {
		row("server rss", "%s steady (connected, idle), %s peak in the storm: %.2fx", mib(s.RSSSteady), mib(s.RSSPeak), s.RSSPeakOverSte)
	}
}
