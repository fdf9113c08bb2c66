//go:build unix

package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tinysse/tinysse/transport"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Subs are the subscriber counts of BenchmarkH2Stream; h2PerConn how
// many streams share one HTTP/2 connection (500 streams over 10, as in
// the load tool's S2 with --http2 --h2-conns 10).
var (
	h2Subs    = []int{100, 1000}
	h2PerConn = 50
)

// BenchmarkH2Stream is tinysse's transport and engine over loopback, its
// streams over HTTP/1.1 (a socket each, written by the shard's writev)
// against HTTP/2 with prior knowledge (h2c: h2PerConn streams to a
// connection; each stream written by its handler's goroutine through
// x/net, which frames and writes them). An op is one message to every
// stream. The HTTP/2 clients are raw Framer readers, one goroutine per
// connection, about as cheap as the HTTP/1.1 ones (one per socket), so
// that the difference is the server's; their CPU is in the figure too.
func BenchmarkH2Stream(b *testing.B) {
	for _, proto := range []string{"http1", "h2c"} {
		b.Run(proto, func(b *testing.B) {
			bySize(b, "subs", h2Subs, func(b *testing.B, n int) {
				addr, e := startServer(b, transport.Config{})
				t := newTally(n)
				if proto == "http1" {
					clients := openStreams(b, e, n, func() (net.Conn, error) { return net.Dial("tcp", addr) })
					drains(b, clients, len(frame), t)
				} else {
					h2Streams(b, addr, n, h2PerConn, t)
					waitFor(b, "streams to be served", func() bool { return e.Subscribers("") == n })
				}
				publishEach(b, e, n, t)
			})
		})
	}
}

// h2Streams opens n streams on /sse over ceil(n/perConn) HTTP/2
// connections and counts each stream's frames on t (member: the stream's
// index). Each connection is read by one goroutine, which gives the
// windows back as it reads. The cleanup closes the connections.
func h2Streams(b *testing.B, addr string, n, perConn int, t *tally) {
	b.Helper()
	var running sync.WaitGroup
	var conns []net.Conn
	b.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
		waitGroup(b, &running, "HTTP/2 clients to end")
	})
	for first := 0; first < n; first += perConn {
		k := min(perConn, n-first)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		bw := bufio.NewWriter(c)
		var wmu sync.Mutex // the reader gives windows back while this goroutine opens streams
		fr := http2.NewFramer(bw, bufio.NewReader(c))
		_, _ = bw.WriteString(http2.ClientPreface)
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
		_ = fr.WriteWindowUpdate(0, 1<<30)
		var hbuf bytes.Buffer
		enc := hpack.NewEncoder(&hbuf)
		for i := range k {
			hbuf.Reset()
			for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "bench"}, {":path", "/sse"}} {
				_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
			}
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
				b.Fatal(err)
			}
		}
		if err := bw.Flush(); err != nil {
			b.Fatal(err)
		}
		// Read up to every stream's ": ok" before the clock starts.
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		_ = c.SetReadDeadline(time.Now().Add(stuckAfter))
		oks := 0
		for oks < k {
			f, err := fr.ReadFrame()
			if err != nil {
				b.Fatalf("reading stream heads: %v", err)
			}
			switch f := f.(type) {
			case *http2.DataFrame:
				if bytes.HasSuffix(f.Data(), []byte(": ok\n\n")) {
					oks++
				}
			case *http2.SettingsFrame:
				if !f.IsAck() {
					_ = fr.WriteSettingsAck()
					_ = bw.Flush()
				}
			}
		}
		_ = c.SetReadDeadline(time.Time{})
		running.Go(func() {
			carry := make([]int, k)
			credit := 0
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					return
				}
				d, ok := f.(*http2.DataFrame)
				if !ok {
					continue
				}
				s := int(d.StreamID-1) / 2
				carry[s] += len(d.Data())
				if m := carry[s] / len(frame); m > 0 {
					carry[s] -= m * len(frame)
					t.add(first+s, int64(m))
				}
				if credit += len(d.Data()); credit > 1<<28 { // windows of 1 GiB: give back a quarter now and then
					wmu.Lock()
					_ = fr.WriteWindowUpdate(0, uint32(credit))
					_ = bw.Flush()
					wmu.Unlock()
					credit = 0
				}
			}
		})
	}
	if len(conns) != (n+perConn-1)/perConn {
		b.Fatal(fmt.Sprintf("%d connections", len(conns)))
	}
}
