//go:build unix

package bench

import (
	"context"
	"crypto/tls"
	"net"
	"testing"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/testcert"
	"github.com/tinysse/tinysse/transport"
)

// tlsSubs are the subscriber counts of BenchmarkTLSStream.
var tlsSubs = []int{100, 1000}

// BenchmarkTLSStream is tinysse's transport and engine over loopback, in
// plain HTTP (the shard's non-blocking writev on the raw socket) and over
// TLS (--tls-cert: the engine cannot writev the socket, so each delivery
// goes through the subscriber's goroutine and tls.Conn.Write). An op is one
// message to every stream. CPU includes the clients in the same process
// (and, over TLS, their decryption).
func BenchmarkTLSStream(b *testing.B) {
	for _, useTLS := range []bool{false, true} {
		name := "plain"
		if useTLS {
			name = "tls"
		}
		b.Run(name, func(b *testing.B) {
			bySize(b, "subs", tlsSubs, func(b *testing.B, n int) {
				cert := testcert.New(b)
				var scfg *tls.Config
				if useTLS {
					scfg = cert.Server(b)
				}
				e, err := engine.New(engine.Config{KeepAlive: -1, Logger: discard})
				if err != nil {
					b.Fatal(err)
				}
				srv, err := transport.New(transport.Config{Logger: discard, TLS: scfg}, e)
				if err != nil {
					b.Fatal(err)
				}
				ln := listen(b)
				served := make(chan struct{})
				go func() { defer close(served); _ = srv.Serve(ln) }()
				b.Cleanup(func() {
					ctx, cancel := context.WithTimeout(context.Background(), stuckAfter)
					defer cancel()
					_ = srv.Shutdown(ctx)
					<-served
				})
				clients := make([]net.Conn, 0, n)
				req := []byte("GET /sse HTTP/1.1\r\nHost: bench\r\n\r\n")
				for range n {
					var c net.Conn
					if useTLS {
						c, err = tls.Dial("tcp", ln.Addr().String(), cert.Client())
					} else {
						c, err = net.Dial("tcp", ln.Addr().String())
					}
					if err != nil {
						b.Fatal(err)
					}
					clients = append(clients, c)
					if _, err := c.Write(req); err != nil {
						b.Fatal(err)
					}
					readHead(b, c, []byte(": ok\n\n"))
				}
				waitFor(b, "streams to be served", func() bool { return e.Subscribers("") == n })
				t := newTally(n)
				drains(b, clients, len(frame), t)
				stuck, stopWatch := t.watch(stuckAfter)
				defer stopWatch()
				b.ReportAllocs()
				b.SetBytes(int64(n * len(frame)))
				cpu := processCPU()
				for b.Loop() {
					t.expect(1)
					if _, err := e.Publish(newMessage()); err != nil {
						b.Fatal(err)
					}
					if !t.wait(stuck) {
						b.Fatalf("no delivery for %v", stuckAfter)
					}
				}
				reportDeliveries(b, n, processCPU()-cpu)
			})
		})
	}
}
