package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// The storm's concurrent publisher runs in a process of its own (unless
// --workers 0): in this one it would share the Go scheduler's run queues
// with every reconnecting stream, and its timer and its reads would wait
// behind them. Measured on the 2-core machine (BENCHMARKS.md, "The
// publisher during a storm: the tool was timing its own queue"): the
// same server answered a publisher in another process with p99 65 ms
// while the one inside the tool reported 2,480 ms. What the report must
// say is the server's answer, not the tool's own queue.
//
// The parent writes one stormPublisherConfig line on the child's stdin,
// then closes stdin to stop it; the child answers with one
// stormPublisherReport line on stdout.

// stormPublisherConfig is what the storm-publisher process needs.
type stormPublisherConfig struct {
	Target string  `json:"target"`
	PubURL string  `json:"pub_url"`
	Rate   float64 `json:"rate"`
	Topics int     `json:"topics"`
	Size   int     `json:"size"`
}

// stormPublisherReport is the storm-publisher process's outcome.
type stormPublisherReport struct {
	Published int64          `json:"published"`
	Failed    int64          `json:"failed"`
	LatencyUS []int64        `json:"latency_us"` // one per 202, in order
	Errors    map[string]int `json:"errors,omitempty"`
	Err       string         `json:"err,omitempty"` // it could not start
}

// maxSideLatencies bounds the report: at --publish-rate 1,000 it is more
// than a minute of publishes, longer than any storm.
const maxSideLatencies = 100_000

// runStormPublisher is the storm-publisher process: it publishes at the
// configured rate from the moment its configuration arrives until its
// stdin closes.
func runStormPublisher() int {
	err := serveStormPublisher(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadtest storm-publisher: %v\n", err)
		return 1
	}
	return 0
}

func serveStormPublisher(in io.Reader, out io.Writer) error {
	br := bufio.NewReader(in)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("reading the configuration: %w", err)
	}
	var cfg stormPublisherConfig
	if err := json.Unmarshal(line, &cfg); err != nil {
		return fmt.Errorf("bad configuration: %w", err)
	}
	rep := stormPublisherReport{Errors: map[string]int{}}
	o, err := cfg.options()
	if err != nil {
		rep.Err = err.Error()
		return json.NewEncoder(out).Encode(rep)
	}
	side := &stormSide{stopC: make(chan struct{}), hist: newHistogram()}
	live := &oneShotPublisher{o: o}
	if err := live.connect(); err != nil {
		rep.Err = "concurrent publisher: " + describe(err)
		return json.NewEncoder(out).Encode(rep)
	}
	var lat []int64
	side.record = func(us int64) {
		if len(lat) < maxSideLatencies {
			lat = append(lat, us)
		}
	}
	side.wg.Go(func() {
		publishLive(o, side, live, func(err error) { rep.Errors[describe(err)]++ })
	})
	_, _ = io.Copy(io.Discard, br) // until the parent closes stdin
	side.halt()
	rep.Published, rep.Failed, rep.LatencyUS = side.published.Load(), side.failed.Load(), lat
	return json.NewEncoder(out).Encode(rep)
}

// options makes the few options a live publisher reads.
func (cfg stormPublisherConfig) options() (*options, error) {
	t := targets[cfg.Target]
	if t == nil {
		return nil, fmt.Errorf("unknown target %q", cfg.Target)
	}
	u, err := url.Parse(cfg.PubURL)
	if err != nil {
		return nil, fmt.Errorf("publish URL: %w", err)
	}
	if cfg.Rate <= 0 || cfg.Topics <= 0 {
		return nil, fmt.Errorf("rate %v and topics %d must be positive", cfg.Rate, cfg.Topics)
	}
	o := &options{target: t, pubURL: u, stormTopics: cfg.Topics}
	o.pub.Rate, o.pub.Size = cfg.Rate, cfg.Size
	return o, nil
}

// sideProcess is the parent's end of a storm-publisher process.
type sideProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// startSideProcess starts this executable as the storm's publisher.
func startSideProcess(o *options) (*sideProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	p := &sideProcess{cmd: exec.Command(exe, "storm-publisher")}
	p.cmd.Stderr = os.Stderr
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.out = bufio.NewReader(stdout)
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the storm's publisher: %w", err)
	}
	cfg := stormPublisherConfig{Target: o.target.Name, PubURL: o.pubURL.String(), Rate: o.pub.Rate, Topics: o.stormTopics, Size: o.pub.Size}
	if err := json.NewEncoder(p.stdin).Encode(cfg); err != nil {
		p.stdin.Close()
		_ = p.cmd.Wait()
		return nil, fmt.Errorf("starting the storm's publisher: %w", err)
	}
	return p, nil
}

// finish stops the process and reads its report.
func (p *sideProcess) finish() (stormPublisherReport, error) {
	var rep stormPublisherReport
	p.stdin.Close()
	line, rerr := p.out.ReadBytes('\n')
	werr := p.cmd.Wait()
	if rerr != nil {
		return rep, fmt.Errorf("the storm's publisher ended without a report (%v)", errors.Join(rerr, werr))
	}
	if err := json.Unmarshal(line, &rep); err != nil {
		return rep, fmt.Errorf("the storm's publisher: bad report: %w", err)
	}
	if rep.Err != "" {
		return rep, errors.New(rep.Err)
	}
	return rep, nil
}

// liveID is live message n's id.
func liveID(n int) string { return "live-" + strconv.Itoa(n) }

// publishLive publishes single messages round o's storm topics at
// --publish-rate over live until side stops, timing each 202 into side.
// fail is called from its goroutine.
func publishLive(o *options, side *stormSide, live *oneShotPublisher, fail func(error)) {
	defer live.close()
	every := time.Duration(float64(time.Second) / o.pub.Rate)
	next := time.Now()
	for n := 0; ; n++ {
		select {
		case <-side.stopC:
			return
		case <-time.After(time.Until(next)):
		}
		next = next.Add(every)
		t0 := time.Now()
		if err := live.single(n%o.stormTopics, liveID(n)); err != nil {
			side.failed.Add(1)
			fail(fmt.Errorf("concurrent publisher: %w", err))
			continue
		}
		side.published.Add(1)
		side.record(max(1, time.Since(t0).Microseconds()))
	}
}
