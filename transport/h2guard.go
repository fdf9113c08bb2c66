package transport

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"time"
)

// frameGuard is the read side of an HTTP/2 connection as x/net's server
// sees it: buffered (x/net reads each frame's header and payload with
// reads of their own, two system calls a frame on a plain socket), and
// watched for two abuses x/net does not bound. It reads the 9-byte header
// of each frame as it goes by (RFC 9113, 4.1: length, type, flags) and
// parses nothing else: x/net does the protocol. When it fails a read,
// x/net closes the connection.
//
//   - Rapid reset (CVE-2023-44487): HEADERS then RST_STREAM, as fast as
//     the client can. Each stream costs x/net a request and a handler
//     goroutine before the reset ends it. x/net bounds how many wait, not
//     how fast they come. A connection may reset resetBurst streams at
//     once (every stream it may have open, as a browser closing a page
//     does) and resetRate a second after that.
//   - CONTINUATION flood: x/net bounds a header block by its bytes
//     (MaxHeaderBytes), not by its frames: empty CONTINUATION frames after
//     a HEADERS frame cost a read each, forever, and open no stream. A
//     block may have maxContinuation of them.
//
// Only x/net's reading goroutine calls Read.
type frameGuard struct {
	net.Conn
	hc      *h2Conn // for the connection state hook (h2Conn.busy)
	br      *bufio.Reader
	preface int // bytes of the client preface still to pass (not a frame)
	left    int // bytes of the current frame (header included) still to pass
	conts   int // CONTINUATION frames in the current header block

	resets    float64   // the reset allowance left
	resetsAt  time.Time // when it was last refilled
	maxResets float64   // resetBurst
	flood     func(reason string)
}

// maxContinuation bounds the CONTINUATION frames of one header block. A
// block within x/net's byte bound (h2MaxHeaderBytes) needs at most two in
// 16 KiB frames; this leaves room for clients that send small frames.
const maxContinuation = 32

// resetRate is how many streams a second a connection may reset once its
// burst (the stream limit) is spent.
const resetRate = 100

var (
	errContinuationFlood = errors.New("transport: HTTP/2 header block in too many CONTINUATION frames")
	errResetFlood        = errors.New("transport: HTTP/2 streams reset faster than allowed")
)

// Frame types and the flag frameGuard looks at (RFC 9113, 6).
const (
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	framePushPromise  = 0x5
	frameContinuation = 0x9
	flagEndHeaders    = 0x4
)

// guardFrames guards c for x/net; sawPreface: the client preface was
// read from c already (h2c, classify), so the first byte is a frame's.
// A TLS connection stays one to x/net (ConnectionState: it checks the
// version and the cipher, and gives handlers the state).
func guardFrames(c net.Conn, hc *h2Conn, sawPreface bool, resetBurst int, flood func(reason string)) net.Conn {
	g := &frameGuard{Conn: c, hc: hc, flood: flood, br: bufio.NewReaderSize(c, 16<<10),
		resets: float64(resetBurst), maxResets: float64(resetBurst), resetsAt: time.Now()}
	if !sawPreface {
		g.preface = len(h2Preface)
	}
	if tc, ok := c.(*tls.Conn); ok {
		return tlsFrameGuard{g, tc}
	}
	return g
}

type tlsFrameGuard struct {
	*frameGuard
	tc *tls.Conn
}

func (g tlsFrameGuard) ConnectionState() tls.ConnectionState { return g.tc.ConnectionState() }

func (g *frameGuard) Read(p []byte) (int, error) {
	if g.preface > 0 {
		n, err := g.br.Read(p[:min(len(p), g.preface)])
		g.preface -= n
		return n, err
	}
	if g.left == 0 {
		h, err := g.br.Peek(9)
		if err != nil {
			return g.br.Read(p) // what is left of a connection that ends
		}
		length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		switch typ, flags := h[3], h[4]; typ {
		case frameHeaders, framePushPromise:
			g.conts = 0
		case frameContinuation:
			g.conts++
			if g.conts > maxContinuation {
				g.fail("continuation")
				return 0, errContinuationFlood
			}
			if flags&flagEndHeaders != 0 {
				g.conts = 0
			}
		case frameRSTStream:
			now := time.Now()
			g.resets = min(g.maxResets, g.resets+now.Sub(g.resetsAt).Seconds()*resetRate)
			g.resetsAt = now
			if g.resets--; g.resets < 0 {
				g.fail("reset")
				return 0, errResetFlood
			}
		}
		g.left = 9 + length
	}
	n, err := g.br.Read(p[:min(len(p), g.left)])
	g.left -= n
	return n, err
}

func (g *frameGuard) h2conn() *h2Conn { return g.hc }

// fail reports the flood once; the reads that follow fail too.
func (g *frameGuard) fail(reason string) {
	if g.flood != nil {
		g.flood(reason)
		g.flood = nil
	}
}
