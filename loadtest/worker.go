package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"time"
)

// A group of subscribers runs behind the same protocol whether it lives in
// this process or in a worker process (`loadtest worker`, started from
// os.Executable): JSON lines, one workerConfig then workerCommands on its
// input, workerReports on its output. A worker stops on "stop", at its
// deadline, or when its input closes (the parent went away).

// workerConfig is the first line a group reads.
type workerConfig struct {
	HTTP2            bool          `json:"http2,omitempty"`    // streams over HTTP/2 with prior knowledge
	H2Conns          int           `json:"h2_conns,omitempty"` // connections they share
	Target           string        `json:"target"`
	URL              string        `json:"url"`
	Subscribers      int           `json:"subscribers"`
	ConnectRate      float64       `json:"connect_rate"` // per second; 0 = all at once
	HandshakeTimeout time.Duration `json:"handshake_timeout"`
	ReadBuffer       int           `json:"read_buffer"`
	Progress         time.Duration `json:"progress"`
	Deadline         time.Time     `json:"deadline"` // hard stop
}

// workerCommand is every later line a group reads.
type workerCommand struct {
	Cmd string `json:"cmd"` // "stop"
}

// workerReport is what a group writes, every cfg.Progress and once at the
// end (Final). Counts are totals so far; Hist holds the latencies since the
// previous report (base64 of HdrHistogram's compressed V2 encoding).
type workerReport struct {
	Final     bool           `json:"final,omitempty"`
	Err       string         `json:"err,omitempty"`
	Connected int64          `json:"connected"`
	Failed    int64          `json:"failed"`
	Dropped   int64          `json:"dropped"`
	Counts    counts         `json:"counts"`
	Hist      string         `json:"hist,omitempty"`
	Ready     []int64        `json:"ready,omitempty"` // final: per stream that got ready, when (unix ns)
	Fresh     []int64        `json:"fresh,omitempty"` // final: and how many messages sent after that it got
	Errors    map[string]int `json:"errors,omitempty"`
}

// serveGroup runs one group: reads its config from in, reports to out.
func serveGroup(ctx context.Context, in io.Reader, out io.Writer) error {
	dec := json.NewDecoder(in)
	enc := json.NewEncoder(out)
	var cfg workerConfig
	if err := dec.Decode(&cfg); err != nil {
		return fmt.Errorf("worker: reading config: %w", err)
	}
	g, err := newGroup(cfg)
	if err != nil {
		_ = enc.Encode(workerReport{Final: true, Err: err.Error()})
		return err
	}
	ctx, cancel := context.WithDeadline(ctx, cfg.Deadline)
	defer cancel()

	stop := make(chan struct{})
	go func() { // ends on "stop" or when in closes
		defer close(stop)
		var c workerCommand
		for dec.Decode(&c) == nil && c.Cmd != "stop" {
		}
	}()
	connecting := make(chan struct{})
	go func() {
		defer close(connecting)
		g.connectAll(ctx)
	}()

	t := time.NewTicker(cfg.Progress)
	defer t.Stop()
loop:
	for {
		select {
		case <-t.C:
			if err := enc.Encode(g.report(false)); err != nil {
				break loop
			}
		case <-stop:
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	cancel()
	<-connecting
	g.close(5 * time.Second)
	return enc.Encode(g.report(true))
}

// runWorker is `loadtest worker`: a group on stdin and stdout.
func runWorker() int {
	// Ctrl-C reaches the whole process group: the parent stops us, with a
	// final report, rather than the signal.
	signal.Ignore(os.Interrupt)
	if err := serveGroup(context.Background(), os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "loadtest worker: %v\n", err)
		return 1
	}
	return 0
}

// groupHandle is the parent's end of a group.
type groupHandle struct {
	name    string
	subs    int
	pid     int // the worker process; 0 in this process
	cmds    io.WriteCloser
	reports *bufio.Reader
	wait    func() error
}

// startGroup starts a group of cfg.Subscribers, in this process or in a
// worker process.
func startGroup(name string, cfg workerConfig, inProcess bool) (*groupHandle, error) {
	h := &groupHandle{name: name, subs: cfg.Subscribers}
	if inProcess {
		inR, inW := io.Pipe()
		outR, outW := io.Pipe()
		done := make(chan error, 1)
		go func() {
			err := serveGroup(context.Background(), inR, outW)
			outW.CloseWithError(err)
			inR.Close()
			done <- err
		}()
		h.cmds, h.reports, h.wait = inW, bufio.NewReaderSize(outR, 64<<10), func() error { return <-done }
	} else {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(exe, "worker")
		cmd.Stderr = os.Stderr
		if h.cmds, err = cmd.StdinPipe(); err != nil {
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("starting worker: %w", err)
		}
		h.reports, h.wait, h.pid = bufio.NewReaderSize(out, 64<<10), cmd.Wait, cmd.Process.Pid
	}
	if err := json.NewEncoder(h.cmds).Encode(cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return h, nil
}

// next reads the group's next report.
func (h *groupHandle) next() (workerReport, error) {
	var r workerReport
	line, err := h.reports.ReadBytes('\n')
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%s: ended without a final report", h.name)
		}
		return r, err
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return r, fmt.Errorf("%s: bad report: %w", h.name, err)
	}
	if r.Err != "" {
		return r, fmt.Errorf("%s: %s", h.name, r.Err)
	}
	return r, nil
}

func (h *groupHandle) stop() {
	_ = json.NewEncoder(h.cmds).Encode(workerCommand{Cmd: "stop"})
}
