package transport

import (
	"context"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
)

// HTTP/2 (x/net's server) in front of the same handler as HTTP/1.1.
//
// One handler contract: each HTTP/2 request is copied into a
// fasthttp.RequestCtx whose connection is the stream (h2Stream), and
// Server.handle runs on it exactly as on a fasthttp worker: the same
// routing, CORS, publish, refusals, hooks, static files, metrics and
// dashboard. What differs is only at the edges: reading the request into
// the RequestCtx (h2Request), writing its response back (h2Respond), and a
// subscribe, which on HTTP/1.1 hijacks the connection and on HTTP/2 hands
// the stream to the engine on the handler's own goroutine (h2Stream.serve).
// The HTTP/1.1 path is not touched: fasthttp never sees an HTTP/2
// connection.

// DefaultH2MaxStreams is Config.H2MaxStreams's default.
const DefaultH2MaxStreams = 250

// h2MaxHeaderBytes is x/net's hard bound on a request's header list
// (HPACK-decoded, 32 bytes counted per field). Lists above
// maxHeadBytes and below it get the API's JSON 431 from h2Request; above
// it x/net answers 431 itself, with its own HTML body, without decoding
// further.
const h2MaxHeaderBytes = 16 << 10

// maxHeadBytes bounds a request's line and headers, as fasthttp's read
// buffer does for HTTP/1.1 (its ReadBufferSize).
const maxHeadBytes = 8 << 10

// newH2 builds the HTTP/2 server. Called once by New.
func (s *Server) newH2() error {
	s.h2 = &http2.Server{}
	s.h2base = &http.Server{
		// x/net reads its limits from here (http.HTTP2Config) and from
		// the fields below; Handler is given per connection.
		// No ReadTimeout here: x/net would start a timer for every
		// stream, event streams included; h2Request sets a read deadline
		// on the streams whose body it reads.
		IdleTimeout:    60 * time.Second, // a connection without streams, as fasthttp's
		MaxHeaderBytes: h2MaxHeaderBytes,
		ErrorLog:       log.New(slogWriter{s.cfg.Logger}, "", 0),
		ConnState: func(c net.Conn, st http.ConnState) {
			if g, ok := c.(interface{ h2conn() *h2Conn }); ok {
				g.h2conn().busy.Store(st == http.StateActive)
			}
		},
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: s.cfg.H2MaxStreams,
			MaxReadFrameSize:     16 << 10, // the smallest allowed: frames are read into a buffer of this size
			// Flow control windows bound what a client may send before
			// a handler reads it: a publish body, at most MaxBodySize.
			MaxReceiveBufferPerStream:     max(s.cfg.MaxBodySize+1, 64<<10),
			MaxReceiveBufferPerConnection: max(s.cfg.MaxBodySize+1, 1<<20),
			// A connection whose socket takes no byte for this long is cut
			// off, whatever its streams (their own writes are bounded by
			// the engine's write timeout, stream by stream).
			WriteByteTimeout: s.eng.Config().WriteTimeout,
			// A connection that has sent nothing for the write timeout is
			// pinged, and cut off if the answer does not come within as
			// long again: a client that stopped reading is found even
			// when nothing is being written to it (its streams were cut
			// at their own write timeout, and the socket's buffer took
			// their last bytes).
			SendPingTimeout: s.eng.Config().WriteTimeout,
			PingTimeout:     s.eng.Config().WriteTimeout,
		},
	}
	// ConfigureServer lets the http.Server's Shutdown send every HTTP/2
	// connection a GOAWAY.
	return http2.ConfigureServer(s.h2base, s.h2)
}

// h2Conn is one HTTP/2 connection: its handlers find it through their
// request's context.
type h2Conn struct {
	s      *Server
	conn   net.Conn     // the TLS or plain connection x/net serves
	ip     netip.Addr   // the client's address, for the per-address limit
	remote net.Addr     // the client's TCP address
	local  net.Addr     // ours
	tls    bool         // served over TLS (the request URI's scheme)
	active atomic.Int32 // handlers running (streams being answered or served)
	// busy: the connection has streams open, as x/net last said through
	// the connection state hook (set from its serving goroutine).
	busy atomic.Bool
}

type h2ConnKey struct{}

// serveH2 serves c (tracked is its counted socket) as HTTP/2 until it ends.
// sawPreface: classify has read the client preface already.
func (s *Server) serveH2(c net.Conn, tracked *trackedConn, isTLS, sawPreface bool) {
	hc := &h2Conn{s: s, conn: c, ip: tracked.ip, remote: c.RemoteAddr(), local: c.LocalAddr(), tls: isTLS}
	if !s.h2conns.add(hc) {
		_ = c.Close() // shutting down
		return
	}
	defer s.h2conns.remove(hc)
	ctx := context.WithValue(context.Background(), h2ConnKey{}, hc)
	guarded := guardFrames(c, hc, sawPreface, s.cfg.H2MaxStreams, func(reason string) {
		if reason == "reset" {
			s.h2ResetCuts.Add(1)
			s.cfg.Logger.Warn("HTTP/2 connection closed: it resets streams faster than allowed (rapid reset)",
				"remote", hc.remote, "burst", s.cfg.H2MaxStreams, "per_second", resetRate)
			return
		}
		s.h2ContinuationCuts.Add(1)
		s.cfg.Logger.Warn("HTTP/2 connection closed: a header block in too many CONTINUATION frames", "remote", hc.remote, "max", maxContinuation)
	})
	s.h2.ServeConn(guarded, &http2.ServeConnOpts{
		Context:          ctx,
		BaseConfig:       s.h2base,
		Handler:          h2Handler{s},
		SawClientPreface: sawPreface,
	})
	_ = c.Close() // x/net closed it; the slot is given back once, here or there
}

// h2Conns is the set of open HTTP/2 connections, for Shutdown and Stats.
type h2Conns struct {
	mu      sync.Mutex
	conns   map[*h2Conn]struct{} // guarded by mu
	closing bool                 // guarded by mu: no more are added
	n       atomic.Int64         // len(conns), for Stats without the lock
}

func (h *h2Conns) add(c *h2Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	if h.conns == nil {
		h.conns = make(map[*h2Conn]struct{})
	}
	h.conns[c] = struct{}{}
	h.n.Add(1)
	return true
}

func (h *h2Conns) remove(c *h2Conn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.n.Add(-1)
	h.mu.Unlock()
}

// shutdown stops adding connections and waits until every one has ended
// or ctx is done; then it closes those left. Called once the GOAWAY is on
// its way: a connection without a stream is closed after goAwayGrace (x/net
// would wait a second for the client to close it), one with streams once
// they end.
func (h *h2Conns) shutdown(ctx context.Context) {
	h.mu.Lock()
	h.closing = true
	h.mu.Unlock()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	grace := time.Now().Add(goAwayGrace)
	for h.n.Load() > 0 {
		select {
		case <-ctx.Done():
			h.closeIf(func(*h2Conn) bool { return true })
			return
		case now := <-t.C:
			if now.After(grace) {
				h.closeIf(func(c *h2Conn) bool { return c.active.Load() == 0 })
			}
		}
	}
}

// quiesce waits until no HTTP/2 connection has a stream open (every
// stream's last frame written: x/net's connection state), or ctx is done.
// Streams opened meanwhile are answered 503 (shutting down).
func (h *h2Conns) quiesce(ctx context.Context) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		busy := false
		h.mu.Lock()
		for c := range h.conns {
			busy = busy || c.busy.Load() || c.active.Load() > 0
		}
		h.mu.Unlock()
		if !busy {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// goAwayGrace is how long an idle HTTP/2 connection is given to read its
// GOAWAY before it is closed at shutdown.
const goAwayGrace = 50 * time.Millisecond

func (h *h2Conns) closeIf(cond func(*h2Conn) bool) {
	var closing []*h2Conn
	h.mu.Lock()
	for c := range h.conns {
		if cond(c) {
			closing = append(closing, c)
		}
	}
	h.mu.Unlock()
	for _, c := range closing { // not under mu: a TLS close writes, and the slot's Close takes limitListener.mu
		_ = c.conn.Close()
	}
}

// h2Handler is the http.Handler x/net calls for each stream, on a
// goroutine of its own.
type h2Handler struct{ s *Server }

func (h h2Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := h.s
	hc, _ := r.Context().Value(h2ConnKey{}).(*h2Conn)
	if hc == nil {
		http.Error(w, "", http.StatusInternalServerError) // not served by serveH2: cannot happen
		return
	}
	if r.Context().Err() != nil {
		return // reset before its handler even began
	}
	hc.active.Add(1)
	defer hc.active.Add(-1)
	st := newH2Stream(w, r, hc)
	ctx := ctxPool.Get().(*fasthttp.RequestCtx)
	ctx.Init2(st, fasthttpLogger{s.cfg.Logger}, true)
	if s.h2Request(ctx, w, r, hc) {
		s.handle(ctx)
	}
	if st.sub == nil {
		h2Respond(w, r, &ctx.Response)
	}
	// A stream has copied out what it needs: the request goes back
	// before the stream's long life.
	ctx.Request.Reset()
	ctx.Response.Reset()
	ctxPool.Put(ctx)
	if st.sub != nil {
		st.serve(s)
	}
}

// ctxPool holds the RequestCtx of HTTP/2 requests (fasthttp pools its own):
// Init2 and the resets of Request and Response are all a reuse needs, as
// nothing here hijacks or times out a RequestCtx.
var ctxPool = sync.Pool{New: func() any { return new(fasthttp.RequestCtx) }}

// h2Request fills ctx's request from r: method, URI, headers, body. It
// answers what fasthttp would refuse while reading an HTTP/1.1 request
// (headers too large, body too large, body too slow) as requestError does,
// and then reports false.
func (s *Server) h2Request(ctx *fasthttp.RequestCtx, w http.ResponseWriter, r *http.Request, hc *h2Conn) bool {
	req := &ctx.Request
	req.Header.SetMethod(r.Method)
	req.SetRequestURI(r.RequestURI)
	req.Header.SetHost(r.Host)
	head := len(r.Method) + len(r.RequestURI) + len(r.Host) + len("  HTTP/1.1\r\nHost: \r\n\r\n")
	for k, vs := range r.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
			head += len(k) + len(v) + len(": \r\n")
		}
	}
	if hc.tls {
		req.URI().SetScheme("https") // for absolute redirects, as fasthttp does on TLS
	}
	if head > maxHeadBytes {
		writeError(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, msgHeadTooLarge)
		return false
	}
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody || r.Method == http.MethodGet || r.Method == http.MethodHead {
		// Nothing to read. A GET's body (a stream's client talking) is
		// never read: its window fills and the client waits.
		return true
	}
	if r.ContentLength > int64(s.cfg.MaxBodySize) {
		s.requestError(ctx, fasthttp.ErrBodyTooLarge)
		return false
	}
	// ReadTimeout bounds a slow body, as fasthttp's does over HTTP/1.1.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.cfg.ReadTimeout))
	n, err := io.Copy(req.BodyWriter(), io.LimitReader(r.Body, int64(s.cfg.MaxBodySize)+1))
	switch {
	case n > int64(s.cfg.MaxBodySize):
		s.requestError(ctx, fasthttp.ErrBodyTooLarge)
		return false
	case err != nil:
		s.requestError(ctx, err) // 408 for the timeout, else 400
		return false
	}
	return true
}

// h2Respond writes resp, as the handler left it, to w.
func h2Respond(w http.ResponseWriter, r *http.Request, resp *fasthttp.Response) {
	h := w.Header()
	resp.Header.VisitAll(func(k, v []byte) {
		switch string(k) {
		case fasthttp.HeaderConnection, fasthttp.HeaderTransferEncoding, fasthttp.HeaderContentLength,
			"Keep-Alive", "Proxy-Connection", "Upgrade":
			return // connection-specific: not HTTP/2's
		}
		h.Add(string(k), string(v))
	})
	h.Set(fasthttp.HeaderServer, "tinysse")
	h["Date"] = nil // none, as over HTTP/1.1 (x/net adds one otherwise)
	status := resp.StatusCode()
	bodyless := r.Method == http.MethodHead || resp.SkipBody || status == http.StatusNoContent || status == http.StatusNotModified
	switch {
	case resp.IsBodyStream():
		if n := resp.Header.ContentLength(); n >= 0 {
			h.Set(fasthttp.HeaderContentLength, strconv.Itoa(n))
		}
	case status != http.StatusNoContent && status != http.StatusNotModified:
		n := len(resp.Body())
		if r.Method == http.MethodHead && n == 0 {
			n = resp.Header.ContentLength() // a HEAD answered without its body
		}
		if n >= 0 {
			h.Set(fasthttp.HeaderContentLength, strconv.Itoa(n))
		}
	}
	w.WriteHeader(status)
	if bodyless {
		_ = resp.CloseBodyStream()
		return
	}
	_ = resp.BodyWriteTo(w) // a client that left fails the write: nothing to do
}

// slogWriter lets x/net's log lines (client protocol errors) go to the
// transport's logger at DEBUG, like fasthttp's.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug(redact(string(p)), "component", "http2")
	return len(p), nil
}
