package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http/httputil"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Churn mode (--churn): --subscribers loops, each opening a stream,
// waiting until it is ready (the target's Ready line), closing it and
// starting over, for --duration. It measures how many subscribe+unsubscribe
// cycles a server takes per second and how long a subscribe takes to become
// ready; no message is published.

// ChurnStats is the result of a churn run.
type ChurnStats struct {
	Loops     int     `json:"loops"`  // concurrent connect/close loops
	Cycles    int64   `json:"cycles"` // streams opened, ready, closed
	Failed    int64   `json:"failed"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"` // cycles per second
	// ServerCPUPerThousand is the server's CPU seconds per 1,000 cycles.
	ServerCPUPerThousand float64 `json:"server_cpu_seconds_per_thousand,omitempty"`
}

func runChurn(ctx context.Context, o *options, stderr io.Writer) (*Result, error) {
	res := newResult(o)
	var before procSample
	if o.pid != 0 {
		var err error
		if before, err = readProc(o.pid); err != nil {
			return nil, fmt.Errorf("--pid: %w", err)
		}
	}
	hostBefore, _ := readHostCPU()
	ch := &churnRun{o: o, res: res, request: o.target.AppendSubscribe(nil, o.subURL), hist: newHistogram()}
	ctxDone := ctx.Done()
	ctx, cancel := context.WithTimeout(ctx, o.pub.Duration)
	defer cancel()
	start := time.Now()
	end, _ := ctx.Deadline()
	var wg sync.WaitGroup
	for range o.subscribers {
		wg.Go(func() { ch.loop(ctx, end) })
	}
	if !o.quiet {
		go ch.progress(ctx, stderr, start)
	}
	wg.Wait()

	secs := time.Since(start).Seconds()
	hostAfter, _ := readHostCPU()
	c := &ChurnStats{Loops: o.subscribers, Cycles: ch.cycles.Load(), Failed: ch.failed.Load(), Seconds: secs}
	c.PerSecond = float64(c.Cycles) / secs
	res.Churn = c
	res.Latency = latencyOf(ch.hist)
	if hostAfter.total > 0 {
		res.Host = &HostStats{Cores: runtime.NumCPU(), BusyPercent: busyPercent(hostBefore, hostAfter)}
	}
	if o.pid != 0 {
		addChurnServer(res, o.pid, before)
	}
	select {
	case <-ctxDone:
		res.Errors["interrupted"]++
	default:
	}
	res.OK = c.Failed == 0 && c.Cycles > 0 && len(res.Errors) == 0
	return res, nil
}

// churnRun is a churn run's shared state; the loops and the progress
// line run on goroutines of their own.
type churnRun struct {
	o       *options
	request []byte // the subscribe request
	mu      sync.Mutex
	res     *Result        // its Errors guarded by mu
	hist    *hdr.Histogram // dial to ready, µs; guarded by mu
	cycles  atomic.Int64
	failed  atomic.Int64
}

// loop opens, readies and closes a stream, again, until ctx ends; what
// the end of the window cuts off is not counted.
func (ch *churnRun) loop(ctx context.Context, end time.Time) {
	br := bufio.NewReaderSize(nil, max(ch.o.readBuffer, 4096))
	for ctx.Err() == nil {
		t0 := time.Now()
		err := churnOnce(ctx, ch.o, ch.request, br)
		if ctx.Err() != nil || !time.Now().Before(end) {
			// Cut off by the end of the window (a dial bounded by
			// ctx's deadline may fail just before ctx says so).
			return
		}
		ch.mu.Lock()
		if err != nil {
			ch.res.Errors[describe(err)]++
		} else {
			_ = ch.hist.RecordValue(max(1, time.Since(t0).Microseconds()))
		}
		ch.mu.Unlock()
		if err != nil {
			ch.failed.Add(1)
			sleep(ctx, 10*time.Millisecond) // don't spin on a failing server
			continue
		}
		ch.cycles.Add(1)
	}
}

// progress prints a line a second to w until ctx ends.
func (ch *churnRun) progress(ctx context.Context, w io.Writer, start time.Time) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last int64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			n := ch.cycles.Load()
			fmt.Fprintf(w, "%6.1fs churn  cycles %d (%d/s)  failed %d\n", now.Sub(start).Seconds(), n, n-last, ch.failed.Load())
			last = n
		}
	}
}

// addChurnServer reports the server's CPU and RSS since before, and its
// CPU per thousand cycles; res.Churn must be final.
func addChurnServer(res *Result, pid int, before procSample) {
	after, err := readProc(pid)
	if err != nil {
		res.Errors["--pid: "+err.Error()]++
		return
	}
	v := &ServerStats{PID: pid, RSSBefore: before.RSS, RSSConnected: after.RSS, RSSEnd: after.RSS}
	v.CPUSeconds = math.Round((after.CPU-before.CPU)*1e3) / 1e3
	if c := res.Churn; c.Cycles > 0 {
		c.ServerCPUPerThousand = v.CPUSeconds / (float64(c.Cycles) / 1e3)
	}
	res.Server = v
}

// churnOnce opens one stream, waits until it is ready and closes it.
func churnOnce(ctx context.Context, o *options, request []byte, br *bufio.Reader) error {
	d := net.Dialer{Timeout: o.handshakeTimeout}
	conn, err := d.DialContext(ctx, "tcp", o.subURL.Host)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(o.handshakeTimeout))
	if _, err := conn.Write(request); err != nil {
		return err
	}
	br.Reset(conn)
	status, err := br.ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200")) && !bytes.HasPrefix(status, []byte("HTTP/1.0 200")) {
		return fmt.Errorf("%w: %q", errHandshake, bytes.TrimSpace(status))
	}
	chunked := false
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("reading response head: %w", err)
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, _ := bytes.Cut(h, []byte(":"))
		if bytes.EqualFold(bytes.TrimSpace(k), []byte("Transfer-Encoding")) && bytes.Contains(bytes.ToLower(v), []byte("chunked")) {
			chunked = true
		}
	}
	if o.target.Ready == nil {
		return nil
	}
	r := br
	if chunked {
		r = bufio.NewReader(httputil.NewChunkedReader(br))
	}
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("waiting for the stream to be ready: %w", err)
		}
		if o.target.Ready(bytes.TrimRight(line, "\r\n")) {
			return nil
		}
	}
}
