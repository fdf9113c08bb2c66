package transport

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// One accept loop serves both protocols. Without HTTP/2 (no TLS and
// NoH2C) fasthttp accepts from the limitListener itself, as before. With
// it, dispatch accepts from the limitListener (so that every connection is
// counted and the fast 503 and 429 still come first) and hands each
// connection to a goroutine of its own, classify, which decides off the
// accept goroutine, under ReadTimeout, what the client speaks:
//
//   - TLS: the handshake, then ALPN. "h2" is served by x/net's HTTP/2
//     server (serveH2); anything else goes to fasthttp as a *tls.Conn
//     (in a tlsConn, which gives the address's slot back before the
//     close_notify), as tls.NewListener handed it over before.
//   - Plain: the first bytes are read and compared with the HTTP/2 client
//     preface. A full preface is served as h2c (prior knowledge); anything
//     else goes to fasthttp with the bytes read put back in front
//     (peekedConn).
//
// fasthttp accepts the HTTP/1 connections from connQueue, so its own
// worker pool, Concurrency and Shutdown work as before.

// h2Preface is what an HTTP/2 client sends first (RFC 9113, 3.4).
const h2Preface = http2.ClientPreface

// connQueue is the net.Listener fasthttp accepts HTTP/1 connections from.
// push is called by classify goroutines; Accept by fasthttp's accept loop.
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn // unbuffered: a connection is handed over or closed
	done chan struct{} // closed by Close or fail

	once sync.Once
	err  error // why Accept fails; written once before done is closed
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, q.err
	}
}

// Close makes Accept fail with net.ErrClosed (fasthttp's Shutdown calls it).
func (q *connQueue) Close() error {
	q.fail(net.ErrClosed)
	return nil
}

// fail makes Accept return err from now on: the listener's own error, so
// that Serve returns it as it did without the queue.
func (q *connQueue) fail(err error) {
	q.once.Do(func() {
		q.err = err
		close(q.done)
	})
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// push hands c to fasthttp, or closes it if fasthttp accepts no more.
func (q *connQueue) push(c net.Conn) {
	select {
	case q.ch <- c:
	case <-q.done:
		_ = c.Close()
	}
}

// dispatch accepts from l until it fails and starts classify for each
// connection. Only the accept goroutine runs it.
func (s *Server) dispatch(l *limitListener, q *connQueue) {
	for {
		c, err := l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(time.Second) // as fasthttp does on a temporary accept error
				continue
			}
			q.fail(err)
			return
		}
		go s.classify(c.(*trackedConn), q)
	}
}

// classify finds out what c speaks and serves it. It runs on the
// connection's own goroutine, which becomes the HTTP/2 connection's
// serving goroutine; for HTTP/1 it ends once fasthttp has the connection.
func (s *Server) classify(c *trackedConn, q *connQueue) {
	if s.tls != nil {
		tc := tls.Server(c, s.tls)
		_ = tc.SetDeadline(time.Now().Add(s.cfg.ReadTimeout))
		if err := tc.Handshake(); err != nil {
			s.cfg.Logger.Debug("TLS handshake failed", "remote", c.RemoteAddr(), "err", err)
			_ = tc.Close()
			return
		}
		_ = tc.SetDeadline(time.Time{})
		if tc.ConnectionState().NegotiatedProtocol == http2.NextProtoTLS {
			s.serveH2(tc, c, true, false)
			return
		}
		q.push(&tlsConn{Conn: tc, tracked: c})
		return
	}
	// Plain: read until the bytes can no longer be the preface, or are all
	// of it. A request line differs from it within four bytes ("PRI "
	// against "POST", "PUT ", "PROP..."), and clients send a whole request
	// line or preface at once, so this is almost always one read.
	var buf [len(h2Preface)]byte
	n := 0
	_ = c.SetReadDeadline(time.Now().Add(s.cfg.ReadTimeout))
	for n < len(buf) && string(buf[:n]) == h2Preface[:n] {
		m, err := c.Read(buf[n:])
		n += m
		if err != nil {
			if n == 0 {
				_ = c.Close() // gone, or silent for ReadTimeout, before a byte
				return
			}
			break // fasthttp answers what there is
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	if n == len(buf) && string(buf[:]) == h2Preface {
		s.serveH2(c, c, false, true)
		return
	}
	q.push(&peekedConn{trackedConn: c, peeked: append([]byte(nil), buf[:n]...)})
}

// tlsConn is an HTTP/1 connection over TLS, as fasthttp and the engine
// get it. Its Close gives the address's slot back before tls.Conn.Close
// sends close_notify: a client reads that alert as the end of the
// connection and may connect again at once, as after a plain connection's
// close (trackedConn.Close). fasthttp finds the TLS state through the
// embedded *tls.Conn's methods.
type tlsConn struct {
	*tls.Conn
	tracked *trackedConn
}

func (c *tlsConn) Close() error {
	c.tracked.giveBack()
	return c.Conn.Close()
}

// peekedConn is a plain connection whose first bytes classify has read: Read
// returns them first. The rest (SyscallConn for the engine's writev, Close
// for the slot) is the trackedConn's.
type peekedConn struct {
	*trackedConn
	peeked []byte // owned by the connection's reader (fasthttp, then the stream's goroutine)
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if len(c.peeked) > 0 {
		n := copy(p, c.peeked)
		c.peeked = c.peeked[n:]
		return n, nil
	}
	return c.trackedConn.Read(p)
}
