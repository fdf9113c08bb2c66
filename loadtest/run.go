package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// options is a parsed command line.
type options struct {
	target           *Target
	subURL, pubURL   *url.URL
	subscribers      int
	connectRate      float64
	handshakeTimeout time.Duration
	pub              publishOptions
	pid              int
	settle, drain    time.Duration
	perWorker        int
	workers          int
	readBuffer       int
	stuck            int // --stuck: connections that never read (stuck.go)
	metricsURL       string
	json, quiet      bool
	churn            bool
	// --reconnect-storm (storm.go)
	storm                    bool
	stormTopics, stormBehind int
	stormWindow              time.Duration
	http2                    bool // subscribers over HTTP/2 (h2c, prior knowledge)
	h2Conns                  int  // connections the HTTP/2 streams share, over all workers
}

// tally gathers the groups' reports.
type tally struct {
	mu    sync.Mutex
	last  []workerReport // by group: the latest report
	final []bool
	hist  *hdr.Histogram // every latency so far
}

func (t *tally) apply(i int, r workerReport) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r.Hist != "" {
		if h, err := hdr.Decode([]byte(r.Hist)); err == nil {
			t.hist.Merge(h)
		}
	}
	r.Hist = ""
	t.last[i] = r
	if r.Final {
		t.final[i] = true
	}
}

// sums is a snapshot of the tally.
type sums struct {
	connected, failed, dropped int64
	counts                     counts
	p99                        float64 // ms
	finals                     int
}

func (t *tally) sums() sums {
	t.mu.Lock()
	defer t.mu.Unlock()
	var s sums
	for i, r := range t.last {
		s.connected += r.Connected
		s.failed += r.Failed
		s.dropped += r.Dropped
		s.counts.add(r.Counts)
		if t.final[i] {
			s.finals++
		}
	}
	if t.hist.TotalCount() > 0 {
		s.p99 = float64(t.hist.ValueAtQuantile(99)) / 1e3
	}
	return s
}

// shareOf is group i's share of n over groups.
func shareOf(n, groups, i int) int {
	m := n / groups
	if i < n%groups {
		m++
	}
	return m
}

// run is one load run: connect, settle, publish (or idle), drain, report.
// Each phase is bounded; ctx ends the run early, still with a report.
func run(ctx context.Context, o *options, stderr io.Writer) (*Result, error) {
	res := newResult(o)
	if o.http2 {
		res.Subscribers.H2Conns = o.h2Conns
	}
	res.Publish.Rate, res.Publish.Size = o.pub.Rate, o.pub.Size
	var m measures
	if err := m.take(0, o, nil); err != nil {
		return nil, fmt.Errorf("--pid: %w", err)
	}

	connectBudget := o.connectBudget()
	deadline := time.Now().Add(connectBudget + o.settle + o.pub.Duration + o.drain + 30*time.Second)
	g, err := startGroups(o, deadline)
	if err != nil {
		return nil, err
	}
	if !g.inProcess {
		res.Subscribers.Workers = len(g.handles)
	}
	pr := newPublishRun(o.target, o.pubURL, &o.pub)
	p := startProgress(stderr, g.t, pr, o)

	res.Subscribers.ConnectSeconds = g.awaitConnected(ctx, o.subscribers, connectBudget)
	stuck := openStuckConns(ctx, o, p, res.Errors)
	if stuck != nil {
		defer stuck.close()
	}
	p.set("settling")
	sleep(ctx, o.settle)
	errs := []error{m.take(1, o, g.handles)}
	connected := g.t.sums().connected
	pubStart, pubEnd := publishOrHold(ctx, o, p, pr, g.t, stuck, connected)
	errs = append(errs, m.take(2, o, g.handles))
	if stuck != nil && !pubStart.IsZero() {
		res.Stuck = stuck.finish()
	}

	p.set("stopping")
	g.stop(res.Errors)
	p.stop()
	g.addReadErrors(res.Errors)

	addDeliveries(res, g.t, pr.timeline())
	addPublish(res, pr, pubStart, pubEnd)
	res.Latency = latencyOf(g.t.hist)
	m.addHost(res)
	if o.pid != 0 {
		m.addServer(res, o.pid, errors.Join(errs...), connected)
	}
	d, pub := &res.Deliveries, &res.Publish
	res.OK = d.Lost == 0 && d.Duplicates == 0 && d.OutOfOrder == 0 && pub.Failed == 0 &&
		res.Subscribers.Failed == 0 && res.Subscribers.Dropped == 0 &&
		res.Subscribers.Ready == int64(o.subscribers) && len(res.Errors) == 0
	return res, nil
}

// newResult is a report with what every mode fills in the same way.
func newResult(o *options) *Result {
	res := &Result{Target: o.target.Name, URL: o.subURL.String(), PubURL: o.pubURL.String(), Errors: map[string]int{}}
	res.Subscribers.Wanted = o.subscribers
	return res
}

// connectBudget is how long the subscribers get to become ready: one
// handshake, the pacing of --connect-rate, and 5 s to spare.
func (o *options) connectBudget() time.Duration {
	b := o.handshakeTimeout + 5*time.Second
	if o.connectRate > 0 {
		b += time.Duration(float64(o.subscribers) / o.connectRate * float64(time.Second))
	}
	return b
}

// measures are a run's samples, taken before connecting (0), after the
// settle (1) and at the end (2): the server's /proc (--pid), the host's
// CPU, this tool's CPU with its workers', and the server's go_goroutines
// (--metrics-url, 0 and 1 only). Only run's goroutine touches them.
type measures struct {
	server     [3]procSample
	hosts      [3]hostCPU
	clients    [3]float64 // this tool's CPU seconds, workers included
	goroutines [2]int64
}

// take takes sample i; the error is the server's /proc read, if any.
func (m *measures) take(i int, o *options, handles []*groupHandle) error {
	m.hosts[i], _ = readHostCPU()
	for _, pid := range append([]int{os.Getpid()}, workerPIDs(handles)...) {
		if s, err := readProc(pid); err == nil {
			m.clients[i] += s.CPU
		}
	}
	if o.metricsURL != "" && i < 2 {
		m.goroutines[i], _ = readGoroutines(o.metricsURL)
	}
	if o.pid == 0 {
		return nil
	}
	s, err := readProc(o.pid)
	m.server[i] = s
	return err
}

// addHost reports how busy the host was from the settle to the end, and
// this tool's CPU in that time.
func (m *measures) addHost(res *Result) {
	if m.hosts[2].total == 0 {
		return
	}
	res.Host = &HostStats{
		Cores:            runtime.NumCPU(),
		BusyPercent:      busyPercent(m.hosts[1], m.hosts[2]),
		ClientCPUSeconds: math.Round((m.clients[2]-m.clients[1])*1e3) / 1e3,
	}
}

// addServer reports the server's CPU and RSS, or err (a failed sample)
// among the errors; res.Deliveries must be final.
func (m *measures) addServer(res *Result, pid int, err error, connected int64) {
	if err != nil {
		res.Errors["--pid: "+err.Error()]++
		return
	}
	s, total := &m.server, res.Deliveries.Total
	v := &ServerStats{PID: pid, RSSBefore: s[0].RSS, RSSConnected: s[1].RSS, RSSEnd: s[2].RSS}
	v.CPUSeconds = math.Round((s[2].CPU-s[1].CPU)*1e3) / 1e3
	if total > 0 {
		v.CPUPerMillion = v.CPUSeconds / (float64(total) / 1e6)
	}
	if s[1].WriteCalls >= 0 && s[2].WriteCalls > s[1].WriteCalls {
		v.WriteCalls = s[2].WriteCalls - s[1].WriteCalls
		v.DeliveriesPerWrite = float64(total) / float64(v.WriteCalls)
	}
	if connected > 0 {
		v.RSSPerSubscriber = float64(v.RSSConnected-v.RSSBefore) / float64(connected)
	}
	v.GoroutinesBefore, v.GoroutinesConnected = m.goroutines[0], m.goroutines[1]
	res.Server = v
}

// groups are a run's subscriber groups, one in this process (--workers 0)
// or one per worker process, with a goroutine each reading the group's
// reports into t.
type groups struct {
	inProcess bool
	handles   []*groupHandle
	t         *tally
	readers   sync.WaitGroup
	readErrs  sync.Map // group index → the error that ended its reports
}

// startGroups starts the groups, each with its share of the subscribers
// and of the connect rate; if one fails to start, the others are closed.
func startGroups(o *options, deadline time.Time) (*groups, error) {
	n, inProcess := o.workers, o.workers == 0
	if inProcess {
		n = 1
	}
	g := &groups{inProcess: inProcess, t: &tally{last: make([]workerReport, n), final: make([]bool, n), hist: newHistogram()}}
	for i := range n {
		cfg := workerConfig{
			HTTP2:            o.http2,
			H2Conns:          shareOf(o.h2Conns, n, i),
			Target:           o.target.Name,
			URL:              o.subURL.String(),
			Subscribers:      shareOf(o.subscribers, n, i),
			ConnectRate:      o.connectRate / float64(n),
			HandshakeTimeout: o.handshakeTimeout,
			ReadBuffer:       o.readBuffer,
			Progress:         250 * time.Millisecond,
			Deadline:         deadline,
		}
		h, err := startGroup(fmt.Sprintf("worker %d", i+1), cfg, inProcess)
		if err != nil {
			for _, h := range g.handles {
				h.cmds.Close()
				_ = h.wait()
			}
			return nil, err
		}
		g.handles = append(g.handles, h)
		g.readers.Add(1)
		go g.read(i, h)
	}
	return g, nil
}

// read applies group i's reports to the tally until its final one or an
// error; one goroutine per group runs it.
func (g *groups) read(i int, h *groupHandle) {
	defer g.readers.Done()
	for {
		r, err := h.next()
		if err != nil {
			g.readErrs.Store(i, err)
			return
		}
		g.t.apply(i, r)
		if r.Final {
			return
		}
	}
}

// awaitConnected waits until every one of want subscribers is ready or
// failed, every group has ended, ctx ends or budget has passed, and
// returns how many seconds that took.
func (g *groups) awaitConnected(ctx context.Context, want int, budget time.Duration) float64 {
	start := time.Now()
	end := start.Add(budget)
	for {
		s := g.t.sums()
		if s.connected+s.failed+s.dropped >= int64(want) || time.Now().After(end) || ctx.Err() != nil || s.finals == len(g.handles) {
			break
		}
		sleep(ctx, 50*time.Millisecond)
	}
	return time.Since(start).Seconds()
}

// stop asks every group for its final report, waits up to 20 s for them
// (noting in errs when one did not come), then closes the groups and waits
// for their processes.
func (g *groups) stop(errs map[string]int) {
	for _, h := range g.handles {
		h.stop()
	}
	if !waitFor(&g.readers, 20*time.Second) {
		errs["some workers sent no final report within 20s"]++
	}
	for _, h := range g.handles {
		h.cmds.Close()
	}
	for _, h := range g.handles {
		_ = h.wait()
	}
}

// addReadErrors notes in errs each group whose reports ended in an error.
func (g *groups) addReadErrors(errs map[string]int) {
	g.readErrs.Range(func(k, v any) bool {
		errs[fmt.Sprintf("worker %d: %v", k.(int)+1, v)]++
		return true
	})
}

// openStuckConns opens the --stuck connections that never read; if that
// fails, the error goes into errs and the run goes on without them.
func openStuckConns(ctx context.Context, o *options, p *progressLine, errs map[string]int) *stuckSet {
	if o.stuck == 0 {
		return nil
	}
	p.set("stuck")
	stuck, err := openStuck(ctx, o.subURL, o.target.AppendSubscribe(nil, o.subURL), o.stuck, o.handshakeTimeout)
	if err != nil {
		errs[err.Error()]++
		return nil
	}
	return stuck
}

// publishOrHold is the window: publish, then drain; or, at rate 0, hold
// the streams idle. start and end bound the publishing (zero when held).
func publishOrHold(ctx context.Context, o *options, p *progressLine, pr *publishRun, t *tally, stuck *stuckSet, connected int64) (start, end time.Time) {
	if o.pub.Rate == 0 {
		p.set("holding")
		sleep(ctx, o.pub.Duration)
		return start, end
	}
	p.set("publishing")
	start = time.Now()
	if stuck != nil {
		stuck.watch(start)
	}
	pr.run(ctx)
	end = time.Now()
	p.set("draining")
	drain(ctx, t, pr, connected, o.drain)
	return start, end
}

// addDeliveries totals the groups' final reports: each ready stream is
// owed every message acknowledged after it became ready (tl).
func addDeliveries(res *Result, t *tally, tl timeline) {
	s := t.sums()
	res.Subscribers.Failed, res.Subscribers.Dropped = s.failed, s.dropped
	d := &res.Deliveries
	for i, r := range t.last {
		if !t.final[i] {
			continue
		}
		addErrors(res.Errors, "", r.Errors)
		res.Subscribers.Ready += int64(len(r.Ready))
		for j, ready := range r.Ready {
			exp := tl.expectedAfter(ready)
			got := min(r.Fresh[j], exp)
			d.Expected += exp
			d.Received += got
			if got < exp {
				d.Lost += exp - got
				d.SubscribersWithLoss++
			}
		}
	}
	d.Duplicates, d.OutOfOrder, d.Early, d.Foreign, d.Lagged, d.Total =
		s.counts.Duplicates, s.counts.OutOfOrder, s.counts.Early, s.counts.Foreign, s.counts.Lagged, s.counts.Deliveries
}

// addPublish totals the publishers and the rates over the publishing
// window [start, end]; res.Deliveries must be final.
func addPublish(res *Result, pr *publishRun, start, end time.Time) {
	p := &res.Publish
	p.Acked, p.Skipped = pr.acked.Load(), pr.skipped.Load()
	p.Publishers = len(pr.publishers())
	for _, pub := range pr.publishers() {
		p.Failed += pub.failed
		addErrors(res.Errors, fmt.Sprintf("publisher %d:", pub.idx), pub.errors)
	}
	if !start.IsZero() {
		p.Seconds = end.Sub(start).Seconds()
		p.PerSecond = float64(p.Acked) / p.Seconds
		res.Deliveries.PerSecond = float64(res.Deliveries.Total) / p.Seconds
	}
}

// drain waits after the last publish until every ready stream has had
// every acknowledged message, or deliveries stop for a second, or max.
func drain(ctx context.Context, t *tally, pr *publishRun, connected int64, maxWait time.Duration) {
	want := connected * pr.acked.Load()
	end := time.Now().Add(maxWait)
	last, lastChange := int64(-1), time.Now()
	for time.Now().Before(end) && ctx.Err() == nil {
		n := t.sums().counts.Deliveries
		if n >= want {
			return
		}
		if n != last {
			last, lastChange = n, time.Now()
		} else if time.Since(lastChange) > time.Second {
			return
		}
		sleep(ctx, 50*time.Millisecond)
	}
}

// progressLine is the run's phase and the goroutine that prints a
// progress line a second (none with --quiet). set may be called from any
// goroutine; stop once, from run's.
type progressLine struct {
	phase atomic.Pointer[string]
	stopC chan struct{}
	done  chan struct{}
}

// startProgress starts the progress line in phase "connecting".
func startProgress(stderr io.Writer, t *tally, pr *publishRun, o *options) *progressLine {
	p := &progressLine{stopC: make(chan struct{}), done: make(chan struct{})}
	p.set("connecting")
	start := time.Now()
	go func() {
		defer close(p.done)
		if o.quiet {
			<-p.stopC
			return
		}
		progress(stderr, start, &p.phase, t, pr, o, p.stopC)
	}()
	return p
}

func (p *progressLine) set(phase string) { p.phase.Store(&phase) }

// stop ends the progress line and waits until it has.
func (p *progressLine) stop() {
	close(p.stopC)
	<-p.done
}

// progress prints a line a second to w until stop closes.
func progress(w io.Writer, start time.Time, phase *atomic.Pointer[string], t *tally, pr *publishRun, o *options, stop <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastDeliv, lastPub int64
	lastAt := time.Now()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			s := t.sums()
			dt := now.Sub(lastAt).Seconds()
			pub := pr.acked.Load()
			fmt.Fprintf(w, "%6.1fs %-10s subs %d/%d (failed %d, dropped %d)  pub %d (%.0f/s)  deliveries %d (%.0f/s)  p99 %.3fms\n",
				now.Sub(start).Seconds(), *phase.Load(), s.connected, o.subscribers, s.failed, s.dropped,
				pub, float64(pub-lastPub)/dt, s.counts.Deliveries, float64(s.counts.Deliveries-lastDeliv)/dt, s.p99)
			lastDeliv, lastPub, lastAt = s.counts.Deliveries, pub, now
		}
	}
}

func workerPIDs(hs []*groupHandle) []int {
	var pids []int
	for _, h := range hs {
		if h.pid != 0 {
			pids = append(pids, h.pid)
		}
	}
	return pids
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
