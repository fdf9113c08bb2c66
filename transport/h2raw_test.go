package transport

import (
	"bytes"
	"net"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawH2 is an HTTP/2 client built from x/net's Framer, for what a
// well-behaved client never does: stalling a stream's window on purpose,
// resetting streams in a flood, endless CONTINUATION frames, reading the
// frames of a shutdown in their order.
type rawH2 struct {
	t    testing.TB
	addr string
	c    net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
}

// dialH2 connects with prior knowledge (h2c) and sends the client preface
// and SETTINGS with settings (it does not wait for the server's).
func dialH2(t testing.TB, addr string, settings ...http2.Setting) *rawH2 {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return startH2(t, addr, c, settings...)
}

func startH2(t testing.TB, addr string, c net.Conn, settings ...http2.Setting) *rawH2 {
	t.Helper()
	r := &rawH2{t: t, addr: addr, c: c}
	r.fr = http2.NewFramer(c, c)
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	r.fr.MaxHeaderListSize = 1 << 20
	r.enc = hpack.NewEncoder(&r.hbuf)
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatalf("preface: %v", err)
	}
	if err := r.fr.WriteSettings(settings...); err != nil {
		t.Fatalf("settings: %v", err)
	}
	return r
}

// block encodes a request's header block: GET path, then name, value
// pairs.
func (r *rawH2) block(method, path string, fields ...string) []byte {
	r.hbuf.Reset()
	for _, f := range [][2]string{{":method", method}, {":scheme", "http"}, {":authority", r.addr}, {":path", path}} {
		_ = r.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := 0; i+1 < len(fields); i += 2 {
		_ = r.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return append([]byte(nil), r.hbuf.Bytes()...)
}

// get opens stream id with GET path (and no body).
func (r *rawH2) get(id uint32, path string, fields ...string) error {
	return r.headers(id, r.block("GET", path, fields...), true)
}

// headers sends a header block on stream id, in a HEADERS frame and as
// many CONTINUATION frames as the server's smallest frame size needs.
func (r *rawH2) headers(id uint32, block []byte, endStream bool) error {
	const frame = 16 << 10
	first := block[:min(len(block), frame)]
	rest := block[len(first):]
	_ = r.c.SetWriteDeadline(time.Now().Add(wait))
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: endStream, EndHeaders: len(rest) == 0}); err != nil {
		return err
	}
	for len(rest) > 0 {
		n := min(len(rest), frame)
		if err := r.fr.WriteContinuation(id, n == len(rest), rest[:n]); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

// next reads the next frame, waiting at most d. Frames the test does not
// look at (SETTINGS, its ACK, WINDOW_UPDATE, PING) are answered as a
// client must (SETTINGS acknowledged) and skipped.
func (r *rawH2) next(d time.Duration) (http2.Frame, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(d))
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = r.c.SetWriteDeadline(time.Now().Add(wait))
				if err := r.fr.WriteSettingsAck(); err != nil {
					return nil, err
				}
			}
			continue
		case *http2.WindowUpdateFrame, *http2.PingFrame:
			continue
		}
		return f, nil
	}
}

// firstStatuses reads frames until n streams have answered and returns
// the status of each one's first HEADERS, by stream id.
func (r *rawH2) firstStatuses(t testing.TB, n int) map[uint32]int {
	t.Helper()
	got := map[uint32]int{}
	for len(got) < n {
		f, err := r.next(wait)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		if h, ok := f.(*http2.MetaHeadersFrame); ok {
			if _, seen := got[h.StreamID]; !seen {
				got[h.StreamID] = status(h)
			}
		}
	}
	return got
}

// status returns the :status of a response HEADERS frame.
func status(f *http2.MetaHeadersFrame) int {
	n, _ := strconv.Atoi(f.PseudoValue("status"))
	return n
}
