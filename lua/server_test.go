package lua_test

import (
	"bufio"
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
	"github.com/tinysse/tinysse/lua"
)

// The tests run the real thing: a script compiled by lua.Load and started,
// its hooks in a real engine, a real transport on a loopback port, and
// clients that speak HTTP over sockets. Every wait is bounded by wait, so a
// broken server fails a test instead of hanging it.

// wait bounds every single read, request or condition of a test.
const wait = 5 * time.Second

// syncBuffer collects what print and the logger write, from any goroutine.
type syncBuffer = testserver.Buffer

// testServer is a running script behind a real server.
type testServer struct {
	rt     *lua.Runtime
	eng    *engine.Engine
	addr   string
	out    *syncBuffer // what the script printed
	log    *syncBuffer // the logger's output (text handler, DEBUG and up)
	client *http.Client
}

// startServer compiles src (named test.lua unless lc.Script says otherwise,
// read from lc.Script when src is ""), starts it and serves its hooks on
// 127.0.0.1 (inproc.Start, logs from DEBUG up captured). ec.Shards
// defaults to 2 so that one VM is shared by shards. Cleanup shuts the
// server down and closes the runtime.
func startServer(t testing.TB, src string, lc lua.Config, ec engine.Config) *testServer {
	t.Helper()
	if src != "" {
		lc.Source = []byte(src)
	}
	if lc.Script == "" {
		lc.Script = "test.lua"
	}
	lc.Stdout, lc.Logger = nil, nil // the harness's
	if ec.Shards == 0 {
		ec.Shards = 2
	}
	s := inproc.Start(t, inproc.Config{Script: &lc, Engine: ec, Capture: true, Ready: true})
	return &testServer{rt: s.Runtime, eng: s.Engine, addr: s.Addr, out: s.Out, log: s.Log, client: testserver.Client}
}

// publish POSTs body as JSON to target (a path with an optional query) and
// returns the status and the body of the answer.
func (ts *testServer) publish(t testing.TB, target, body string) (int, string) {
	t.Helper()
	resp, err := ts.client.Post("http://"+ts.addr+target, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading the answer: %v", target, err)
	}
	return resp.StatusCode, string(b)
}

// mustPublish publishes body to /sse and fails unless it is accepted.
func (ts *testServer) mustPublish(t testing.TB, body string) {
	t.Helper()
	if status, answer := ts.publish(t, "/sse", body); status != http.StatusAccepted {
		t.Fatalf("publish %s: %d %s, want 202", body, status, answer)
	}
}

// frame is one SSE frame: its lines, without the blank line that ends it.
type frame []string

// values returns the values of the lines "name: value" (name "" for
// comments), in order.
func (f frame) values(name string) []string {
	var out []string
	for _, line := range f {
		n, v, ok := strings.Cut(line, ":")
		if !ok || n != name {
			continue
		}
		out = append(out, strings.TrimPrefix(v, " "))
	}
	return out
}

// value returns the single value of field name, or "" if it is absent.
func (f frame) value(t testing.TB, name string) string {
	t.Helper()
	vs := f.values(name)
	switch len(vs) {
	case 0:
		return ""
	case 1:
		return vs[0]
	}
	t.Fatalf("frame %q has %d %q fields, want at most one", f, len(vs), name)
	return ""
}

// stream is a client's GET on the subscribe path, over a raw socket.
type stream struct {
	conn   net.Conn
	local  *net.TCPAddr
	status int
	body   string // the answer's body when status is not 200

	frames chan frame
	closed chan struct{} // closed when the server ends the stream
	quit   chan struct{} // closed by close
	once   sync.Once
}

// subscribe opens a stream on target (a path with an optional query),
// sending the extra header lines given ("Name: value"). For a 200 it
// reads the ": ok" comment before returning, so a publish made afterwards
// reaches the subscriber. Any other status leaves the stream closed with
// the answer in status and body.
func (ts *testServer) subscribe(t testing.TB, target string, header ...string) *stream {
	t.Helper()
	s := ts.open(t, target, header...)
	if s.status == http.StatusOK {
		if f := s.next(t); len(f) != 1 || f[0] != ": ok" {
			t.Fatalf("GET %s: first frame %q, want \": ok\"", target, f)
		}
	}
	return s
}

// mustSubscribe is subscribe that fails unless the answer is 200.
func (ts *testServer) mustSubscribe(t testing.TB, target string, header ...string) *stream {
	t.Helper()
	s := ts.subscribe(t, target, header...)
	if s.status != http.StatusOK {
		t.Fatalf("GET %s: %d %s, want 200", target, s.status, s.body)
	}
	return s
}

// open sends the request and reads the answer's head; it does not wait for
// ": ok".
func (ts *testServer) open(t testing.TB, target string, header ...string) *stream {
	t.Helper()
	s := ts.send(t, target, header...)
	s.head(t, target)
	return s
}

// send dials and sends the request without reading anything.
func (ts *testServer) send(t testing.TB, target string, header ...string) *stream {
	t.Helper()
	conn, err := net.DialTimeout("tcp", ts.addr, wait)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	s := &stream{conn: conn, local: conn.LocalAddr().(*net.TCPAddr), frames: make(chan frame, 256),
		closed: make(chan struct{}), quit: make(chan struct{})}
	t.Cleanup(s.close)
	req := "GET " + target + " HTTP/1.1\r\nHost: " + ts.addr + "\r\nAccept: text/event-stream\r\n"
	for _, h := range header {
		req += h + "\r\n"
	}
	_ = conn.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	return s
}

// head reads the answer's head (and its body unless it is a stream).
func (s *stream) head(t testing.TB, target string) {
	t.Helper()
	conn := s.conn
	_ = conn.SetDeadline(time.Now().Add(wait))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET %s: reading the answer: %v", target, err)
	}
	s.status = resp.StatusCode
	if s.status != http.StatusOK {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: reading the answer's body: %v", target, err)
		}
		s.body = string(b)
		s.close()
		close(s.closed)
		return
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("GET %s: content-type %q", target, ct)
	}
	// A backstop: no test keeps a stream longer than this.
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	go s.read(br)
}

// read turns the stream's lines into frames until the server closes it or
// the test does.
func (s *stream) read(br *bufio.Reader) {
	defer close(s.closed)
	var f frame
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		if line != "" {
			f = append(f, line)
			continue
		}
		select {
		case s.frames <- f:
		case <-s.quit:
			return
		}
		f = nil
	}
}

// close ends the client's side of the stream.
func (s *stream) close() {
	s.once.Do(func() {
		close(s.quit)
		_ = s.conn.Close()
	})
}

// next returns the next frame, failing if none comes within wait.
func (s *stream) next(t testing.TB) frame {
	t.Helper()
	select {
	case f := <-s.frames:
		return f
	case <-s.closed:
		select {
		case f := <-s.frames:
			return f
		default:
		}
		t.Fatalf("stream closed, want a frame")
	case <-time.After(wait):
		t.Fatalf("no frame within %s", wait)
	}
	return nil
}

// nextData returns the data of the next frame.
func (s *stream) nextData(t testing.TB) string {
	t.Helper()
	return s.next(t).value(t, "data")
}

// none fails if a frame comes within d.
func (s *stream) none(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case f := <-s.frames:
		t.Fatalf("got frame %q, want none", f)
	case <-time.After(d):
	}
}

// waitClosed waits for the server to end the stream and returns the frames
// it wrote meanwhile.
func (s *stream) waitClosed(t testing.TB) []frame {
	t.Helper()
	var fs []frame
	deadline := time.After(wait)
	for {
		select {
		case f := <-s.frames:
			fs = append(fs, f)
		case <-s.closed:
			for {
				select {
				case f := <-s.frames:
					fs = append(fs, f)
				default:
					return fs
				}
			}
		case <-deadline:
			t.Fatalf("stream still open after %s (frames %q)", wait, fs)
		}
	}
}

// eventually polls cond until it holds, failing after wait.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testserver.Eventually(t, wait, what, cond)
}

// countLines counts the printed lines equal to line.
func countLines(b *syncBuffer, line string) int { return b.Count(line) }

// readFile reads a fixture from testdata.
func readFile(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
