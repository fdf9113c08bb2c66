package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// With --http2 the streams are HTTP/2 streams with prior knowledge, many
// to a connection. As over HTTP/1.1 (raw sockets, no net/http), the
// client is kept cheap so that it can hold thousands of streams and leave
// the CPU to the server: one goroutine per connection reads its frames
// with x/net's Framer and feeds each DATA frame to its stream's SSE parser
// (the same one HTTP/1.1 streams use); a stream costs its parser state and
// a goroutine that waits for its end. Windows are opened wide at the start
// and given back as data is read, so that only the server limits the flow.

// h2sub is a stream's HTTP/2 state. handshake and end are set before the
// stream is opened; line is owned by the connection's reader.
type h2sub struct {
	c         *h2conn
	id        uint32
	handshake *time.Timer // ends the stream if it is not ready in time
	end       chan error  // capacity 1: why the stream ended
	isReady   atomic.Bool
}

// h2conn is one HTTP/2 connection of a group.
type h2conn struct {
	g    *group
	once sync.Once
	err  error // why it could not be made; written once, in once

	c   net.Conn
	wmu sync.Mutex // guards fr's writes, enc, hbuf and nextID
	fr  *http2.Framer
	bw  *bufio.Writer
	enc *hpack.Encoder

	hbuf   bytes.Buffer
	nextID uint32

	// mu guards streams and closed, and is held while a stream's bytes
	// are parsed: a stream is taken out (and its goroutine told) only
	// between two frames, so that its parser has one owner at a time.
	mu      sync.Mutex
	streams map[uint32]*sub // the open streams, by id
	closed  error           // set once the connection ended: why
	unread  int64           // connection window used since it was last given back; the reader's
}

// h2Window is what the client allows the server to send ahead, per stream
// and for the connection.
const h2Window = 1 << 30

// h2conn returns the connection stream i uses, connected (with its reader
// running) by the first stream that needs it.
func (g *group) h2conn(ctx context.Context, i int) (*h2conn, error) {
	c := g.h2[i%len(g.h2)]
	c.once.Do(func() { c.err = c.connect(ctx) })
	return c, c.err
}

func (c *h2conn) connect(ctx context.Context) error {
	g := c.g
	if g.isClosing() {
		return context.Canceled
	}
	d := net.Dialer{Timeout: g.cfg.HandshakeTimeout}
	conn, err := d.DialContext(ctx, "tcp", g.url.Host)
	if err != nil {
		return err
	}
	c.c = conn
	c.bw = bufio.NewWriterSize(conn, 16<<10)
	c.fr = http2.NewFramer(c.bw, bufio.NewReaderSize(conn, 64<<10))
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	c.nextID = 1
	c.wmu.Lock()
	_, _ = c.bw.WriteString(http2.ClientPreface)
	_ = c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2Window})
	_ = c.fr.WriteWindowUpdate(0, h2Window-65535)
	err = c.bw.Flush()
	c.wmu.Unlock()
	if err != nil {
		conn.Close()
		return err
	}
	go c.read()
	return nil
}

// open sends s's request on a new stream. registered false: the
// connection had ended, and s was never one of its streams.
func (c *h2conn) open(s *sub) (registered bool, err error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	id := c.nextID
	c.nextID += 2
	s.h2.c, s.h2.id = c, id
	c.mu.Lock()
	if c.closed != nil {
		c.mu.Unlock()
		return false, c.closed
	}
	c.streams[id] = s
	c.mu.Unlock()
	c.hbuf.Reset()
	u := c.g.url
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", u.Host}, {":path", u.RequestURI()},
		{"accept", "text/event-stream"}, {"cache-control", "no-cache"}} {
		_ = c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		return true, err
	}
	return true, c.bw.Flush()
}

// reset ends s's stream from this side (the group closing it, or its
// handshake timeout), unless it has ended already.
func (c *h2conn) reset(s *sub, why error) {
	if !c.finish(s.h2.id, why) {
		return
	}
	c.wmu.Lock()
	_ = c.fr.WriteRSTStream(s.h2.id, http2.ErrCodeCancel)
	_ = c.bw.Flush()
	c.wmu.Unlock()
}

// finish takes stream id out and tells its goroutine why it ended; false
// if it was out already.
func (c *h2conn) finish(id uint32, why error) bool {
	c.mu.Lock()
	s := c.streams[id]
	delete(c.streams, id)
	c.mu.Unlock()
	if s == nil {
		return false
	}
	s.h2.end <- why
	return true
}

// close ends the connection and every stream on it.
func (c *h2conn) close() {
	c.once.Do(func() { c.err = context.Canceled }) // or wait for the stream connecting it
	if c.c != nil {
		c.c.Close()
	}
}

// read is the connection's reader: it hands each stream's bytes to its
// parser, and ends every stream when the connection ends.
func (c *h2conn) read() {
	err := c.readFrames()
	c.mu.Lock()
	c.closed = err
	streams := c.streams
	c.streams = map[uint32]*sub{}
	c.mu.Unlock()
	for _, s := range streams {
		s.h2.end <- err
	}
	c.c.Close()
}

func (c *h2conn) readFrames() error {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return err
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if st := f.PseudoValue("status"); st != "200" && st != "" {
				c.finish(f.StreamID, fmt.Errorf("%w: %q", errHandshake, "HTTP/2 "+st))
				continue
			}
			if f.StreamEnded() {
				c.finish(f.StreamID, io.EOF)
			}
		case *http2.DataFrame:
			if err := c.data(f); err != nil {
				return err
			}
		case *http2.RSTStreamFrame:
			c.finish(f.StreamID, fmt.Errorf("stream reset: %v", f.ErrCode))
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.wmu.Lock()
				_ = c.fr.WriteSettingsAck()
				err := c.bw.Flush()
				c.wmu.Unlock()
				if err != nil {
					return err
				}
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.wmu.Lock()
				_ = c.fr.WritePing(true, f.Data)
				err := c.bw.Flush()
				c.wmu.Unlock()
				if err != nil {
					return err
				}
			}
		case *http2.GoAwayFrame:
			return fmt.Errorf("GOAWAY %v", f.ErrCode)
		}
	}
}

// data feeds a DATA frame to its stream's parser, line by line, and gives
// the connection's window back once a quarter of it is used. (A stream's
// own window, 1 GiB, is never given back: a run's stream takes a few MB.)
func (c *h2conn) data(f *http2.DataFrame) error {
	c.mu.Lock()
	if s := c.streams[f.StreamID]; s != nil {
		s.feed(f.Data()) // as read does a socket read's bytes; only the connection's reader calls it
		if f.StreamEnded() {
			delete(c.streams, f.StreamID)
			s.h2.end <- io.EOF
		}
	}
	c.mu.Unlock()
	if c.unread += int64(f.Length); c.unread > h2Window/4 {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		_ = c.fr.WriteWindowUpdate(0, uint32(c.unread))
		c.unread = 0
		return c.bw.Flush()
	}
	return nil
}

// runH2 is run over HTTP/2: open the stream, wait for its end.
func (s *sub) runH2(ctx context.Context) {
	g := s.g
	c, err := g.h2conn(ctx, s.idx)
	if err != nil {
		g.failed(s, err)
		return
	}
	s.h2.end = make(chan error, 1)
	if !g.track(s, closerFunc(func() error { c.reset(s, context.Canceled); return nil })) {
		return
	}
	s.h2.handshake = time.AfterFunc(g.cfg.HandshakeTimeout, func() {
		if !s.h2.isReady.Load() {
			c.reset(s, errors.New("not ready within the handshake timeout"))
		}
	})
	if registered, err := c.open(s); !registered {
		s.h2.handshake.Stop()
		g.failed(s, err)
		return
	} else if err != nil {
		c.finish(s.h2.id, err)
	}
	err = <-s.h2.end
	s.h2.handshake.Stop()
	s.flush()
	g.ended(s, err)
}
