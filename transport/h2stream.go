package transport

import (
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/valyala/fasthttp"
)

// h2Stream is one HTTP/2 stream. To the handler it is the RequestCtx's
// connection (its addresses; subscribe recognizes it by type). To the
// engine, once it serves an event stream, it is a connection without a raw
// socket, like TLS: the shard copies frames to the subscriber's backlog and
// kicks its goroutine (this handler's goroutine, in Serve), which writes
// them here blocking.
//
//   - Write is ResponseWriter.Write then Flush: the DATA frames are on the
//     connection's write queue (and x/net waits for the stream's flow
//     control window), so a slow stream blocks only its own goroutine.
//   - The write deadline is kept here and enforced by a timer: when it
//     passes during a write, the stream is reset (x/net's past write
//     deadline), the blocked write fails, and Write reports
//     os.ErrDeadlineExceeded, which the engine counts as a slow write.
//   - Read blocks until the read deadline passes (the shard's kick, or the
//     token's expiry), the stream is closed, or the client resets the
//     stream or leaves (the request's context): then io.EOF.
//   - Close makes Read and Write fail; the stream ends when the handler
//     returns, right after Serve.
//
// Who calls what: the handler goroutine calls everything but the
// deadline setters; those are called by it, by the shard (a kick, under
// shard.mu) and by Engine.Close (forceClose), hence mu. Nothing blocks
// while mu is held.
type h2Stream struct {
	w     http.ResponseWriter
	flush interface{ FlushError() error } // w, as x/net's writer is
	gone  <-chan struct{}
	conn  *h2Conn

	// Set by subscribe on the handler goroutine, read by the same once
	// handle has returned.
	sub    *engine.Subscriber
	es     engine.Stream
	ipSlot bool // holds a slot of its address (Config.MaxConnsPerIP)

	wake chan struct{} // capacity 1: a read deadline passed or the stream closed

	mu      sync.Mutex
	readDL  time.Time   // guarded by mu
	readT   *time.Timer // guarded by mu; nil until a future read deadline
	writeDL time.Time   // guarded by mu
	writeT  *time.Timer // guarded by mu; nil until a write under a deadline
	writing bool        // guarded by mu: a Write is in x/net's hands
	cut     bool        // guarded by mu: the stream was reset for its write deadline
	closed  bool        // guarded by mu
	done    bool        // guarded by mu: the handler is returning; no more resets
	resets  sync.WaitGroup
}

func newH2Stream(w http.ResponseWriter, r *http.Request, hc *h2Conn) *h2Stream {
	st := &h2Stream{w: w, gone: r.Context().Done(), conn: hc, wake: make(chan struct{}, 1)}
	st.flush, _ = w.(interface{ FlushError() error })
	return st
}

// open makes the stream an event stream for sub: the response head is
// set (sent with the first bytes Serve writes), and the handler serves it
// once handle returns. Called by subscribe instead of hijacking.
func (st *h2Stream) open(s *Server, ctx *fasthttp.RequestCtx, sub *engine.Subscriber, es engine.Stream) {
	h := st.w.Header()
	h.Set(fasthttp.HeaderContentType, "text/event-stream")
	h.Set(fasthttp.HeaderCacheControl, "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h["Date"] = nil
	ctx.Response.Header.VisitAll(func(k, v []byte) {
		if isStreamHeader(k) {
			h.Add(string(k), string(v))
		}
	})
	st.sub, st.es = sub, es
	st.es.Conn, st.es.Close = st, st.Close
	s.h2Streams.Add(1)
}

// serve runs the event stream on the handler's goroutine, for its life.
func (st *h2Stream) serve(s *Server) {
	st.w.WriteHeader(http.StatusOK)
	_ = s.eng.Serve(st.sub, st.es)
	st.release()
	s.h2Streams.Add(-1)
	s.streams.Add(-1)
	st.giveAddressSlot()
}

// takeAddressSlot counts the stream as a connection of its client's
// address (Config.MaxConnsPerIP): over HTTP/1.1 it would be one.
func (st *h2Stream) takeAddressSlot() bool {
	l := st.conn.s.ln.Load()
	if l == nil || l.perIP <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st.ipSlot = l.admitIP(st.conn.ip)
	return st.ipSlot
}

func (st *h2Stream) giveAddressSlot() {
	if !st.ipSlot {
		return
	}
	st.ipSlot = false
	l := st.conn.s.ln.Load()
	l.mu.Lock()
	l.leaveIP(st.conn.ip)
	l.mu.Unlock()
}

func (st *h2Stream) Read(p []byte) (int, error) {
	for {
		st.mu.Lock()
		closed, dl := st.closed, st.readDL
		st.mu.Unlock()
		if closed {
			return 0, net.ErrClosed
		}
		if !dl.IsZero() && !time.Now().Before(dl) {
			return 0, os.ErrDeadlineExceeded
		}
		select {
		case <-st.gone:
			return 0, io.EOF // the client reset the stream or left
		case <-st.wake:
		}
	}
}

// signal wakes Read to look at its deadline again.
func (st *h2Stream) signal() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

func (st *h2Stream) SetReadDeadline(t time.Time) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.readDL = t
	if st.readT != nil {
		st.readT.Stop()
	}
	if t.IsZero() {
		return nil
	}
	if d := time.Until(t); d > 0 {
		if st.readT == nil {
			st.readT = time.AfterFunc(d, st.signal)
		} else {
			st.readT.Reset(d)
		}
		return nil
	}
	st.signal() // a kick: at once
	return nil
}

func (st *h2Stream) SetWriteDeadline(t time.Time) error {
	st.mu.Lock()
	st.writeDL = t
	cut := st.writing && st.armLocked()
	st.mu.Unlock()
	if cut {
		// Not on this goroutine: Engine.Close's cut-off calls this under
		// shard.mu, and the reset waits for the connection's goroutine.
		go st.cutNow()
	}
	return nil
}

func (st *h2Stream) SetDeadline(t time.Time) error {
	_ = st.SetReadDeadline(t)
	return st.SetWriteDeadline(t)
}

// armLocked sets the write timer for writeDL; it reports true when writeDL
// has passed already, and then marks the stream cut: the caller must call
// cutNow once mu is released. mu must be held.
func (st *h2Stream) armLocked() bool {
	if st.writeT != nil {
		st.writeT.Stop()
	}
	if st.writeDL.IsZero() {
		return false
	}
	d := time.Until(st.writeDL)
	if d <= 0 {
		return st.markCutLocked()
	}
	if st.writeT == nil {
		st.writeT = time.AfterFunc(d, st.onWriteTimeout)
	} else {
		st.writeT.Reset(d)
	}
	return false
}

// markCutLocked marks the stream cut, once, unless the handler is
// returning. mu must be held.
func (st *h2Stream) markCutLocked() bool {
	if st.cut || st.done {
		return false
	}
	st.cut = true
	st.resets.Add(1)
	return true
}

// cutNow resets the stream, which fails the write blocked in x/net. Not
// under mu: it waits for the connection's serving goroutine to take it.
func (st *h2Stream) cutNow() {
	defer st.resets.Done()
	_ = http.NewResponseController(st.w).SetWriteDeadline(aLongTimeAgo)
}

// onWriteTimeout runs on the timer's goroutine when a write deadline
// passes.
func (st *h2Stream) onWriteTimeout() {
	st.mu.Lock()
	cut := st.writing && !st.writeDL.IsZero() && !time.Now().Before(st.writeDL) && st.markCutLocked()
	st.mu.Unlock()
	if cut {
		st.cutNow()
	}
}

func (st *h2Stream) Write(p []byte) (int, error) {
	st.mu.Lock()
	switch {
	case st.closed:
		st.mu.Unlock()
		return 0, net.ErrClosed
	case st.cut:
		st.mu.Unlock()
		return 0, os.ErrDeadlineExceeded
	}
	if st.armLocked() { // the deadline has passed already (forceClose)
		st.mu.Unlock()
		st.cutNow()
		return 0, os.ErrDeadlineExceeded
	}
	st.writing = true
	st.mu.Unlock()

	n, err := st.w.Write(p)
	if err == nil {
		err = st.flush.FlushError()
	}

	st.mu.Lock()
	st.writing = false
	if st.writeT != nil {
		st.writeT.Stop()
	}
	if st.cut {
		err = os.ErrDeadlineExceeded
	}
	st.mu.Unlock()
	return n, err
}

// Close ends the stream for the engine: Read and Write fail from now on.
func (st *h2Stream) Close() error {
	st.mu.Lock()
	st.closed = true
	st.mu.Unlock()
	st.signal()
	return nil
}

// release is called once Serve has returned, before the handler does:
// after it nothing touches the ResponseWriter (x/net recycles it).
func (st *h2Stream) release() {
	st.mu.Lock()
	st.closed, st.done = true, true
	if st.readT != nil {
		st.readT.Stop()
	}
	if st.writeT != nil {
		st.writeT.Stop()
	}
	st.mu.Unlock()
	st.resets.Wait()
}

func (st *h2Stream) LocalAddr() net.Addr  { return st.conn.local }
func (st *h2Stream) RemoteAddr() net.Addr { return st.conn.remote }
