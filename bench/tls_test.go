//go:build unix

package bench

import (
	"crypto/tls"
	"net"
	"testing"

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
				addr, e := startServer(b, transport.Config{TLS: scfg})
				clients := openStreams(b, e, n, func() (net.Conn, error) {
					if useTLS {
						return tls.Dial("tcp", addr, cert.Client())
					}
					return net.Dial("tcp", addr)
				})
				t := newTally(n)
				drains(b, clients, len(frame), t)
				publishEach(b, e, n, t)
			})
		})
	}
}
