package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		os.Exit(runWorker())
	}
	if len(os.Args) > 1 && os.Args[1] == "storm-publisher" {
		os.Exit(runStormPublisher())
	}
	if len(os.Args) == 3 && os.Args[1] == "summarize" {
		if err := summarize(os.Args[2], os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "loadtest: %v\n", err)
			os.Exit(2)
		}
		return
	}
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr))
}

const usageHead = `loadtest: drives an SSE server with subscribers and publishers and checks
every delivery.

Usage:
  go run ./loadtest [flags]      one run, then a table (or --json) on stdout
  loadtest summarize DIR         medians and ratios of loadtest/scenarios.sh's results
  loadtest worker                internal: a share of the subscribers, started by
                                 the tool itself over stdin/stdout JSON lines
  loadtest storm-publisher       internal: --reconnect-storm's concurrent publisher,
                                 in a process of its own (stdin/stdout JSON)

A run: connect --subscribers streams at --connect-rate from worker processes
(at most --per-worker streams each; the publishers stay in this process so
that thousands of stream goroutines do not delay them), wait --settle,
publish at --publish-rate for --duration (or just hold the streams when the
rate is 0), wait for the last deliveries (--drain), close everything, report.
Progress goes to stderr once a second.

Every payload is "LT1 <publisher> <seq> <send unix ns> xxx..." (--size bytes).
A stream must get, once and in each publisher's order, every message
acknowledged after it became ready (for tinysse: after ": ok"); anything
missing is a loss. Latency is publish-to-delivery, in an HdrHistogram.
The peers get the same workload on channel "news": Centrifugo over uni_sse
and its HTTP API (the payload is the publication's data string), Mercure
over its hub with a JWT-signed form publish (see loadtest/peers/).

With --pid, the server's CPU (utime+stime from /proc/PID/stat) and RSS
(VmRSS) are read before connecting, after --settle, and after the drain: CPU
per million deliveries covers the publishing window and drain; RSS per
subscriber is the growth from before connecting to after --settle.

Only loopback addresses are loaded unless --allow-remote.
Exit status: 0 all checks passed, 1 a check failed, 2 bad usage or error.

Examples:
  go run ./loadtest --subscribers 500 --publish-rate 1000 --size 100 --duration 10s --pid $(pgrep -n tinysse)
  go run ./loadtest --target raw --url http://127.0.0.1:1984/sse --subscribers 500 --publish-rate 1000
  go run ./loadtest --target centrifugo --subscribers 500 --publish-rate 1000 --pid $(pgrep -n centrifugo)
  go run ./loadtest --target mercure --subscribers 500 --publish-rate 1000 --pid $(pgrep -n mercure)
  go run ./loadtest --subscribers 15000 --publish-rate 0 --duration 5s --pid PID
  go run ./loadtest --churn --subscribers 50 --duration 5s --pid PID
  go run ./loadtest --subscribers 5 --stuck 50 --size 32768 --publish-rate 1000 --count 3000 --pid PID

Flags:
`

func cli(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadtest: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var res *Result
	switch {
	case o.storm:
		res, err = runStorm(ctx, o, stderr)
	case o.churn:
		res, err = runChurn(ctx, o, stderr)
	default:
		res, err = run(ctx, o, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadtest: %v\n", err)
		return 2
	}
	if o.json {
		err = res.writeJSON(stdout)
	} else {
		err = res.writeTable(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadtest: %v\n", err)
		return 2
	}
	if !res.OK {
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o, raw := &options{}, &rawFlags{rate: "100"}
	fs := newFlagSet(o, raw, stderr)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	if err := o.setTarget(raw); err != nil {
		return nil, err
	}
	if err := o.setPublish(raw); err != nil {
		return nil, err
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	if err := o.setConnections(); err != nil {
		return nil, err
	}
	return o, nil
}

// rawFlags are the flags parseFlags turns into options rather than
// storing them there as they are.
type rawFlags struct {
	target, subURL, pubURL, mercureKey string
	allowRemote, noID                  bool
	rate                               string // --publish-rate: a number or "max"
}

// newFlagSet defines every flag, into o or raw.
func newFlagSet(o *options, raw *rawFlags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageHead)
		fs.PrintDefaults()
	}
	fs.StringVar(&raw.target, "target", "tinysse", "server kind: "+targetNames())
	fs.StringVar(&raw.subURL, "url", "", "subscribe URL (GET); its path defaults to the target's (default: the target's: tinysse http://127.0.0.1:1983/sse, raw :1984, centrifugo :18000, mercure :13000)")
	fs.StringVar(&raw.mercureKey, "mercure-key", defaultMercureKey, "HS256 key that signs the publisher JWT for --target mercure (loadtest/peers/Caddyfile's)")
	fs.StringVar(&raw.pubURL, "pub-url", "", "publish URL (POST); default: --url's host with the target's publish path")
	fs.BoolVar(&raw.allowRemote, "allow-remote", false, "allow a host that is not a loopback address")
	fs.IntVar(&o.subscribers, "subscribers", 100, "subscriber streams to hold")
	fs.Float64Var(&o.connectRate, "connect-rate", 2000, "new streams per second (0 = all at once)")
	fs.DurationVar(&o.handshakeTimeout, "handshake-timeout", 10*time.Second, "time for one stream to connect and become ready")
	fs.Func("publish-rate", "messages per second, \"max\" for as fast as possible, 0 to only hold the streams (default 100)", func(s string) error {
		raw.rate = s
		return nil
	})
	fs.IntVar(&o.pub.Size, "size", 100, "bytes of data per message (at least the ~35-byte header)")
	fs.DurationVar(&o.pub.Duration, "duration", 10*time.Second, "length of the publishing (or holding) window")
	fs.Int64Var(&o.pub.Count, "count", 0, "stop publishing after this many messages (0 = no limit)")
	fs.IntVar(&o.pub.Publishers, "publishers", 0, "keep-alive publisher connections at the start (0 = 1 per 1000 msg/s, at most 4; 4 for max)")
	fs.IntVar(&o.pub.MaxPublishers, "max-publishers", 16, "at a fixed rate, open more connections while all are busy, up to this many")
	fs.BoolVar(&raw.noID, "no-id", false, "publish without an id field")
	fs.IntVar(&o.pub.Batch, "batch", 1, "messages per publish request (tinysse's batch publish, a JSON array); --publish-rate and --count still count messages")
	fs.IntVar(&o.pid, "pid", 0, "server process to measure from /proc (0 = none)")
	fs.DurationVar(&o.settle, "settle", time.Second, "wait between the last connect and the window")
	fs.DurationVar(&o.drain, "drain", 10*time.Second, "longest wait for deliveries after the last publish")
	fs.IntVar(&o.perWorker, "per-worker", 8000, "most streams per worker process (each process may open 20,000 files here)")
	fs.IntVar(&o.workers, "workers", -1, "worker processes holding the streams (-1 = enough for --per-worker each, at least 1; 0 = all in this process, next to the publishers)")
	fs.IntVar(&o.readBuffer, "read-buffer", 1024, "bytes of read buffer each stream starts with; a read that fills it doubles it, up to 64 KiB (longer lines still work)")
	fs.IntVar(&o.stuck, "stuck", 0, "also open this many subscriber connections that never read (4096-byte receive buffer), and report when the server cuts each off")
	fs.BoolVar(&o.http2, "http2", false, "subscribers speak HTTP/2 with prior knowledge (h2c): many streams over few connections (--h2-conns)")
	fs.IntVar(&o.h2Conns, "h2-conns", 0, "with --http2, the connections the streams share (0 = one per 50 streams)")
	fs.BoolVar(&o.churn, "churn", false, "churn mode: --subscribers loops open a stream, wait until it is ready, close it, again, for --duration; reports cycles/s (nothing is published)")
	fs.StringVar(&o.metricsURL, "metrics-url", "", "the server's Prometheus endpoint: go_goroutines is read before connecting and after --settle (tinysse: http://HOST/metrics)")
	fs.BoolVar(&o.storm, "reconnect-storm", false, "reconnect storm (tinysse): --subscribers streams on --storm-topics topics read a base message, all close, --storm-behind messages are published per topic, then all reconnect within --storm-window with Last-Event-ID and must get exactly those, in order, while --publish-rate messages/s are published; reports time to the first and last replayed message, the publisher's latency and the server's peak RSS against the steady state")
	fs.IntVar(&o.stormTopics, "storm-topics", 10, "--reconnect-storm: topics")
	fs.IntVar(&o.stormBehind, "storm-behind", 200, "--reconnect-storm: messages each stream misses (the ring, --capacity, must hold them)")
	fs.DurationVar(&o.stormWindow, "storm-window", time.Second, "--reconnect-storm: the reconnects are spread over this long")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress on stderr")
	return fs
}

// setTarget sets the target and its subscribe and publish URLs, which
// must be loopback addresses unless --allow-remote.
func (o *options) setTarget(raw *rawFlags) error {
	if o.target = targets[raw.target]; o.target == nil {
		return fmt.Errorf("--target %q: want one of %s", raw.target, targetNames())
	}
	if o.target.Name == "mercure" && raw.mercureKey != defaultMercureKey {
		o.target = mercureTarget(raw.mercureKey)
	}
	subURL, pubURL := raw.subURL, raw.pubURL
	if subURL == "" {
		subURL = o.target.DefaultURL
	}
	var err error
	if o.subURL, err = targetURL(subURL, o.target.SubPath); err != nil {
		return fmt.Errorf("--url: %w", err)
	}
	if pubURL == "" {
		pubURL = "http://" + o.subURL.Host + o.target.PubPath
	}
	if o.pubURL, err = targetURL(pubURL, o.target.PubPath); err != nil {
		return fmt.Errorf("--pub-url: %w", err)
	}
	if raw.allowRemote {
		return nil
	}
	if err := checkLoopback(o.subURL); err != nil {
		return fmt.Errorf("--url: %w", err)
	}
	if err := checkLoopback(o.pubURL); err != nil {
		return fmt.Errorf("--pub-url: %w", err)
	}
	return nil
}

// setPublish sets the rate (-1 for "max"), the id and the default number
// of publishers.
func (o *options) setPublish(raw *rawFlags) error {
	if raw.rate == "max" {
		o.pub.Rate = -1
	} else {
		r, err := strconv.ParseFloat(raw.rate, 64)
		if err != nil || r < 0 {
			return fmt.Errorf("--publish-rate %q: want a number >= 0 or \"max\"", raw.rate)
		}
		o.pub.Rate = r
	}
	o.pub.WithID = !raw.noID
	if o.pub.Publishers == 0 {
		o.pub.Publishers = 4
		if o.pub.Rate > 0 {
			o.pub.Publishers = min(4, max(1, int((o.pub.Rate+999)/1000)))
		}
	}
	return nil
}

// check refuses values out of range.
func (o *options) check() error {
	switch {
	case o.subscribers < 0:
		return errors.New("--subscribers must not be negative")
	case o.connectRate < 0:
		return errors.New("--connect-rate must not be negative")
	case o.pub.Duration <= 0:
		return errors.New("--duration must be positive")
	case o.pub.Size < 0 || o.pub.Size > 1<<20:
		return errors.New("--size must be 0..1MiB")
	case o.pub.Count < 0:
		return errors.New("--count must not be negative")
	case o.pub.Batch < 1 || o.pub.Batch > 1000:
		return errors.New("--batch must be 1..1000")
	case o.pub.Batch > 1 && o.target.AppendBatch == nil:
		return fmt.Errorf("--batch: target %s has no batch publish", o.target.Name)
	case o.pub.Publishers < 1 || o.pub.Publishers > 64 || o.pub.MaxPublishers > 64:
		return errors.New("--publishers and --max-publishers must be 1..64")
	case o.perWorker < 1:
		return errors.New("--per-worker must be positive")
	case o.workers < -1:
		return errors.New("--workers must be -1 (auto), 0 (none) or more")
	case o.readBuffer < minReadBuffer:
		return fmt.Errorf("--read-buffer must be at least %d", minReadBuffer)
	case o.handshakeTimeout <= 0 || o.settle < 0 || o.drain < 0:
		return errors.New("--handshake-timeout must be positive, --settle and --drain not negative")
	case o.pid < 0:
		return errors.New("--pid must not be negative")
	case o.stuck < 0:
		return errors.New("--stuck must not be negative")
	case o.storm && (o.stormTopics < 1 || o.stormBehind < 1 || o.stormWindow < 0):
		return errors.New("--storm-topics and --storm-behind must be positive, --storm-window not negative")
	}
	return nil
}

// setConnections settles the worker processes and, with --http2, the
// connections the streams share.
func (o *options) setConnections() error {
	if o.http2 {
		switch {
		case o.churn:
			return errors.New("--http2 does not go with --churn")
		case o.target.Name != "tinysse":
			return errors.New("--http2: only for --target tinysse")
		case o.h2Conns < 0:
			return errors.New("--h2-conns must not be negative")
		case o.h2Conns == 0:
			o.h2Conns = max(1, (o.subscribers+49)/50)
		}
	}
	if o.workers == -1 {
		o.workers = max(1, (o.subscribers+o.perWorker-1)/o.perWorker)
	}
	if o.workers > 0 && o.subscribers/o.workers > o.perWorker {
		return fmt.Errorf("--workers %d: more than --per-worker %d streams each", o.workers, o.perWorker)
	}
	o.workers = min(o.workers, o.subscribers) // 0 subscribers: nothing to start
	if o.http2 && o.h2Conns < max(o.workers, 1) {
		return fmt.Errorf("--h2-conns %d: fewer than the %d worker processes (each needs a connection)", o.h2Conns, o.workers)
	}
	if o.http2 && o.h2Conns > o.subscribers {
		o.h2Conns = max(o.subscribers, 1)
	}
	return nil
}
