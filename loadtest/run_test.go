package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/testserver"
	"github.com/tinysse/tinysse/internal/testserver/inproc"
	"github.com/tinysse/tinysse/transport"
)

// TestMain lets the test binary serve as the tool's worker process.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		os.Exit(runWorker())
	}
	if len(os.Args) > 1 && os.Args[1] == "storm-publisher" {
		os.Exit(runStormPublisher())
	}
	os.Exit(m.Run())
}

// startTinysse runs the real server on a loopback port.
func startTinysse(t *testing.T) string {
	t.Helper()
	url, _ := startTinysseServer(t)
	return url
}

func startTinysseServer(t *testing.T) (string, *transport.Server) {
	t.Helper()
	s := inproc.Start(t, inproc.Config{Engine: engine.Config{Capacity: 4096}})
	return s.URL("/sse"), s.Transport
}

func testOptions(t *testing.T, target, url string) *options {
	t.Helper()
	o, err := parseFlags([]string{"--target", target, "--url", url, "--subscribers", "20",
		"--publish-rate", "500", "--duration", "400ms", "--settle", "100ms", "--drain", "2s", "--quiet", "--workers", "0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func runOK(t *testing.T, o *options) *Result {
	t.Helper()
	res, err := run(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if testing.Verbose() {
		res.writeTable(os.Stderr)
	}
	return res
}

func TestRunTinysse(t *testing.T) {
	o := testOptions(t, "tinysse", startTinysse(t))
	o.pid = os.Getpid() // the server runs in this process
	res := runOK(t, o)
	d := res.Deliveries
	// A loaded machine (or -race) may make the fixed-rate publisher skip a
	// send (under -race with a load average of 12 on 2 cores, 126 of 200
	// were skipped); every acknowledged publish must reach all 20 streams.
	if !res.OK || res.Subscribers.Ready != 20 || res.Publish.Acked < 20 || res.Publish.Acked+res.Publish.Skipped != 200 ||
		d.Expected != 20*res.Publish.Acked || d.Received != d.Expected || d.Total != d.Expected {
		t.Fatalf("result not clean: %+v", res)
	}
	if res.Latency == nil || res.Latency.Count != d.Total || res.Latency.Max <= 0 {
		t.Errorf("latency: %+v", res.Latency)
	}
	if res.Server == nil || res.Server.RSSConnected <= 0 || res.Server.CPUSeconds < 0 {
		t.Errorf("server stats: %+v", res.Server)
	}
	// The server (this process, publishers included) made write calls.
	if v := res.Server; v == nil || v.WriteCalls <= 0 || v.DeliveriesPerWrite <= 0 {
		t.Errorf("write calls: %+v", v)
	}
}

// Worker processes (this test binary, see TestMain) hold the streams.
func TestRunWorkers(t *testing.T) {
	o := testOptions(t, "tinysse", startTinysse(t))
	o.subscribers, o.workers = 30, 3
	res := runOK(t, o)
	// On a loaded machine the fixed-rate publisher may skip a send; every
	// acknowledged publish must still reach all 30 streams.
	d := res.Deliveries
	if !res.OK || res.Subscribers.Workers != 3 || res.Subscribers.Ready != 30 || res.Publish.Acked < 100 ||
		d.Expected != 30*res.Publish.Acked || d.Received != d.Expected || d.Lost != 0 || d.Duplicates != 0 {
		t.Fatalf("result: %+v", res)
	}
}

// TestRunHTTP2: --http2 puts the streams on --h2-conns HTTP/2
// connections, in this process and across worker processes, and every
// message still reaches every stream once.
func TestRunHTTP2(t *testing.T) {
	for _, workers := range []int{0, 2} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			url, srv := startTinysseServer(t)
			o, err := parseFlags([]string{"--url", url, "--subscribers", "30", "--http2", "--h2-conns", "3",
				"--publish-rate", "500", "--duration", "400ms", "--settle", "100ms", "--drain", "2s", "--quiet",
				"--workers", fmt.Sprint(workers)}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			// The most connections and streams seen while the run runs.
			var during transport.Stats
			stop, polled := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(polled)
				for {
					st := srv.Stats()
					during.H2Conns, during.H2Streams = max(during.H2Conns, st.H2Conns), max(during.H2Streams, st.H2Streams)
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}()
			res := runOK(t, o)
			close(stop)
			<-polled
			// A loaded machine makes the fixed-rate publisher skip sends:
			// every acknowledged one must still reach all 30 streams.
			d := res.Deliveries
			if !res.OK || res.Subscribers.Ready != 30 || res.Publish.Acked < 20 || res.Publish.Acked+res.Publish.Skipped != 200 ||
				d.Expected != 30*res.Publish.Acked || d.Received != d.Expected || d.Lost != 0 || d.Duplicates != 0 {
				t.Fatalf("result: %+v", res)
			}
			if during.H2Conns != 3 || during.H2Streams != 30 {
				t.Errorf("while publishing: %d HTTP/2 connections, %d HTTP/2 streams; want 3 and 30", during.H2Conns, during.H2Streams)
			}
		})
	}
	for _, args := range [][]string{
		{"--http2", "--churn"},
		{"--http2", "--target", "raw"},
		{"--http2", "--h2-conns", "-1"},
		{"--http2", "--h2-conns", "1", "--workers", "2", "--subscribers", "20"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

func TestRunIdle(t *testing.T) {
	o := testOptions(t, "tinysse", startTinysse(t))
	o.pub.Rate, o.pub.Duration = 0, 200*time.Millisecond
	res := runOK(t, o)
	if !res.OK || res.Subscribers.Ready != 20 || res.Deliveries.Total != 0 || res.Publish.Acked != 0 {
		t.Fatalf("result: %+v", res)
	}
}

func TestRunRefusedConnections(t *testing.T) {
	o := testOptions(t, "tinysse", "http://"+testserver.FreeAddr(t)+"/sse")
	o.subscribers, o.pub.Duration = 3, 100*time.Millisecond
	res := runOK(t, o)
	if res.OK || res.Subscribers.Failed != 3 || res.Publish.Failed == 0 || len(res.Errors) == 0 {
		t.Fatalf("result: %+v", res)
	}
}

// faultyServer speaks tinysse's wire but misdelivers on purpose, so the
// checks can be checked.
type faultyServer struct {
	crlf, chunked bool

	mu   sync.Mutex
	subs []net.Conn
	held map[int][]byte // by sub: a frame held back to be sent late
}

func startFaulty(t *testing.T, f *faultyServer) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f.held = map[int][]byte{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.handle(c)
		}
	}()
	return "http://" + ln.Addr().String() + "/sse"
}

func (f *faultyServer) handle(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			c.Close()
			return
		}
		if req.Method == "GET" {
			head := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
			if f.chunked {
				head += "Transfer-Encoding: chunked\r\n"
			}
			c.Write([]byte(head + "\r\n"))
			c.Write(f.frame(": ok\n\n"))
			f.mu.Lock()
			f.subs = append(f.subs, c)
			f.mu.Unlock()
			return
		}
		var m struct{ ID, Data string }
		json.NewDecoder(req.Body).Decode(&m)
		_, seq, _, _ := parsePayload([]byte(m.Data))
		frame := "id: " + m.ID + "\ndata: " + m.Data + "\n\n"
		f.mu.Lock()
		for i, s := range f.subs {
			switch {
			case i == 0 && seq == 5: // lost
			case i == 1 && seq == 7: // duplicated
				s.Write(f.frame(frame + frame))
			case i == 2 && seq == 10: // sent after 11
				f.held[i] = f.frame(frame)
			case i == 2 && seq == 11:
				s.Write(f.frame(frame))
				s.Write(f.held[i])
			case i == 3 && seq == 3: // noise
				s.Write(f.frame(": lagged\n\ndata: not ours\n\n" + frame))
			default:
				s.Write(f.frame(frame))
			}
		}
		f.mu.Unlock()
		fmt.Fprintf(c, "HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}")
	}
}

func (f *faultyServer) frame(s string) []byte {
	if f.crlf {
		s = strings.ReplaceAll(s, "\n", "\r\n")
	}
	if f.chunked {
		s = fmt.Sprintf("%x\r\n%s\r\n", len(s), s)
	}
	return []byte(s)
}

func TestRunFindsFaults(t *testing.T) {
	for _, f := range []*faultyServer{{}, {crlf: true}, {chunked: true}} {
		t.Run(fmt.Sprintf("crlf=%v,chunked=%v", f.crlf, f.chunked), func(t *testing.T) {
			o := testOptions(t, "tinysse", startFaulty(t, f))
			// One publisher connection: the faults are keyed to sequence
			// numbers, and concurrent publishers on a busy machine could
			// reach the server out of order and add faults of their own.
			// The faults need 12 messages: one connection sends a tick's
			// message only when its last is answered, and under -race on
			// a loaded machine an answer took 60 ms (5 of 30 ticks at
			// 100/s over 300 ms). 75 ticks over 1.5 s leave room for
			// answers of up to 120 ms.
			o.subscribers, o.pub.Rate, o.pub.Duration, o.drain = 5, 50, 1500*time.Millisecond, time.Second
			o.connectRate = 0
			o.pub.Publishers, o.pub.MaxPublishers = 1, 1
			res := runOK(t, o)
			d := res.Deliveries
			msgs := res.Publish.Acked // 75 unless the machine is too busy to keep the pace
			if res.OK || res.Subscribers.Ready != 5 || msgs < 12 {
				t.Fatalf("result: %+v", res)
			}
			want := Result{}.Deliveries
			want.Expected, want.Received, want.Lost, want.SubscribersWithLoss = 5*msgs, 5*msgs-1, 1, 1
			want.Duplicates, want.OutOfOrder, want.Foreign, want.Lagged, want.Total = 1, 1, 1, 1, 5*msgs
			want.PerSecond = d.PerSecond
			if d != want {
				t.Errorf("deliveries\n got %+v\nwant %+v", d, want)
			}
		})
	}
}

// TestRunReadBufferGrows: streams that start with a 64-byte read buffer
// still count every message of 3,000 bytes (each spans many reads until
// the buffer has grown), and the buffer doubles only after a read that
// filled it, up to maxReadBuffer.
func TestRunReadBufferGrows(t *testing.T) {
	o := testOptions(t, "tinysse", startTinysse(t))
	o.readBuffer, o.pub.Size, o.subscribers = 64, 3000, 5
	res := runOK(t, o)
	d := res.Deliveries
	if !res.OK || res.Publish.Acked < 20 || d.Expected != 5*res.Publish.Acked || d.Received != d.Expected || d.Foreign != 0 {
		t.Fatalf("result: %+v", res)
	}
	for _, c := range []struct{ size, n, want int }{
		{64, 63, 64}, {64, 64, 128}, {1024, 1024, 2048}, {48 << 10, 48 << 10, maxReadBuffer},
		{maxReadBuffer, maxReadBuffer, maxReadBuffer}, {1 << 20, 1 << 20, 1 << 20},
	} {
		if got := len(grown(make([]byte, c.size), c.n)); got != c.want {
			t.Errorf("grown(%d bytes, read %d) = %d bytes, want %d", c.size, c.n, got, c.want)
		}
	}
}
