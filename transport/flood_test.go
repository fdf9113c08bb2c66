package transport

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/testserver"
	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// HTTP/2 floods against a server in a process of its own, so that its CPU
// time and memory are its own: rapid reset (CVE-2023-44487: HEADERS then
// RST_STREAM, as fast as the client can) and CONTINUATION floods (a header
// block that never ends). The promise: the server's CPU stays within one
// core and its RSS within 64 MiB of where it was, and it serves others
// during and after the flood.

const floodServerEnv = "TINYSSE_TEST_H2_FLOOD_SERVER"

// floodWorkers is how many connections flood at once.
const floodWorkers = 16

// TestHelperH2Server is not a test: the flood tests run this binary again
// with floodServerEnv set, and this function is then the server. It prints
// its address and serves until its input closes.
func TestHelperH2Server(t *testing.T) {
	if os.Getenv(floodServerEnv) == "" {
		t.Skip("a helper process for the HTTP/2 flood tests")
	}
	var srv *Server
	stats := Route{Path: "/stats", Handler: func(ctx *fasthttp.RequestCtx) {
		b, _ := json.Marshal(srv.Stats())
		ctx.SetBody(b)
	}}
	addr, _, srv := startServer(t, engine.Config{}, Config{Routes: []Route{stats}})
	fmt.Println(addr)
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// floodServer is a server process started by startFloodServer.
type floodServer struct {
	addr string
	pid  int
}

// startFloodServer skips the test in -short mode (a flood takes several
// seconds) and under the race detector (it multiplies the server's memory
// and CPU: the bounds are the server's as built).
func startFloodServer(t *testing.T) floodServer {
	t.Helper()
	if testing.Short() {
		t.Skip("a flood of several seconds")
	}
	if raceEnabled {
		t.Skip("the race detector multiplies the server's memory and CPU: the bounds are the server's as built")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperH2Server$")
	cmd.Env = append(os.Environ(), floodServerEnv+"=1")
	stdin, stdout := testserver.StartPiped(t, cmd)
	br := bufio.NewReader(stdout)
	line, err := br.ReadString('\n')
	exited := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, br)
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(wait):
			_ = cmd.Process.Kill() // only the process this test started
			<-exited
		}
	})
	if err != nil {
		t.Fatalf("the server process said nothing: %v", err)
	}
	return floodServer{addr: strings.TrimSpace(line), pid: cmd.Process.Pid}
}

// usageOf is a process's CPU time so far and resident memory now.
func usageOf(t *testing.T, pid int) (cpu time.Duration, rss int64) {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	// Fields after the command name (which may hold spaces): state is
	// the first; utime and stime are the 12th and 13th.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	cpu = time.Duration(ut+st) * time.Second / 100 // USER_HZ
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			rss = kb << 10
		}
	}
	return cpu, rss
}

// flood runs attack on workers connections at once for d, each starting a
// new connection when the server closes its last, and measures the server
// meanwhile: its CPU time over d, in cores, and its highest RSS growth.
// A subscriber on a connection of its own must get a message published
// during the flood.
func flood(t *testing.T, srv floodServer, workers int, d time.Duration, attack func(c net.Conn) (frames int, err error)) {
	t.Helper()
	// Warm up what a normal client touches, then measure from there.
	h2c.publishJSON(t, srv.addr, `{"data":"warm"}`)
	s := h2c.subscribe(t, srv.addr, "/sse?topic=bystander")
	s.expectOK()
	time.Sleep(200 * time.Millisecond)
	cpu0, rss0 := usageOf(t, srv.pid)

	var conns, frames atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", srv.addr, wait)
				if err != nil {
					continue
				}
				conns.Add(1)
				go func() { _, _ = io.Copy(io.Discard, c) }() // the server's frames
				done := make(chan struct{})
				go func() {
					select {
					case <-stop:
					case <-done:
					}
					c.Close()
				}()
				n, _ := attack(c)
				frames.Add(int64(n))
				close(done)
			}
		}()
	}
	start := time.Now()
	var peak int64
	published := false
	for time.Since(start) < d {
		time.Sleep(100 * time.Millisecond)
		_, rss := usageOf(t, srv.pid)
		peak = max(peak, rss-rss0)
		if !published && time.Since(start) > d/2 {
			published = true
			h2c.publishTo(t, srv.addr, "/sse?topic=bystander", `{"data":"during the flood"}`)
		}
	}
	cpu1, _ := usageOf(t, srv.pid)
	took := time.Since(start)
	close(stop)
	wg.Wait()
	cores := (cpu1 - cpu0).Seconds() / took.Seconds()
	t.Logf("%d connections, %d frames in %v: server CPU %.2f cores, RSS growth at most %.1f MiB",
		conns.Load(), frames.Load(), took.Round(time.Millisecond), cores, float64(peak)/(1<<20))
	if cores > 1 {
		t.Errorf("the server used %.2f cores during the flood, want at most one", cores)
	}
	if peak > 64<<20 {
		t.Errorf("the server's RSS grew by %.1f MiB during the flood, want at most 64", float64(peak)/(1<<20))
	}
	s.expectLines("data: during the flood")
	h2c.publishJSON(t, srv.addr, `{"data":"after"}`)
	http1.publishJSON(t, srv.addr, `{"data":"after"}`)
}

// stats reads the server's transport Stats.
func (s floodServer) stats(t *testing.T) Stats {
	t.Helper()
	var st Stats
	if err := json.Unmarshal([]byte(http1.do(t, "GET", "http://"+s.addr+"/stats", "").Body), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// floodClient starts an HTTP/2 connection on c for a flood: writes go
// through a buffer the attack flushes.
func floodClient(c net.Conn) (*http2.Framer, *bufio.Writer, *hpack.Encoder, *bytes.Buffer, error) {
	bw := bufio.NewWriterSize(c, 64<<10)
	if _, err := bw.WriteString(http2.ClientPreface); err != nil {
		return nil, nil, nil, nil, err
	}
	fr := http2.NewFramer(bw, c)
	if err := fr.WriteSettings(); err != nil {
		return nil, nil, nil, nil, err
	}
	var hbuf bytes.Buffer
	return fr, bw, hpack.NewEncoder(&hbuf), &hbuf, nil
}

// TestH2RapidReset floods the server with streams reset as soon as they
// are opened, on several connections at once.
func TestH2RapidReset(t *testing.T) {
	srv := startFloodServer(t)
	flood(t, srv, floodWorkers, 3*time.Second, func(c net.Conn) (int, error) {
		fr, bw, enc, hbuf, err := floodClient(c)
		if err != nil {
			return 0, err
		}
		frames := 0
		for id := uint32(1); id < 1<<31-1; id += 2 {
			hbuf.Reset()
			for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", srv.addr}, {":path", "/sse?topic=flood"}} {
				_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
			}
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
				return frames, err
			}
			if err := fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
				return frames, err
			}
			frames += 2
			if frames%200 == 0 {
				if err := bw.Flush(); err != nil {
					return frames, err
				}
			}
		}
		return frames, nil
	})
	if st := srv.stats(t); st.H2ResetCuts == 0 {
		t.Error("no connection was cut for resetting its streams")
	}
}

// TestH2ContinuationFlood floods the server with header blocks that never
// end: CONTINUATION frames full of header fields, and empty ones.
func TestH2ContinuationFlood(t *testing.T) {
	srv := startFloodServer(t)
	for _, empty := range []bool{false, true} {
		name := "full"
		if empty {
			name = "empty"
		}
		t.Run(name, func(t *testing.T) {
			flood(t, srv, floodWorkers, 3*time.Second, func(c net.Conn) (int, error) {
				fr, bw, enc, hbuf, err := floodClient(c)
				if err != nil {
					return 0, err
				}
				for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", srv.addr}, {":path", "/sse"}} {
					_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
				}
				if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hbuf.Bytes(), EndStream: true}); err != nil {
					return 0, err
				}
				frag := []byte{}
				if !empty {
					hbuf.Reset()
					for i := 0; hbuf.Len() < 8<<10; i++ {
						_ = enc.WriteField(hpack.HeaderField{Name: "x-flood", Value: strconv.Itoa(i) + strings.Repeat("f", 100)})
					}
					frag = hbuf.Bytes()
				}
				frames := 1
				for {
					if err := fr.WriteContinuation(1, false, frag); err != nil {
						return frames, err
					}
					frames++
					if frames%100 == 0 || !empty {
						if err := bw.Flush(); err != nil {
							return frames, err
						}
					}
				}
			})
			if st := srv.stats(t); empty && st.H2ContinuationCuts == 0 {
				t.Error("no connection was cut for its endless header block")
			}
		})
	}
}
