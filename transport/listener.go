package transport

import (
	"bytes"
	"crypto/tls"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"
)

// limitListener counts open connections, hijacked streams included (which
// fasthttp's Concurrency no longer sees), and answers a fast 503 beyond
// max, so accept(2) never fails with "too many open files".
type limitListener struct {
	net.Listener
	// max, perIP and tls are set before the first Accept and read-only
	// after. open is added to by Accept (the accept goroutine) and
	// subtracted from by trackedConn.Close (any goroutine); the refusal
	// counters are added to by Accept only. All are read by Server.Stats
	// from any goroutine, hence atomics.
	max       int64
	open      atomic.Int64  // connections accepted and not yet closed
	refused   atomic.Uint64 // connections turned away at max (503)
	refusedIP atomic.Uint64 // connections turned away at perIP (429)
	tls       *tls.Config   // set when serving HTTPS: the 503 and 429 go through TLS (ALPN http/1.1 only)

	mu    sync.Mutex
	conns map[*trackedConn]struct{} // guarded by mu: open connections

	perIP int                // MaxConnsPerIP; 0: no bound
	byIP  map[netip.Addr]int // guarded by mu: open connections per client address, when perIP > 0

	// refusing counts this listener's refusals that are waiting for their
	// request (added to by the refuse goroutines): at most maxPolite do,
	// so that a flood of refused clients holds at most that many
	// descriptors beyond the limit, each for at most twice refuseWait. Per
	// listener, so one server's flood never makes another's refusals rude.
	refusing atomic.Int32
}

const overloadBody = `{"error":"server is at its connection limit"}`

var overloadResponse = newRefusal("503 Service Unavailable", http2.ErrCodeRefusedStream, overloadBody)

// refusal is an answer written at accept, before the request is read: in
// HTTP/1.1, or to a client that opened with the HTTP/2 preface (h2c with
// prior knowledge), the server's SETTINGS and a GOAWAY whose debug data
// is the JSON body. Over TLS only http/1.1 is offered on a refused
// connection, so browsers read the HTTP/1.1 answer.
type refusal struct {
	http1, h2 []byte
}

// newRefusal is a refusal answering status (HTTP/1.1: "429 Too Many
// Requests") with the JSON body and Retry-After: 1, or for HTTP/2 a GOAWAY
// with code carrying the body.
func newRefusal(status string, code http2.ErrCode, body string) refusal {
	return refusal{
		http1: []byte("HTTP/1.1 " + status + "\r\n" +
			"Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) +
			"\r\nConnection: close\r\nRetry-After: 1\r\n\r\n" + body),
		h2: h2Refusal(code, body),
	}
}

// h2Refusal is the HTTP/2 form of a refusal: the server preface (an empty
// SETTINGS frame) and a GOAWAY for no stream.
func h2Refusal(code http2.ErrCode, body string) []byte {
	var b bytes.Buffer
	fr := http2.NewFramer(&b, nil)
	_ = fr.WriteSettings()
	_ = fr.WriteGoAway(0, code, []byte(body))
	return b.Bytes()
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			l.refused.Add(1)
			l.turnAway(c, overloadResponse)
			continue
		}
		tc := &trackedConn{Conn: c, l: l, ip: remoteIP(c)}
		l.mu.Lock()
		if !l.admitIP(tc.ip) {
			l.mu.Unlock()
			l.open.Add(-1)
			l.refusedIP.Add(1)
			l.turnAway(c, tooManyResponse)
			continue
		}
		if l.conns == nil {
			l.conns = make(map[*trackedConn]struct{})
		}
		l.conns[tc] = struct{}{}
		l.mu.Unlock()
		return tc, nil
	}
}

// closeSilent cuts off the connections that have not sent a byte yet.
// fasthttp's Shutdown waits for them until ReadTimeout (it only closes
// connections idle between requests), and browsers and HTTP clients open
// such spare connections ahead of need.
func (l *limitListener) closeSilent() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		if !c.spoke.Load() {
			_ = c.SetReadDeadline(aLongTimeAgo)
		}
	}
}

var aLongTimeAgo = time.Unix(1, 0)

const (
	maxPolite  = 64
	refuseWait = 100 * time.Millisecond
)

// turnAway refuses c with r on a goroutine of its own, through TLS when
// the listener serves TLS.
func (l *limitListener) turnAway(c net.Conn, r refusal) {
	if l.tls != nil {
		c = tls.Server(c, l.tls)
	}
	go l.refuse(c, r)
}

// refuse answers a connection turned away at accept with resp and closes
// it, within twice refuseWait (a TLS handshake included). It first waits for the
// client's request to begin, when it can afford to: an HTTP client drops
// an answer that comes before its request ("unsolicited response") and
// retries or fails instead of reading the 503. After writing, it shuts
// its side down and drains what the client sent, so the close does not
// reset the connection under the answer. Beyond maxPolite refusals at
// once it writes and closes at once, as a flood deserves.
func (l *limitListener) refuse(c net.Conn, r refusal) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(refuseWait))
	polite := l.refusing.Add(1) <= maxPolite
	defer l.refusing.Add(-1)
	var buf [512]byte
	resp := r.http1
	if polite {
		n, _ := c.Read(buf[:]) // the request's first bytes, or the deadline
		if n >= len(h2PrefaceStart) && string(buf[:len(h2PrefaceStart)]) == h2PrefaceStart {
			resp = r.h2
		}
		_ = c.SetDeadline(time.Now().Add(refuseWait))
	}
	if _, err := c.Write(resp); err != nil || !polite {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	for {
		if _, err := c.Read(buf[:]); err != nil {
			return // the client closed, or the deadline
		}
	}
}

// h2PrefaceStart is the HTTP/2 client preface's request line, what a
// refused h2c client's first bytes are.
const h2PrefaceStart = "PRI * HTTP/2.0\r\n"

// trackedConn gives its slot back once, however often it is closed
// (fasthttp and the engine may both close a hijacked stream).
type trackedConn struct {
	net.Conn
	l        *limitListener
	once     sync.Once   // Close
	slotOnce sync.Once   // giveBack
	spoke    atomic.Bool // the client has sent at least one byte
	ip       netip.Addr  // the client's address, for the per-address count
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.spoke.Load() {
		c.spoke.Store(true)
	}
	return n, err
}

func (c *trackedConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		// The address's slot is given back before the socket closes, so a
		// client that has seen the close may connect again at once; the
		// descriptor count only after, so it never undercounts.
		c.giveBack()
		err = c.Conn.Close()
		c.l.open.Add(-1)
	})
	return err
}

// giveBack gives the connection's slot back (its address's count, its
// place among the open connections), once: by Close, or earlier by a
// tlsConn's Close, before the TLS layer tells the client it is closing.
func (c *trackedConn) giveBack() {
	c.slotOnce.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.leaveIP(c.ip)
		c.l.mu.Unlock()
	})
}

// SyscallConn exposes the socket so the engine can write without blocking.
func (c *trackedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errNoRawConn
	}
	return sc.SyscallConn()
}
