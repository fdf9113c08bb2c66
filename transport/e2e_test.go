package transport

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/sseparse"
	"github.com/tinysse/tinysse/internal/testserver"
)

// The end-to-end tests run the real server on a loopback socket and talk to
// it as clients do: net/http for plain requests, a raw socket and the
// Standard's parser (sseparse_test.go) for streams. Every read has a
// deadline, so a broken server fails a test instead of hanging it.

// wait bounds every single read or request of a test.
const wait = 5 * time.Second

// startServer runs a Server on 127.0.0.1 on a port of the kernel's choice,
// and shuts it down when the test ends.
func startServer(t testing.TB, ecfg engine.Config, tcfg Config) (addr string, eng *engine.Engine, srv *Server) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if ecfg.Logger == nil {
		ecfg.Logger = quiet
	}
	if tcfg.Logger == nil {
		tcfg.Logger = quiet
	}
	eng, err := engine.New(ecfg)
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	srv, err = New(tcfg, eng)
	if err != nil {
		t.Fatalf("transport.New: %v", err)
	}
	return testserver.Serve(t, srv), eng, srv
}

// The requests, their checks and the stream client are the harness's
// (internal/testserver); the names below are this package's for them.

var httpClient = testserver.Client

// answer is a complete HTTP response.
type answer = testserver.Answer

// publishReply is the answer of an accepted publish.
type publishReply = testserver.Published

// do sends one request; headers are name, value pairs.
func do(t testing.TB, method, url, body string, headers ...string) answer {
	t.Helper()
	return testserver.Do(t, method, url, body, headers...)
}

// post publishes body with content type ctype to http://addr+target.
func post(t testing.TB, addr, target, ctype, body string) answer {
	t.Helper()
	return testserver.Post(t, addr, target, ctype, body)
}

// publishJSON publishes a JSON body to /sse and requires a 202.
func publishJSON(t testing.TB, addr, body string) publishReply {
	t.Helper()
	return testserver.Publish(t, addr, "/sse", body)
}

func publishTo(t testing.TB, addr, target, body string) publishReply {
	t.Helper()
	return testserver.Publish(t, addr, target, body)
}

// checkPublished requires a to be a 202 with the publish answer's JSON.
func checkPublished(t testing.TB, target, body string, a answer) publishReply {
	t.Helper()
	return testserver.CheckPublished(t, target, body, a)
}

// wantError checks a refusal: status, JSON content type and a body that is
// exactly one object {"error": "<non-empty>"}.
func wantError(t testing.TB, a answer, status int) {
	t.Helper()
	testserver.WantError(t, a, status)
}

// rawExchange writes req as is on a new connection and reads one response.
func rawExchange(t testing.TB, addr, req string) answer {
	t.Helper()
	return testserver.RawExchange(t, addr, req)
}

func readAnswer(t testing.TB, br *bufio.Reader) answer {
	t.Helper()
	return testserver.ReadAnswer(t, br)
}

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	return testserver.Dial(t, addr)
}

// dialTinyBuffer connects with the smallest receive buffer the kernel
// allows, set before the handshake so the advertised window stays small:
// a client that does not read then stops the server's writes quickly.
func dialTinyBuffer(t testing.TB, addr string) net.Conn {
	t.Helper()
	return dialBuffer(t, addr, 1024)
}

// dialBuffer connects with a receive buffer of size bytes, fixed before
// the handshake (the kernel no longer grows it).
func dialBuffer(t testing.TB, addr string, size int) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: wait, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = setRcvBuf(fd, size)
		})
		return errors.Join(err, serr)
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// streamConn is what a stream is read from: a raw socket (HTTP/1.1), or
// an HTTP/2 response body (bodyConn).
type streamConn interface {
	io.ReadCloser
	SetReadDeadline(time.Time) error
}

// sseClient is one subscriber on a raw socket, or on an HTTP/2 stream:
// the harness's Stream, with conn the connection it reads.
type sseClient struct {
	*testserver.Stream
	conn streamConn
}

func newSSEClient(s *testserver.Stream) *sseClient { return &sseClient{s, s.Conn} }

// on returns s reporting to t: a client made by a test and used in its
// subtests must fail the subtest.
func (s *sseClient) on(t testing.TB) *sseClient { return newSSEClient(s.Stream.On(t)) }

// subscribe opens a stream at target (path and query); headers are name,
// value pairs. It returns once the response head is read.
func subscribe(t testing.TB, addr, target string, headers ...string) *sseClient {
	t.Helper()
	return newSSEClient(testserver.Subscribe(t, addr, target, headers...))
}

// subscribed returns sub once it is served: its stream open (": ok") and
// eng counting n subscribers on topic.
func subscribed(t testing.TB, eng *engine.Engine, sub *sseClient, topic string, n int) *sseClient {
	t.Helper()
	sub.expectOK()
	waitSubscribers(t, eng, topic, n)
	return sub
}

// startStream sends the subscribe request on c and reads the response head.
// A refusal's body is read whole into Body.
func startStream(t testing.TB, c net.Conn, target string, headers ...string) *sseClient {
	t.Helper()
	return newSSEClient(testserver.StartStream(t, c, target, headers...))
}

// next returns the next block of the stream, waiting at most d.
func (s *sseClient) next(d time.Duration) (sseparse.Block, error) { return s.Next(d) }

// mustNext returns the next block or fails the test.
func (s *sseClient) mustNext() sseparse.Block {
	s.T.Helper()
	return s.MustNext()
}

// nextSkipping returns the next block for which skip is false.
func (s *sseClient) nextSkipping(skip func(sseparse.Block) bool) sseparse.Block {
	s.T.Helper()
	return s.NextSkipping(skip)
}

// expectLines reads the next block and requires exactly these lines.
func (s *sseClient) expectLines(want ...string) sseparse.Block {
	s.T.Helper()
	return s.ExpectLines(want...)
}

// expectOK reads the stream's opening ": ok" block.
func (s *sseClient) expectOK() {
	s.T.Helper()
	s.ExpectOK()
}

// drain reads blocks until the server closes the stream, waiting at most d
// in all; it returns the blocks read and fails if the stream stays open.
func (s *sseClient) drain(d time.Duration) []sseparse.Block {
	s.T.Helper()
	return s.Drain(d)
}

// quiet requires that no block arrives for d.
func (s *sseClient) quiet(d time.Duration) {
	s.T.Helper()
	s.Quiet(d, nil)
}

func isClosed(err error) bool { return testserver.IsClosed(err) }

// isKeepAlive matches a keep-alive comment block with the default text.
func isKeepAlive(b sseparse.Block) bool { return testserver.IsKeepAlive(b) }

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testserver.Eventually(t, d, what, cond)
}

// waitSubscribers waits until topic has n registered subscribers. A client
// sees ": ok" just before its shard registers it.
func waitSubscribers(t testing.TB, eng *engine.Engine, topic string, n int) {
	t.Helper()
	waitFor(t, wait, fmt.Sprintf("%d subscribers on topic %q", n, topic), func() bool {
		return eng.Subscribers(topic) == n
	})
}
