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
// under the open-file limit less a few hundred. The concurrent publisher
// runs in a process of its own (stormpub.go; here with --workers 0).

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
	s := &stormRun{o: o, stderr: stderr, res: newResult(o), pub: &oneShotPublisher{o: o}}
	s.st = &StormStats{Streams: o.subscribers, Topics: o.stormTopics, Behind: o.stormBehind, WindowSeconds: o.stormWindow.Seconds()}
	s.res.Storm = s.st
	defer s.pub.close()

	// 1. Connect, then publish and read the base message.
	s.say("connecting %d streams", o.subscribers)
	readers := s.connect()
	if err := s.publishBase(); err != nil {
		s.closeAll()
		return nil, fmt.Errorf("base message: %w", err)
	}
	s.res.Subscribers.Ready = s.readBase(readers)
	if s.res.Subscribers.Ready < int64(o.subscribers) {
		s.closeAll()
		return s.res, fmt.Errorf("only %d of %d streams connected and read the base message: %v", s.res.Subscribers.Ready, o.subscribers, s.res.Errors)
	}
	if err := s.settle(); err != nil {
		return nil, err
	}

	// 2. The blip: every stream closes; the topics move on.
	if err := s.blip(); err != nil {
		return nil, err
	}

	// 3. The storm, with a publisher and an RSS sampler alongside.
	s.say("%d streams reconnect within %v", o.subscribers, o.stormWindow)
	side, err := s.startSide()
	if err != nil {
		return nil, err
	}
	rc := s.reconnect()
	side.stop(s)

	s.figures(rc, side)
	s.res.OK = s.st.Complete == int64(o.subscribers) && s.st.PublishFailed == 0 && len(s.res.Errors) == 0
	return s.res, nil
}

// stormRun is a reconnect storm's state. Its steps run one after another
// on runStorm's goroutine; fail may be called from any goroutine.
type stormRun struct {
	o      *options
	stderr io.Writer
	res    *Result
	st     *StormStats
	pub    *oneShotPublisher // the base and the missed messages
	errMu  sync.Mutex        // guards res.Errors while streams run
	conns  []net.Conn        // the first streams; nil where one failed
}

// fail counts err among the report's errors.
func (s *stormRun) fail(err error) {
	s.errMu.Lock()
	s.res.Errors[describe(err)]++
	s.errMu.Unlock()
}

// say prints a progress line (none with --quiet).
func (s *stormRun) say(format string, args ...any) {
	if !s.o.quiet {
		fmt.Fprintf(s.stderr, "storm: "+format+"\n", args...)
	}
}

// topic is stream i's (or live message i's) topic number.
func (s *stormRun) topic(i int) int { return i % s.o.stormTopics }

// connect opens every stream on its topic, paced at --connect-rate, and
// waits for all; a stream that failed is counted and left nil.
func (s *stormRun) connect() []*bufio.Reader {
	o := s.o
	s.conns = make([]net.Conn, o.subscribers)
	readers := make([]*bufio.Reader, o.subscribers)
	pace := time.Duration(0)
	if o.connectRate > 0 {
		pace = time.Duration(float64(time.Second) / o.connectRate)
	}
	var wg sync.WaitGroup
	for i := range s.conns {
		wg.Go(func() {
			c, br, err := stormSubscribe(o, s.topic(i), "")
			if err != nil {
				s.fail(err)
				return
			}
			s.conns[i], readers[i] = c, br
		})
		if pace > 0 {
			time.Sleep(pace)
		}
	}
	wg.Wait()
	return readers
}

func (s *stormRun) closeAll() {
	for _, c := range s.conns {
		if c != nil {
			c.Close()
		}
	}
}

// publishBase publishes each topic's base message, s<k>-0.
func (s *stormRun) publishBase() error {
	for k := range s.o.stormTopics {
		if err := s.pub.batch(k, 0, 1); err != nil {
			return err
		}
	}
	return nil
}

// readBase has every open stream read its topic's base message and
// returns how many did.
func (s *stormRun) readBase(readers []*bufio.Reader) int64 {
	var wg sync.WaitGroup
	var ready atomic.Int64
	for i, c := range s.conns {
		if c == nil {
			continue
		}
		wg.Go(func() {
			got, err := readEvents(readers[i], 1)
			if err == nil && got[0] != fmt.Sprintf("s%d-0", s.topic(i)) {
				err = fmt.Errorf("first event %q, want the base message", got[0])
			}
			if err != nil {
				s.fail(err)
				return
			}
			ready.Add(1)
		})
	}
	wg.Wait()
	return ready.Load()
}

// settle waits --settle, then reads the server's steady RSS (--pid).
func (s *stormRun) settle() error {
	time.Sleep(s.o.settle)
	if s.o.pid == 0 {
		return nil
	}
	p, err := readProc(s.o.pid)
	if err != nil {
		return fmt.Errorf("--pid: %w", err)
	}
	s.st.RSSSteady = p.RSS
	return nil
}

// blip closes every stream and publishes --storm-behind messages to each
// topic, then gives the server --settle to notice the closes.
func (s *stormRun) blip() error {
	s.say("closing every stream; publishing %d messages per topic", s.o.stormBehind)
	s.closeAll()
	// One by one, round the topics (as they would have come), so that a
	// server without batch publish is measured the same way.
	for i := 1; i <= s.o.stormBehind; i++ {
		for k := range s.o.stormTopics {
			if err := s.pub.batch(k, i, 1); err != nil {
				return fmt.Errorf("publishing the missed messages: %w", err)
			}
		}
	}
	time.Sleep(s.o.settle)
	return nil
}

// stormSide is what runs beside the reconnects: the server's RSS sampled
// every 20 ms (--pid) and a publisher at --publish-rate timing each 202,
// in a process of its own (stormpub.go) unless --workers 0. Its
// goroutines write the fields; read them after stop.
type stormSide struct {
	stopC     chan struct{}
	wg        sync.WaitGroup
	peak      atomic.Int64   // the highest RSS sampled
	hist      *hdr.Histogram // publish latency, µs
	record    func(us int64) // one 202's latency; called by the publisher's goroutine
	published atomic.Int64
	failed    atomic.Int64
	proc      *sideProcess // the publisher's process; nil when it runs here
}

// startSide starts the sampler and the publisher; the publisher connects
// first, as one with a kept-alive connection would have: its latency is
// then the publishes', not a connect queued behind every reconnect.
func (s *stormRun) startSide() (*stormSide, error) {
	side := &stormSide{stopC: make(chan struct{}), hist: newHistogram()}
	side.record = func(us int64) { _ = side.hist.RecordValue(us) }
	if s.o.pub.Rate > 0 && s.o.workers != 0 {
		p, err := startSideProcess(s.o)
		if err != nil {
			return nil, err
		}
		side.proc = p
	}
	if s.o.pid != 0 {
		side.wg.Go(func() { side.sampleRSS(s.o.pid) })
	}
	if s.o.pub.Rate > 0 && side.proc == nil {
		live := &oneShotPublisher{o: s.o}
		if err := live.connect(); err != nil {
			side.stop(s)
			return nil, fmt.Errorf("concurrent publisher: %w", err)
		}
		side.wg.Go(func() { publishLive(s.o, side, live, s.fail) })
	}
	return side, nil
}

// stop ends the side goroutines and the publisher's process, waits for
// them, and takes the process's figures and errors into side and s.
func (side *stormSide) stop(s *stormRun) {
	side.halt()
	if side.proc == nil {
		return
	}
	rep, err := side.proc.finish()
	if err != nil {
		side.failed.Add(1) // the run is not OK without its publisher's figures
		s.fail(err)
		return
	}
	side.published.Store(rep.Published)
	side.failed.Store(rep.Failed)
	for _, us := range rep.LatencyUS {
		_ = side.hist.RecordValue(max(1, us))
	}
	for e, n := range rep.Errors {
		s.errMu.Lock()
		s.res.Errors[e] += n
		s.errMu.Unlock()
	}
}

// halt ends the side goroutines and waits for them.
func (side *stormSide) halt() {
	close(side.stopC)
	side.wg.Wait()
}

func (side *stormSide) sampleRSS(pid int) {
	for {
		if p, err := readProc(pid); err == nil && p.RSS > side.peak.Load() {
			side.peak.Store(p.RSS)
		}
		select {
		case <-side.stopC:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// reconnects are the storm's outcome: streams complete and failed, and
// for each complete one the time from its dial to its first and to its
// last replayed message, µs.
type reconnects struct {
	complete, failed atomic.Int64
	mu               sync.Mutex // guards first and all
	first, all       *hdr.Histogram
}

// reconnect brings every stream back with Last-Event-ID, the dials spread
// evenly over --storm-window, and waits for all; it times the storm and
// the CPU the server and this tool spent on it.
func (s *stormRun) reconnect() *reconnects {
	o := s.o
	cpuBefore, _ := readProc(o.pid)
	selfBefore, _ := readProc(os.Getpid())
	rc := &reconnects{first: newHistogram(), all: newHistogram()}
	var wg sync.WaitGroup
	start := time.Now()
	for i := range o.subscribers {
		due := start.Add(time.Duration(float64(o.stormWindow) * float64(i) / float64(o.subscribers)))
		wg.Go(func() {
			time.Sleep(time.Until(due))
			s.reconnectOne(s.topic(i), rc)
		})
	}
	wg.Wait()
	s.st.StormSeconds = math.Round(time.Since(start).Seconds()*100) / 100
	if o.pid != 0 {
		if after, err := readProc(o.pid); err == nil {
			s.st.ServerCPUSeconds = math.Round((after.CPU-cpuBefore.CPU)*100) / 100
		}
	}
	if self, err := readProc(os.Getpid()); err == nil {
		s.st.ClientCPUSeconds = math.Round((self.CPU-selfBefore.CPU)*100) / 100
	}
	return rc
}

// reconnectOne reconnects one stream to topic k and reads its missed
// messages.
func (s *stormRun) reconnectOne(k int, rc *reconnects) {
	t0 := time.Now()
	c, br, err := stormSubscribe(s.o, k, fmt.Sprintf("s%d-0", k))
	var first, all time.Duration
	if err == nil {
		defer c.Close()
		err = readMissed(br, k, s.o.stormBehind, func() { first = time.Since(t0) })
		all = time.Since(t0)
	}
	if err != nil {
		rc.failed.Add(1)
		s.fail(err)
		return
	}
	rc.complete.Add(1)
	rc.mu.Lock()
	_ = rc.first.RecordValue(max(1, first.Microseconds()))
	_ = rc.all.RecordValue(max(1, all.Microseconds()))
	rc.mu.Unlock()
}

// figures fills the report from the reconnects and the side goroutines
// (stopped).
func (s *stormRun) figures(rc *reconnects, side *stormSide) {
	st := s.st
	st.Complete, st.Failed = rc.complete.Load(), rc.failed.Load()
	st.FirstP50MS, st.FirstP99MS = quantileMS(rc.first, 50), quantileMS(rc.first, 99)
	st.AllP50MS, st.AllP99MS = quantileMS(rc.all, 50), quantileMS(rc.all, 99)
	st.Published, st.PublishFailed = side.published.Load(), side.failed.Load()
	st.PublishP50MS, st.PublishP99MS = quantileMS(side.hist, 50), quantileMS(side.hist, 99)
	st.PublishMaxMS = math.Round(float64(side.hist.Max())/10) / 100
	if st.RSSSteady > 0 && side.peak.Load() > 0 {
		st.RSSPeak = side.peak.Load()
		st.RSSPeakOverSte = math.Round(float64(st.RSSPeak)/float64(st.RSSSteady)*100) / 100
	}
}

// quantileMS is h's quantile q (µs) in milliseconds, to two decimals.
func quantileMS(h *hdr.Histogram, q float64) float64 {
	return math.Round(float64(h.ValueAtQuantile(q))/10) / 100
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
