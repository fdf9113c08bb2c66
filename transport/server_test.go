package transport

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
)

func TestCORS(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		preflight := func(t *testing.T, addr, origin string) answer {
			t.Helper()
			hdr := []string{"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type"}
			if origin != "" {
				hdr = append(hdr, "Origin", origin)
			}
			a := p.do(t, http.MethodOptions, "http://"+addr+"/sse", "", hdr...)
			if a.Status != http.StatusNoContent || a.Body != "" {
				t.Fatalf("preflight: %d %q, want 204 and no body", a.Status, a.Body)
			}
			return a
		}
		wantHeaders := func(t *testing.T, h http.Header, want map[string]string) {
			t.Helper()
			for k, v := range want {
				if got, ok := h[http.CanonicalHeaderKey(k)]; v == "" && ok {
					t.Errorf("%s: %q, want none", k, got)
				} else if v != "" && h.Get(k) != v {
					t.Errorf("%s: %q, want %q", k, h.Get(k), v)
				}
			}
		}

		t.Run("defaults", func(t *testing.T) {
			addr, _, _ := p.startServer(t, engine.Config{}, Config{})
			a := preflight(t, addr, "https://any.example")
			wantHeaders(t, a.Header, map[string]string{
				"Access-Control-Allow-Origin":      "*",
				"Access-Control-Allow-Methods":     "GET, HEAD, POST",
				"Access-Control-Allow-Headers":     "*",
				"Access-Control-Max-Age":           "",
				"Access-Control-Allow-Credentials": "",
			})
			a = p.post(t, addr, "/sse", "application/json", `{"data":"x"}`)
			wantHeaders(t, a.Header, map[string]string{"Access-Control-Allow-Origin": "*"})
		})

		t.Run("configured", func(t *testing.T) {
			addr, _, _ := p.startServer(t, engine.Config{}, Config{
				AllowOrigin:      "https://a.example, https://b.example",
				AllowMethods:     "GET, POST",
				AllowHeaders:     "Content-Type, Last-Event-ID",
				AllowCredentials: true,
				MaxAge:           10 * time.Minute,
			})
			a := preflight(t, addr, "https://b.example")
			wantHeaders(t, a.Header, map[string]string{
				"Access-Control-Allow-Origin":      "https://b.example",
				"Access-Control-Allow-Methods":     "GET, POST",
				"Access-Control-Allow-Headers":     "Content-Type, Last-Event-ID",
				"Access-Control-Max-Age":           "600",
				"Access-Control-Allow-Credentials": "true",
				"Vary":                             "Origin",
			})
			for _, origin := range []string{"https://evil.example", "https://a.example.evil", ""} {
				a := preflight(t, addr, origin)
				wantHeaders(t, a.Header, map[string]string{"Access-Control-Allow-Origin": ""})
			}

			// Plain answers carry it too: a publish, a refusal, a stream.
			a = p.do(t, http.MethodPost, "http://"+addr+"/sse", `{"data":"x"}`, "Content-Type", "application/json", "Origin", "https://a.example")
			wantHeaders(t, a.Header, map[string]string{"Access-Control-Allow-Origin": "https://a.example", "Access-Control-Allow-Credentials": "true"})
			a = p.do(t, http.MethodPost, "http://"+addr+"/sse", `{}`, "Content-Type", "application/json", "Origin", "https://a.example")
			wantError(t, a, http.StatusBadRequest)
			wantHeaders(t, a.Header, map[string]string{"Access-Control-Allow-Origin": "https://a.example"})
			s := p.subscribe(t, addr, "/sse", "Origin", "https://b.example")
			s.expectOK()
			wantHeaders(t, s.Header, map[string]string{
				"Access-Control-Allow-Origin":      "https://b.example",
				"Access-Control-Allow-Credentials": "true",
				"Vary":                             "Origin",
			})
			s = p.subscribe(t, addr, "/sse", "Origin", "https://evil.example")
			s.expectOK()
			wantHeaders(t, s.Header, map[string]string{"Access-Control-Allow-Origin": ""})
		})

		t.Run("credentials need named origins and headers", func(t *testing.T) {
			eng, err := engine.New(engine.Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer eng.Close(t.Context())
			for _, c := range []Config{
				{AllowCredentials: true},
				{AllowCredentials: true, AllowOrigin: "https://a.example"},
				{AllowCredentials: true, AllowHeaders: "Content-Type"},
			} {
				if _, err := New(c, eng); err == nil {
					t.Errorf("New(%+v) accepted credentials with a * origin or * headers", c)
				}
			}
		})
	})
}

func TestStatic(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		index, err := os.ReadFile("testdata/static/index.html")
		if err != nil {
			t.Fatal(err)
		}
		app, err := os.ReadFile("testdata/static/sub/app.js")
		if err != nil {
			t.Fatal(err)
		}

		t.Run("under a path", func(t *testing.T) {
			addr, _, _ := p.startServer(t, engine.Config{}, Config{StaticDir: "testdata/static", StaticPath: "/static/"})
			for _, c := range []struct{ path, body, ctype string }{
				{"/static/", string(index), "text/html"},
				{"/static/index.html", string(index), "text/html"},
				{"/static/sub/app.js", string(app), "javascript"},
			} {
				a := p.do(t, http.MethodGet, "http://"+addr+c.path, "")
				if a.Status != http.StatusOK || a.Body != c.body || !strings.Contains(a.Header.Get("Content-Type"), c.ctype) {
					t.Errorf("GET %s: %d %q %q, want 200 %q", c.path, a.Status, a.Header.Get("Content-Type"), a.Body, c.body)
				}
			}
			a := p.do(t, http.MethodHead, "http://"+addr+"/static/sub/app.js", "")
			if a.Status != http.StatusOK || a.Body != "" {
				t.Errorf("HEAD: %d %q", a.Status, a.Body)
			}
			for _, path := range []string{"/static/missing.txt", "/static/sub/missing.js", "/index.html", "/sub/app.js", "/elsewhere"} {
				wantError(t, p.do(t, http.MethodGet, "http://"+addr+path, ""), http.StatusNotFound)
			}
			// Nothing outside the directory, however the path is spelled.
			noEscape(t, p, addr, "/static/")
			s := p.subscribe(t, addr, "/sse")
			s.expectOK()
		})

		t.Run("the stream path wins", func(t *testing.T) {
			// testdata/static holds a file called sse; the stream's path still
			// subscribes and publishes.
			addr, eng, _ := p.startServer(t, engine.Config{}, Config{StaticDir: "testdata/static"})
			if a := p.do(t, http.MethodGet, "http://"+addr+"/", ""); a.Status != http.StatusOK || a.Body != string(index) {
				t.Errorf("GET /: %d %q", a.Status, a.Body)
			}
			if a := p.do(t, http.MethodGet, "http://"+addr+"/sub/app.js", ""); a.Status != http.StatusOK || a.Body != string(app) {
				t.Errorf("GET /sub/app.js: %d %q", a.Status, a.Body)
			}
			wantError(t, p.do(t, http.MethodGet, "http://"+addr+"/missing", ""), http.StatusNotFound)
			noEscape(t, p, addr, "/")
			s := p.subscribe(t, addr, "/sse")
			if ct := s.Header.Get("Content-Type"); ct != "text/event-stream" {
				t.Fatalf("GET /sse: content type %q", ct)
			}
			s.expectOK()
			waitSubscribers(t, eng, "", 1)
			p.publishJSON(t, addr, `{"data":"not a file"}`)
			s.expectLines("data: not a file")
		})
	})
}

// noEscape asks for ../../server_test.go (this package's file, two levels
// above testdata/static) under prefix, spelled in several ways.
func noEscape(t *testing.T, p proto, addr, prefix string) {
	t.Helper()
	if a := p.rawGet(t, addr, prefix+"sub/app.js"); a.Status != http.StatusOK {
		t.Fatalf("GET %ssub/app.js: %d", prefix, a.Status)
	}
	for _, path := range []string{
		"../../server_test.go",
		"sub/../../../server_test.go",
		"%2e%2e/%2e%2e/server_test.go",
		"..%2f..%2fserver_test.go",
		"%2e%2e%2f%2e%2e%2fserver_test.go",
		"..%5c..%5cserver_test.go",
		"sub/..%2f..%2f..%2fserver_test.go",
	} {
		a := p.rawGet(t, addr, prefix+path)
		if a.Status == http.StatusOK || strings.Contains(a.Body, "package transport") {
			t.Errorf("GET %s%s: %d %.60q", prefix, path, a.Status, a.Body)
		}
	}
}

func TestMethodsAndPaths(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		t.Run("separate paths", func(t *testing.T) {
			addr, eng, _ := p.startServer(t, engine.Config{}, Config{PubPath: "/pub", SubPath: "/sub"})
			for _, c := range []struct{ method, path, allow string }{
				{http.MethodGet, "/pub", "POST, OPTIONS"},
				{http.MethodPut, "/pub", "POST, OPTIONS"},
				{http.MethodPost, "/sub", "GET, OPTIONS"},
				{http.MethodDelete, "/sub", "GET, OPTIONS"},
			} {
				a := p.do(t, c.method, "http://"+addr+c.path, "")
				wantError(t, a, http.StatusMethodNotAllowed)
				if got := a.Header.Get("Allow"); got != c.allow {
					t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, got, c.allow)
				}
			}
			for _, path := range []string{"/sse", "/", "/pub/", "/sub/x"} {
				wantError(t, p.do(t, http.MethodGet, "http://"+addr+path, ""), http.StatusNotFound)
				wantError(t, p.post(t, addr, path, "application/json", `{"data":"x"}`), http.StatusNotFound)
			}
			s := subscribed(t, eng, p.subscribe(t, addr, "/sub"), "", 1)
			p.publishTo(t, addr, "/pub", `{"data":"separate"}`)
			s.expectLines("data: separate")
		})
		t.Run("one path", func(t *testing.T) {
			addr, _, _ := p.startServer(t, engine.Config{}, Config{})
			for _, m := range []string{http.MethodPut, http.MethodDelete, http.MethodPatch} {
				a := p.do(t, m, "http://"+addr+"/sse", "")
				wantError(t, a, http.StatusMethodNotAllowed)
				if got := a.Header.Get("Allow"); got != "GET, POST, OPTIONS" {
					t.Errorf("%s /sse: Allow %q", m, got)
				}
			}
			a := p.do(t, http.MethodHead, "http://"+addr+"/sse", "")
			if a.Status != http.StatusMethodNotAllowed {
				t.Errorf("HEAD /sse: %d", a.Status)
			}
			wantError(t, p.do(t, http.MethodGet, "http://"+addr+"/nope", ""), http.StatusNotFound)
		})
	})
}

// TestConnectionLimit: beyond MaxConns a new client gets a fast 503, and a
// slot freed by a leaving subscriber is usable again.
//
// HTTP/1.1 only: the limit is taken at accept, before the protocol is
// known (TestMaxConnsPerIPH2 has an h2c client's refusal, and
// TestTLSConnectionLimit a browser-like TLS client's).
func TestConnectionLimit(t *testing.T) {
	t.Parallel()
	addr, _, srv := startServer(t, engine.Config{}, Config{MaxConns: 2})
	a := subscribe(t, addr, "/sse")
	a.expectOK()
	b := subscribe(t, addr, "/sse")
	b.expectOK()

	c := dial(t, addr)
	_ = c.SetDeadline(time.Now().Add(wait))
	ans := readAnswer(t, bufio.NewReader(c)) // refused before it sends anything
	wantError(t, ans, http.StatusServiceUnavailable)
	if ans.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After on the 503")
	}

	// An HTTP client that sends its request gets the 503 as the answer to
	// it: refused connections wait for the request before answering, since
	// Go's client (like others) drops an answer that comes before its
	// request as unsolicited and fails the request.
	for range 20 {
		wantError(t, do(t, http.MethodPost, "http://"+addr+"/sse", `{"data":"x"}`, "Content-Type", "application/json"), http.StatusServiceUnavailable)
	}

	a.conn.Close()
	waitFor(t, wait, "a free slot", func() bool { return srv.OpenConns() < 2 })
	s := subscribe(t, addr, "/sse")
	s.expectOK()
}

// TestConnectionLimitFlood: 300 clients at once beyond the limit, more
// than refuse waits for politely: every one still gets its 503, and the
// refused connections are gone within the refusal's bound.
//
// HTTP/1.1 only, as TestConnectionLimit.
func TestConnectionLimitFlood(t *testing.T) {
	t.Parallel()
	addr, _, srv := startServer(t, engine.Config{}, Config{MaxConns: 1})
	a := subscribe(t, addr, "/sse")
	a.expectOK()
	const n = 300
	errs := make(chan error, n)
	var conns []net.Conn
	for range n {
		c := dial(t, addr)
		conns = append(conns, c)
	}
	for _, c := range conns {
		go func(c net.Conn) {
			_ = c.SetDeadline(time.Now().Add(wait))
			ans, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil && ans.StatusCode != http.StatusServiceUnavailable {
				err = fmt.Errorf("status %d", ans.StatusCode)
			}
			errs <- err
		}(c)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("a refused client: %v", err)
		}
	}
	if got := srv.Stats().ConnsRefused; got != n {
		t.Errorf("%d refusals counted, want %d", got, n)
	}
}
