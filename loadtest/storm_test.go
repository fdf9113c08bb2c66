package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/transport"
)

// startStormServer runs the real server on a loopback port with rings of
// capacity messages per topic.
func startStormServer(t *testing.T, capacity int) string {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	eng, err := engine.New(engine.Config{Logger: log, Capacity: capacity})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := transport.New(transport.Config{Logger: log}, eng)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String() + "/sse"
}

func stormOptions(t *testing.T, url string, behind int) *options {
	t.Helper()
	o, err := parseFlags([]string{"--target", "tinysse", "--url", url, "--reconnect-storm",
		"--subscribers", "200", "--storm-topics", "4", "--storm-behind", strconv.Itoa(behind),
		"--storm-window", "300ms", "--publish-rate", "50", "--settle", "200ms", "--quiet", "--workers", "0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestRunReconnectStorm: 200 streams on 4 topics close, miss 30 messages
// each and come back within 300 ms with Last-Event-ID while a publisher
// runs: every stream gets exactly the missed messages, in order, and the
// report has the figures (times to the first and last replayed message,
// the publisher's latency, the server's RSS steady and at peak).
func TestRunReconnectStorm(t *testing.T) {
	o := stormOptions(t, startStormServer(t, 256), 30)
	o.pid = os.Getpid() // the server runs in this process
	res, err := runStorm(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	st := res.Storm
	if !res.OK || st.Complete != 200 || st.Failed != 0 || res.Subscribers.Ready != 200 || len(res.Errors) != 0 {
		t.Fatalf("storm not clean: ok %v, %+v, errors %v", res.OK, st, res.Errors)
	}
	if st.FirstP99MS <= 0 || st.AllP99MS < st.FirstP50MS || st.Published == 0 || st.PublishP99MS <= 0 {
		t.Errorf("figures missing: %+v", st)
	}
	if st.RSSSteady <= 0 || st.RSSPeak <= 0 || st.RSSPeakOverSte <= 0 {
		t.Errorf("RSS figures missing: %+v", st)
	}
}

// TestRunReconnectStormFindsGaps: rings of 16 cannot replay 30 missed
// messages: the server says so (": replay-gap") and skips ahead, and the
// tool reports every stream failed rather than complete.
func TestRunReconnectStormFindsGaps(t *testing.T) {
	o := stormOptions(t, startStormServer(t, 16), 30)
	res, err := runStorm(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK || res.Storm.Complete != 0 || res.Storm.Failed != 200 {
		t.Fatalf("a storm beyond the rings reported as %v: %+v, errors %v", res.OK, res.Storm, res.Errors)
	}
}

// TestRunReconnectStormPublisherProcess: with worker processes allowed
// (the default), the storm's concurrent publisher runs in a process of
// its own (this test binary, see TestMain), so that its figures are the
// server's answers rather than this process's run queue; its 202s and
// their latencies come back in the report.
func TestRunReconnectStormPublisherProcess(t *testing.T) {
	o := stormOptions(t, startStormServer(t, 256), 30)
	o.workers = 1
	res, err := runStorm(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	st := res.Storm
	if !res.OK || st.Complete != 200 || st.Failed != 0 || len(res.Errors) != 0 {
		t.Fatalf("storm not clean: ok %v, %+v, errors %v", res.OK, st, res.Errors)
	}
	if st.Published == 0 || st.PublishFailed != 0 || st.PublishP99MS <= 0 || st.PublishMaxMS < st.PublishP99MS {
		t.Errorf("the publisher's figures did not come back: %+v", st)
	}
}

// TestStormPublisherReports: the publisher process publishes from its
// configuration until its stdin closes and reports one latency per 202;
// a publish URL nobody listens on is reported as an error, not as zero
// publishes.
func TestStormPublisherReports(t *testing.T) {
	url := startStormServer(t, 256)
	run := func(cfg stormPublisherConfig, d time.Duration) stormPublisherReport {
		t.Helper()
		inR, inW := io.Pipe()
		outR, outW := io.Pipe()
		done := make(chan error, 1)
		go func() { done <- serveStormPublisher(inR, outW); outW.Close() }()
		if err := json.NewEncoder(inW).Encode(cfg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(d)
		inW.Close()
		var rep stormPublisherReport
		if err := json.NewDecoder(outR).Decode(&rep); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return rep
	}
	rep := run(stormPublisherConfig{Target: "tinysse", PubURL: url, Rate: 100, Topics: 3, Size: 64}, 300*time.Millisecond)
	if rep.Err != "" || rep.Published == 0 || rep.Failed != 0 || len(rep.LatencyUS) != int(rep.Published) || len(rep.Errors) != 0 {
		t.Fatalf("report: %+v", rep)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/sse"
	ln.Close()
	if rep := run(stormPublisherConfig{Target: "tinysse", PubURL: closed, Rate: 100, Topics: 3}, 0); !strings.Contains(rep.Err, "concurrent publisher") {
		t.Errorf("nobody listening: %+v", rep)
	}
	if rep := run(stormPublisherConfig{Target: "nope", PubURL: url, Rate: 100, Topics: 3}, 0); !strings.Contains(rep.Err, `unknown target "nope"`) {
		t.Errorf("unknown target: %+v", rep)
	}
}
