package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/testcert"
	"github.com/valyala/fasthttp"
)

func TestHealth(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		addr, eng, srv := p.startServer(t, engine.Config{}, Config{HealthPath: "/healthz"})
		a := p.do(t, http.MethodGet, "http://"+addr+"/healthz", "")
		if a.Status != http.StatusOK || a.Body != `{"status":"ok"}` || a.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("serving: %d %q %q", a.Status, a.Header.Get("Content-Type"), a.Body)
		}

		// Once Shutdown has begun the listener is closed, so a request can only
		// come on a connection fasthttp is still serving: call the handler as
		// it would.
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI("/healthz")
		ctx.Request.Header.SetMethod(http.MethodGet)
		srv.handle(&ctx)
		if ctx.Response.StatusCode() != http.StatusOK {
			t.Fatalf("before shutdown: %d", ctx.Response.StatusCode())
		}
		sctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Fatal(err)
		}
		ctx.Response.Reset()
		srv.handle(&ctx)
		if ctx.Response.StatusCode() != http.StatusServiceUnavailable || string(ctx.Response.Body()) != `{"status":"shutting down"}` ||
			string(ctx.Response.Header.ContentType()) != "application/json" {
			t.Fatalf("shutting down: %d %q", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		if !eng.Closing() {
			t.Error("engine not closing after Shutdown")
		}
	})
}

func TestHealthOff(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		addr, _, _ := p.startServer(t, engine.Config{}, Config{})
		wantError(t, p.do(t, http.MethodGet, "http://"+addr+"/healthz", ""), http.StatusNotFound)
	})
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		var hits atomic.Int32
		handler := func(name string) fasthttp.RequestHandler {
			return func(ctx *fasthttp.RequestCtx) {
				hits.Add(1)
				ctx.SetBodyString(name + " " + string(ctx.Path()))
			}
		}
		addr, _, _ := p.startServer(t, engine.Config{}, Config{Routes: []Route{
			{Path: "/metrics", Handler: handler("metrics")},
			{Path: "/_tinysse/", Handler: handler("dash")},
		}})
		for _, c := range []struct{ path, want string }{
			{"/metrics", "metrics /metrics"},
			{"/_tinysse/", "dash /_tinysse/"},
			{"/_tinysse", "dash /_tinysse"},
			{"/_tinysse/app.js", "dash /_tinysse/app.js"},
		} {
			if a := p.do(t, http.MethodGet, "http://"+addr+c.path, ""); a.Status != 200 || a.Body != c.want {
				t.Errorf("%s: %d %q, want %q", c.path, a.Status, a.Body, c.want)
			}
		}
		for _, path := range []string{"/metrics/x", "/metricsx", "/_tinyssex"} {
			wantError(t, p.do(t, http.MethodGet, "http://"+addr+path, ""), http.StatusNotFound)
		}
		if hits.Load() != 4 {
			t.Errorf("handlers ran %d times, want 4", hits.Load())
		}
		// The API still answers.
		p.publishJSON(t, addr, `{"data":"x"}`)
	})
}

func TestRoutesRefused(t *testing.T) {
	t.Parallel()
	eng, err := engine.New(engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(context.Background())
	h := func(*fasthttp.RequestCtx) {}
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"route on sub path", Config{Routes: []Route{{Path: "/sse", Handler: h}}}, "sub path"},
		{"prefix hides pub path", Config{PubPath: "/api/pub", Routes: []Route{{Path: "/api/", Handler: h}}}, "pub path"},
		{"health on pub path", Config{PubPath: "/pub", HealthPath: "/pub"}, "pub path"},
		{"health without slash", Config{HealthPath: "healthz"}, "must start with /"},
		{"route without slash", Config{Routes: []Route{{Path: "metrics", Handler: h}}}, "starting with /"},
		{"route without handler", Config{Routes: []Route{{Path: "/metrics"}}}, "handler"},
		{"route on health", Config{HealthPath: "/h", Routes: []Route{{Path: "/h", Handler: h}}}, "health path"},
		{"two routes", Config{Routes: []Route{{Path: "/m", Handler: h}, {Path: "/m", Handler: h}}}, "route /m"},
	} {
		if _, err := New(c.cfg, eng); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming %q", c.name, err, c.want)
		}
	}
}

func TestRejectedCounted(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		hooks := engine.Hooks{
			Publish: func(_ *engine.Request, m *engine.Message) (bool, error) {
				switch m.Data {
				case "refuse":
					return false, nil
				case "fail":
					return false, context.DeadlineExceeded
				}
				return true, nil
			},
			Subscribe: func(s *engine.Subscriber) (bool, error) {
				return len(s.Topics) == 0 || s.Topics[0] != "secret", nil
			},
		}
		addr, _, srv := p.startServer(t, engine.Config{Hooks: hooks}, Config{MaxBodySize: 100})
		wantError(t, p.post(t, addr, "/sse", "application/json", `{"data":`), http.StatusBadRequest)
		wantError(t, p.post(t, addr, "/sse", "application/json", `{"data":"x","id":"a\nb"}`), http.StatusBadRequest)
		wantError(t, p.post(t, addr, "/sse", "application/json", `{"data":"refuse"}`), http.StatusForbidden)
		wantError(t, p.post(t, addr, "/sse", "application/json", `{"data":"fail"}`), http.StatusInternalServerError)
		wantError(t, p.post(t, addr, "/sse", "text/plain", `x`), http.StatusUnsupportedMediaType)
		wantError(t, p.post(t, addr, "/sse", "application/json", `{"data":"`+strings.Repeat("x", 200)+`"}`), http.StatusRequestEntityTooLarge)
		p.publishJSON(t, addr, `{"data":"fine"}`)
		refused := p.subscribe(t, addr, "/sse?topic=secret")
		if refused.Status != http.StatusForbidden {
			t.Fatalf("subscribe to secret: %d", refused.Status)
		}
		p.subscribe(t, addr, "/sse").expectOK()

		st := srv.Stats()
		want := [rejectReasons]uint64{RejectBadRequest: 2, RejectForbidden: 1, RejectHookError: 1, RejectMediaType: 1, RejectTooLarge: 1}
		if st.PublishRejected != want {
			t.Errorf("publish rejected %v, want %v", st.PublishRejected, want)
		}
		if st.SubscribeRejected != [rejectReasons]uint64{RejectForbidden: 1} {
			t.Errorf("subscribe rejected %v, want one forbidden", st.SubscribeRejected)
		}
		if st.OpenConns < 1 {
			t.Errorf("open conns %d with a stream open", st.OpenConns)
		}
	})
}

// TestConnsRefusedCounted: a connection refused at the limit is counted.
// HTTP/1.1 only: the refusal is made at accept, before the protocol is
// known; an HTTP/2 client's refusal is TestMaxConnsPerIPH2's.
func TestConnsRefusedCounted(t *testing.T) {
	t.Parallel()
	addr, _, srv := startServer(t, engine.Config{}, Config{MaxConns: 1})
	subscribe(t, addr, "/sse").expectOK()
	c := dial(t, addr)
	_ = c.SetDeadline(time.Now().Add(wait))
	wantError(t, readAnswer(t, bufio.NewReader(c)), http.StatusServiceUnavailable)
	if n := srv.Stats().ConnsRefused; n != 1 {
		t.Errorf("refused %d, want 1", n)
	}
}

// startTLSServer is startServer serving HTTPS with a fresh self-signed
// certificate; it returns the client's TLS configuration.
func startTLSServer(t *testing.T, ecfg engine.Config, tcfg Config) (string, *engine.Engine, *Server, *tls.Config) {
	cert := testcert.New(t)
	tcfg.TLS = cert.Server(t)
	addr, eng, srv := startServer(t, ecfg, tcfg)
	return addr, eng, srv, cert.Client()
}

func dialTLS(t testing.TB, addr string, cfg *tls.Config) net.Conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: wait}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestTLSStream: over TLS, streams and publishes work in both protocols
// ALPN offers: HTTP/1.1 (a connection per stream, written by each
// subscriber's goroutine through tls.Conn) and HTTP/2 (every stream on one
// connection), with socket buffers filling now and then.
func TestTLSStream(t *testing.T) {
	t.Parallel()
	for _, p := range []proto{http1tls, h2tls} {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			addr, eng, srv := p.startServer(t, engine.Config{Shards: 2, WriteTimeout: 2 * time.Second}, Config{})
			var streams []*sseClient
			for range 3 {
				s := p.subscribe(t, addr, "/sse?topic=tls")
				s.expectOK()
				streams = append(streams, s)
			}
			waitFor(t, wait, "3 TLS subscribers", func() bool { return eng.Subscribers("tls") == 3 })
			if st := srv.Stats(); p.h2 && (st.H2Conns != 1 || st.H2Streams != 3) || !p.h2 && st.H2Conns != 0 {
				t.Errorf("stats: %d HTTP/2 connections, %d HTTP/2 streams", st.H2Conns, st.H2Streams)
			}
			const n = 200
			big := strings.Repeat("z", 4<<10) // enough to fill socket buffers now and then
			for i := range n {
				data := "m" + string(rune('a'+i%26))
				if i%50 == 49 {
					data = big
				}
				p.publishTo(t, addr, "/sse?topic=tls", `{"id":"`+strconv.Itoa(i)+`","data":"`+data+`"}`)
			}
			for si, s := range streams {
				for i := range n {
					b := s.mustNext()
					if b.Event == nil || b.Event.LastEventID != strconv.Itoa(i) {
						t.Fatalf("stream %d, message %d: %q", si, i, b.Raw)
					}
				}
			}
			// Plain HTTP on the TLS port is not served.
			c := dial(t, addr)
			_, _ = c.Write([]byte("GET /sse HTTP/1.1\r\nHost: x\r\n\r\n"))
			_ = c.SetReadDeadline(time.Now().Add(wait))
			buf := make([]byte, 64)
			n2, _ := c.Read(buf)
			if strings.Contains(string(buf[:n2]), "text/event-stream") {
				t.Error("plain HTTP got a stream on the TLS port")
			}
		})
	}
}

func TestTLSConnectionLimit(t *testing.T) {
	t.Parallel()
	addr, _, _, ccfg := startTLSServer(t, engine.Config{}, Config{MaxConns: 1})
	startStream(t, dialTLS(t, addr, ccfg), "/sse").expectOK()
	// The refusal is a 503 spoken through TLS.
	c := dialTLS(t, addr, ccfg)
	_ = c.SetDeadline(time.Now().Add(wait))
	wantError(t, readAnswer(t, bufio.NewReader(c)), http.StatusServiceUnavailable)

	// A client that would speak HTTP/2 (ALPN h2 and http/1.1, as browsers
	// offer) is given HTTP/1.1 on a refused connection, and reads the 503.
	ccfg.NextProtos = []string{"h2", "http/1.1"}
	c = dialTLS(t, addr, ccfg)
	if got := c.(*tls.Conn).ConnectionState().NegotiatedProtocol; got != "http/1.1" {
		t.Errorf("a refused connection negotiated %q, want http/1.1", got)
	}
	_ = c.SetDeadline(time.Now().Add(wait))
	_, _ = c.Write([]byte("GET /sse HTTP/1.1\r\nHost: x\r\n\r\n"))
	wantError(t, readAnswer(t, bufio.NewReader(c)), http.StatusServiceUnavailable)
}
