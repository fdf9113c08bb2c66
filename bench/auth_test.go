//go:build unix

package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/tinysse/tinysse/auth"
	"github.com/tinysse/tinysse/internal/testjwt"
	"github.com/tinysse/tinysse/transport"
)

// authKinds are the access controls BenchmarkAuth compares: none (the
// default, no check at all), an HS256 secret and an ES256 public key.
var authKinds = []string{"none", "HS256", "ES256"}

// authServer runs tinysse's transport on 127.0.0.1 with the access
// control of kind, and returns its address and a token for every topic
// ("" for none).
func authServer(b *testing.B, kind string) (addr, token string) {
	b.Helper()
	tcfg := transport.Config{Logger: discard}
	claims := testjwt.Claims(time.Hour, testjwt.Topics([]string{"*"}, []string{"*"}))
	var key auth.Key
	var err error
	switch kind {
	case "HS256":
		key, err = auth.SecretKey([]byte("a benchmark secret"))
		token = testjwt.HS256(b, "a benchmark secret", claims)
	case "ES256":
		p := testjwt.Pairs()["ES"]
		key, err = auth.ParseKey(p.PublicPEM)
		token = testjwt.Sign(b, p.Method(), p.Private, claims)
	}
	if err != nil {
		b.Fatal(err)
	}
	if kind != "none" {
		if tcfg.Auth, err = auth.New(auth.Config{Keys: []auth.Key{key}, Logger: discard}); err != nil {
			b.Fatal(err)
		}
	}
	// Not newEngine: the transport's Shutdown closes the engine.
	addr, _ = startServer(b, tcfg)
	return addr, token
}

// authHeader is the request header line carrying token, if any.
func authHeader(token string) string {
	if token == "" {
		return ""
	}
	return "Authorization: Bearer " + token + "\r\n"
}

// reportCPU reports the CPU time clock adds per op from now until the
// returned func runs (call it with defer right before the loop). On a
// shared, loaded machine CPU time is steadier than wall time.
func reportCPU(b *testing.B, clock func() time.Duration) func() {
	c0 := clock()
	return func() {
		if c0 > 0 && b.N > 0 {
			b.ReportMetric(float64((clock()-c0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}

// BenchmarkAuth: what the built-in JWT check adds to one request, over
// HTTP on 127.0.0.1 with the client in the same process. publish: one
// POST of a 100-byte message to one topic on a kept-alive connection (no
// subscribers); subscribe: one connection, GET, the stream's head and
// ": ok", close. "none" is the server without keys: the check is skipped
// entirely (one nil test per request). cpu-ns/op is the whole process's
// CPU time per request, client included.
func BenchmarkAuth(b *testing.B) {
	for _, kind := range authKinds {
		b.Run("publish/"+kind, func(b *testing.B) {
			addr, token := authServer(b, kind)
			body := `{"data":"` + payload + `"}`
			req := []byte("POST /sse?topic=bench HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n" +
				authHeader(token) + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			b.ReportAllocs()
			defer reportCPU(b, processCPU)()
			for b.Loop() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					b.Fatalf("publish: %d", resp.StatusCode)
				}
			}
		})
	}
	for _, kind := range authKinds {
		b.Run("subscribe/"+kind, func(b *testing.B) {
			addr, token := authServer(b, kind)
			req := []byte("GET /sse?topic=bench HTTP/1.1\r\nHost: bench\r\n" + authHeader(token) + "\r\n")
			ok := []byte(": ok\n\n")
			buf := make([]byte, 4096)
			b.ReportAllocs()
			defer reportCPU(b, processCPU)()
			for b.Loop() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				var got []byte
				for !bytes.Contains(got, ok) {
					n, err := c.Read(buf)
					if err != nil {
						b.Fatalf("subscribe: %v after %q", err, got)
					}
					got = append(got, buf[:n]...)
				}
				if !bytes.HasPrefix(got, []byte("HTTP/1.1 200")) {
					b.Fatalf("subscribe: %q", got)
				}
				c.Close()
			}
		})
	}
}

// BenchmarkAuthTopics: the token is verified once per request and each
// topic then costs a pattern match ("once"), against verifying it again
// for every topic ("per-topic", the naive way), for a publish to 1, 8
// and 64 topics (64 is the most a request may name).
func BenchmarkAuthTopics(b *testing.B) {
	p := testjwt.Pairs()["ES"]
	key, err := auth.ParseKey(p.PublicPEM)
	if err != nil {
		b.Fatal(err)
	}
	a, err := auth.New(auth.Config{Keys: []auth.Key{key}, Logger: discard})
	if err != nil {
		b.Fatal(err)
	}
	token := testjwt.Sign(b, p.Method(), p.Private, testjwt.Claims(time.Hour, testjwt.Topics([]string{"news/*", "sport/**"}, nil)))
	bySize(b, "topics", []int{1, 8, 64}, func(b *testing.B, n int) {
		topics := make([]string, n)
		for i := range topics {
			topics[i] = fmt.Sprintf("sport/t%d/x", i)
		}
		b.Run("once", func(b *testing.B) {
			b.ReportAllocs()
			defer lockThread()()
			defer reportCPU(b, threadCPU)()
			for b.Loop() {
				g, aerr := a.Verify(token, auth.Publish)
				if aerr != nil {
					b.Fatal(aerr)
				}
				if _, ok := g.Allows(auth.Publish, topics); !ok {
					b.Fatal("refused")
				}
			}
		})
		b.Run("per-topic", func(b *testing.B) {
			b.ReportAllocs()
			defer lockThread()()
			defer reportCPU(b, threadCPU)()
			for b.Loop() {
				for _, t := range topics {
					g, aerr := a.Verify(token, auth.Publish)
					if aerr != nil {
						b.Fatal(aerr)
					}
					if _, ok := g.Allows(auth.Publish, []string{t}); !ok {
						b.Fatal("refused")
					}
				}
			}
		})
	})
}
