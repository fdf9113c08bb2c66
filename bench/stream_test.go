//go:build unix

package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/transport"
	"github.com/valyala/fasthttp"
)

// A streamServer is one way of serving event streams over HTTP.
type streamServer struct {
	name string
	// headEnd is how the stream's head (HTTP response head, ": ok") ends
	// on the wire.
	headEnd []byte
	// wire is the bytes one frame takes on the wire.
	wire int
	// start serves streams on ln. send hands one message to every stream
	// (not waiting for delivery); streams reports how many streams are
	// being served; stop ends them all and the server.
	start func(b *testing.B, ln net.Listener) (send func(), streams func() int, stop func())
}

var streamServers = []streamServer{
	{"writer", []byte(": ok\n\n\r\n"), len(fmt.Sprintf("%x\r\n\r\n", len(frame))) + len(frame), startWriter},
	{"hijack", []byte(": ok\n\n"), len(frame), startHijack},
	{"tinysse", []byte(": ok\n\n"), len(frame), startTinysse},
}

// BenchmarkStream weighs the two ways fasthttp can hold an event stream,
// each fed by a goroutine per stream waiting on its channel:
//
//   - writer: ctx.SetBodyStreamWriter, whose writer goroutine writes into
//     an in-memory pipe that fasthttp's worker copies to the socket as
//     chunked encoding;
//   - hijack: ctx.Hijack, writing the frames straight to the socket;
//
// and tinysse's transport (hijacking, then the engine's shards) for scale.
// An op is one message to subs streams over loopback; B/stream is what
// idleStreams idle streams add to the heap and stacks, divided (the
// clients' side of the sockets, a few hundred bytes, included).
func BenchmarkStream(b *testing.B) {
	for _, srv := range streamServers {
		b.Run(srv.name, func(b *testing.B) {
			bySize(b, "subs", streamSubs, func(b *testing.B, n int) {
				perStream := idleCost(b, srv)
				t := newTally(n)
				ln := listen(b)
				send, streams, stop := srv.start(b, ln)
				b.Cleanup(stop)
				clients := dialStreams(b, ln, srv, n)
				waitFor(b, "streams to be served", func() bool { return streams() == n })
				drains(b, clients, srv.wire, t)
				deliverEach(b, n, t, send)
				b.ReportMetric(perStream, "B/stream")
			})
		})
	}
}

// idleCost opens idleStreams streams on a server of its own, and returns
// how many bytes of heap and stack each adds; it closes them all.
func idleCost(b *testing.B, srv streamServer) float64 {
	ln := listen(b)
	_, streams, stop := srv.start(b, ln)
	defer stop()
	before := inUse()
	clients := dialStreams(b, ln, srv, idleStreams)
	defer func() {
		for _, c := range clients {
			_ = c.Close()
		}
	}()
	waitFor(b, "idle streams to be served", func() bool { return streams() == idleStreams })
	return float64(inUse()-before) / idleStreams
}

// inUse is the heap and stack memory in use after a full collection.
func inUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse + ms.StackInuse)
}

func listen(b *testing.B) net.Listener {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ln.Close() })
	return ln
}

// dialStreams opens n event streams on ln, each read past its head; they
// are closed at cleanup if not before.
func dialStreams(b *testing.B, ln net.Listener, srv streamServer, n int) []net.Conn {
	b.Helper()
	req := []byte("GET /sse HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
	return dialN(b, n, func() (net.Conn, error) { return net.Dial("tcp", ln.Addr().String()) }, req, srv.headEnd)
}

// hub stands in for the engine in the writer and hijack servers: a
// channel per stream, each drained by that stream's goroutine.
type hub struct {
	mu      sync.Mutex
	subs    map[chan []byte]struct{} // guarded by mu
	closed  bool                     // guarded by mu
	running sync.WaitGroup           // stream loops
}

func newHub() *hub { return &hub{subs: make(map[chan []byte]struct{})} }

// join registers a stream; its loop must call leave when it ends.
func (h *hub) join() (chan []byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, false
	}
	ch := make(chan []byte, 16)
	h.subs[ch] = struct{}{}
	h.running.Add(1)
	return ch, true
}

func (h *hub) leave(ch chan []byte) {
	h.mu.Lock()
	if _, ok := h.subs[ch]; ok {
		delete(h.subs, ch)
		close(ch)
	}
	h.mu.Unlock()
	h.running.Done()
}

func (h *hub) streams() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

func (h *hub) send() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		ch <- frame
	}
}

// close ends every stream's loop and waits for them.
func (h *hub) close(b *testing.B) {
	h.mu.Lock()
	h.closed = true
	for ch := range h.subs {
		delete(h.subs, ch)
		close(ch)
	}
	h.mu.Unlock()
	waitGroup(b, &h.running, "stream loops to end")
}

// serveFast serves streams on ln with fasthttp and returns its stop:
// each request joins h (a 503 once h is closed) and stream serves it with
// the channel of frames it got.
func serveFast(b *testing.B, ln net.Listener, h *hub, stream func(ctx *fasthttp.RequestCtx, ch chan []byte)) (send func(), streams func() int, stop func()) {
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			ch, ok := h.join()
			if !ok {
				ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
				return
			}
			stream(ctx, ch)
		},
		Logger:            quiet{},
		KeepHijackedConns: true, // the stream loops close them
		CloseOnShutdown:   true,
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	return h.send, h.streams, func() {
		h.close(b)
		ctx, cancel := context.WithTimeout(context.Background(), stuckAfter)
		defer cancel()
		if err := srv.ShutdownWithContext(ctx); err != nil {
			b.Errorf("fasthttp shutdown: %v", err)
		}
		<-served
	}
}

type quiet struct{}

func (quiet) Printf(string, ...any) {}

// startWriter streams with SetBodyStreamWriter: our loop writes into the
// pipe's bufio.Writer, fasthttp's worker copies it out as chunks.
func startWriter(b *testing.B, ln net.Listener) (func(), func() int, func()) {
	h := newHub()
	return serveFast(b, ln, h, func(ctx *fasthttp.RequestCtx, ch chan []byte) {
		ctx.SetContentType("text/event-stream")
		ctx.Response.Header.Set("Cache-Control", "no-cache")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			defer h.leave(ch)
			_, _ = w.WriteString(": ok\n\n")
			if w.Flush() != nil {
				return
			}
			for f := range ch {
				_, _ = w.Write(f)
				if w.Flush() != nil {
					return
				}
			}
		})
	})
}

var hijackHead = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" +
	"Cache-Control: no-cache\r\nConnection: close\r\n\r\n: ok\n\n")

// startHijack streams by hijacking: our loop writes to the socket. As
// tinysse's transport does, the loop runs on a goroutine of its own and
// the hijack handler returns, so that fasthttp frees the request context
// and its buffers.
func startHijack(b *testing.B, ln net.Listener) (func(), func() int, func()) {
	h := newHub()
	return serveFast(b, ln, h, func(ctx *fasthttp.RequestCtx, ch chan []byte) {
		conn := ctx.Conn()
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(func(net.Conn) {
			go func() {
				defer conn.Close()
				defer h.leave(ch)
				if _, err := conn.Write(hijackHead); err != nil {
					return
				}
				for f := range ch {
					if _, err := conn.Write(f); err != nil {
						return
					}
				}
			}()
		})
	})
}

// startTinysse is tinysse's own transport and engine.
func startTinysse(b *testing.B, ln net.Listener) (func(), func() int, func()) {
	e, err := engine.New(engine.Config{KeepAlive: -1, Logger: discard})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := transport.New(transport.Config{Logger: discard}, e)
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	send := func() {
		if _, err := e.Publish(newMessage()); err != nil {
			b.Fatal(err)
		}
	}
	return send, func() int { return e.Subscribers("") }, func() {
		ctx, cancel := context.WithTimeout(context.Background(), stuckAfter)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			b.Errorf("tinysse shutdown: %v", err)
		}
		<-served
	}
}
