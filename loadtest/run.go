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
	res := &Result{Target: o.target.Name, URL: o.subURL.String(), PubURL: o.pubURL.String()}
	res.Subscribers.Wanted = o.subscribers
	if o.http2 {
		res.Subscribers.H2Conns = o.h2Conns
	}
	res.Publish.Rate, res.Publish.Size = o.pub.Rate, o.pub.Size
	res.Errors = make(map[string]int)

	var (
		samples    [3]procSample // before, connected, end
		hosts      [3]hostCPU
		clients    [3]float64 // this tool's CPU seconds, workers included
		goroutines [2]int64   // the server's go_goroutines before and connected (--metrics-url)
		handles    []*groupHandle
	)
	sample := func(i int) error {
		hosts[i], _ = readHostCPU()
		for _, pid := range append([]int{os.Getpid()}, workerPIDs(handles)...) {
			if s, err := readProc(pid); err == nil {
				clients[i] += s.CPU
			}
		}
		if o.metricsURL != "" && i < 2 {
			goroutines[i], _ = readGoroutines(o.metricsURL)
		}
		if o.pid == 0 {
			return nil
		}
		s, err := readProc(o.pid)
		samples[i] = s
		return err
	}
	if err := sample(0); err != nil {
		return nil, fmt.Errorf("--pid: %w", err)
	}

	connectBudget := o.handshakeTimeout + 5*time.Second
	if o.connectRate > 0 {
		connectBudget += time.Duration(float64(o.subscribers) / o.connectRate * float64(time.Second))
	}
	deadline := time.Now().Add(connectBudget + o.settle + o.pub.Duration + o.drain + 30*time.Second)

	// Groups: in this process, or spread over worker processes.
	nGroups, inProcess := o.workers, o.workers == 0
	if inProcess {
		nGroups = 1
	}
	if !inProcess {
		res.Subscribers.Workers = nGroups
	}
	t := &tally{last: make([]workerReport, nGroups), final: make([]bool, nGroups), hist: newHistogram()}
	var readers sync.WaitGroup
	var readErrs sync.Map
	for i := range nGroups {
		n := shareOf(o.subscribers, nGroups, i)
		cfg := workerConfig{
			HTTP2:            o.http2,
			H2Conns:          shareOf(o.h2Conns, nGroups, i),
			Target:           o.target.Name,
			URL:              o.subURL.String(),
			Subscribers:      n,
			ConnectRate:      o.connectRate / float64(nGroups),
			HandshakeTimeout: o.handshakeTimeout,
			ReadBuffer:       o.readBuffer,
			Progress:         250 * time.Millisecond,
			Deadline:         deadline,
		}
		name := fmt.Sprintf("worker %d", i+1)
		h, err := startGroup(name, cfg, inProcess)
		if err != nil {
			for _, h := range handles {
				h.cmds.Close()
				_ = h.wait()
			}
			return nil, err
		}
		handles = append(handles, h)
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				r, err := h.next()
				if err != nil {
					readErrs.Store(i, err)
					return
				}
				t.apply(i, r)
				if r.Final {
					return
				}
			}
		}()
	}

	var phase atomic.Pointer[string]
	setPhase := func(p string) { phase.Store(&p) }
	setPhase("connecting")
	pr := newPublishRun(o.target, o.pubURL, &o.pub)
	start := time.Now()
	progressDone := make(chan struct{})
	stopProgress := make(chan struct{})
	go func() {
		defer close(progressDone)
		if o.quiet {
			<-stopProgress
			return
		}
		progress(stderr, start, &phase, t, pr, o, stopProgress)
	}()

	// Connect: until every subscriber is ready or failed.
	connectStart := time.Now()
	connectEnd := connectStart.Add(connectBudget)
	for {
		s := t.sums()
		if s.connected+s.failed+s.dropped >= int64(o.subscribers) || time.Now().After(connectEnd) || ctx.Err() != nil || s.finals == nGroups {
			break
		}
		sleep(ctx, 50*time.Millisecond)
	}
	res.Subscribers.ConnectSeconds = time.Since(connectStart).Seconds()

	var stuck *stuckSet
	if o.stuck > 0 {
		setPhase("stuck")
		var err error
		if stuck, err = openStuck(ctx, o.subURL, o.target.AppendSubscribe(nil, o.subURL), o.stuck, o.handshakeTimeout); err != nil {
			res.Errors[err.Error()]++
		} else {
			defer stuck.close()
		}
	}

	setPhase("settling")
	sleep(ctx, o.settle)
	errs := []error{sample(1)}
	connected := t.sums().connected

	// Publish, or hold the connections idle.
	var pubStart, pubEnd time.Time
	if o.pub.Rate != 0 {
		setPhase("publishing")
		pubStart = time.Now()
		if stuck != nil {
			stuck.watch(pubStart)
		}
		pr.run(ctx)
		pubEnd = time.Now()
		setPhase("draining")
		drain(ctx, t, pr, connected, o.drain)
	} else {
		setPhase("holding")
		sleep(ctx, o.pub.Duration)
	}
	errs = append(errs, sample(2))
	if stuck != nil && !pubStart.IsZero() {
		res.Stuck = stuck.finish()
	}

	setPhase("stopping")
	for _, h := range handles {
		h.stop()
	}
	waitReaders := make(chan struct{})
	go func() { readers.Wait(); close(waitReaders) }()
	select {
	case <-waitReaders:
	case <-time.After(20 * time.Second):
		res.Errors["some workers sent no final report within 20s"]++
	}
	for _, h := range handles {
		h.cmds.Close()
	}
	for _, h := range handles {
		_ = h.wait()
	}
	close(stopProgress)
	<-progressDone
	readErrs.Range(func(k, v any) bool {
		res.Errors[fmt.Sprintf("worker %d: %v", k.(int)+1, v)]++
		return true
	})

	// Totals.
	s := t.sums()
	tl := pr.timeline()
	res.Subscribers.Failed, res.Subscribers.Dropped = s.failed, s.dropped
	for i, r := range t.last {
		if !t.final[i] {
			continue
		}
		addErrors(res.Errors, "", r.Errors)
		res.Subscribers.Ready += int64(len(r.Ready))
		for j, ready := range r.Ready {
			exp := tl.expectedAfter(ready)
			got := min(r.Fresh[j], exp)
			res.Deliveries.Expected += exp
			res.Deliveries.Received += got
			if got < exp {
				res.Deliveries.Lost += exp - got
				res.Deliveries.SubscribersWithLoss++
			}
		}
	}
	d := &res.Deliveries
	d.Duplicates, d.OutOfOrder, d.Early, d.Foreign, d.Lagged, d.Total =
		s.counts.Duplicates, s.counts.OutOfOrder, s.counts.Early, s.counts.Foreign, s.counts.Lagged, s.counts.Deliveries
	p := &res.Publish
	p.Acked, p.Skipped = pr.acked.Load(), pr.skipped.Load()
	p.Publishers = len(pr.publishers())
	for _, pub := range pr.publishers() {
		p.Failed += pub.failed
		addErrors(res.Errors, fmt.Sprintf("publisher %d:", pub.idx), pub.errors)
	}
	if !pubStart.IsZero() {
		p.Seconds = pubEnd.Sub(pubStart).Seconds()
		p.PerSecond = float64(p.Acked) / p.Seconds
		d.PerSecond = float64(d.Total) / p.Seconds
	}
	res.Latency = latencyOf(t.hist)
	if hosts[2].total > 0 {
		res.Host = &HostStats{
			Cores:            runtime.NumCPU(),
			BusyPercent:      busyPercent(hosts[1], hosts[2]),
			ClientCPUSeconds: math.Round((clients[2]-clients[1])*1e3) / 1e3,
		}
	}
	if o.pid != 0 {
		if err := errors.Join(errs...); err != nil {
			res.Errors["--pid: "+err.Error()]++
		} else {
			v := &ServerStats{PID: o.pid, RSSBefore: samples[0].RSS, RSSConnected: samples[1].RSS, RSSEnd: samples[2].RSS}
			v.CPUSeconds = math.Round((samples[2].CPU-samples[1].CPU)*1e3) / 1e3
			if d.Total > 0 {
				v.CPUPerMillion = v.CPUSeconds / (float64(d.Total) / 1e6)
			}
			if samples[1].WriteCalls >= 0 && samples[2].WriteCalls > samples[1].WriteCalls {
				v.WriteCalls = samples[2].WriteCalls - samples[1].WriteCalls
				v.DeliveriesPerWrite = float64(d.Total) / float64(v.WriteCalls)
			}
			if connected > 0 {
				v.RSSPerSubscriber = float64(v.RSSConnected-v.RSSBefore) / float64(connected)
			}
			v.GoroutinesBefore, v.GoroutinesConnected = goroutines[0], goroutines[1]
			res.Server = v
		}
	}
	res.OK = d.Lost == 0 && d.Duplicates == 0 && d.OutOfOrder == 0 && p.Failed == 0 &&
		res.Subscribers.Failed == 0 && res.Subscribers.Dropped == 0 &&
		res.Subscribers.Ready == int64(o.subscribers) && len(res.Errors) == 0
	return res, nil
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
