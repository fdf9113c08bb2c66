package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
)

// TestTLSCloseGivesSlotBackFirst: over TLS (HTTP/1.1), a connection's
// place in its address's count is given back before the close_notify
// alert goes out. A client reads that alert as the end of the connection
// and may connect again at once under MaxConnsPerIP, as after a plain
// connection's close. The server wrote the alert first, and a loaded
// machine pausing it there turned cmd/tinysse TestTLSWithLimits' next
// connection away with a 429. Every write to the socket is watched: the
// last one (the alert) must find the address's count empty.
func TestTLSCloseGivesSlotBackFirst(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	eng, err := engine.New(engine.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{TLS: sharedCert().Server(t), MaxConnsPerIP: 1, Logger: quiet}, eng)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	spy := &writeSpy{Listener: ln, held: func() int {
		if l := srv.ln.Load(); l != nil {
			return l.addresses()
		}
		return -1
	}}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(spy) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-served
		_ = eng.Close(ctx)
	})

	cfg := sharedCert().Client()
	cfg.NextProtos = []string{"http/1.1"}
	for i := range 3 {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: wait}, "tcp", ln.Addr().String(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(wait))
		fmt.Fprintf(c, "GET /nothing-here HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		b, err := io.ReadAll(c) // until the close_notify
		c.Close()
		if err != nil || !strings.HasPrefix(string(b), "HTTP/1.1 404 ") {
			t.Fatalf("connection %d: %q, %v; want a 404 (not a 429: the address's one slot was free)", i, b, err)
		}
		if n := spy.lastHeld(); n != 0 {
			t.Errorf("connection %d: the server's last write (the close_notify) went out while the address still held %d slot(s)", i, n)
		}
	}
}

// writeSpy is a listener whose connections note, at each write, what held
// says then.
type writeSpy struct {
	net.Listener
	held func() int

	mu   sync.Mutex
	last int
}

func (l *writeSpy) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &spiedConn{Conn: c, l: l}, nil
}

func (l *writeSpy) lastHeld() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

type spiedConn struct {
	net.Conn
	l *writeSpy
}

func (c *spiedConn) Write(p []byte) (int, error) {
	n := c.l.held()
	c.l.mu.Lock()
	c.l.last = n
	c.l.mu.Unlock()
	return c.Conn.Write(p)
}
