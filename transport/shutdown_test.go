package transport

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
)

// TestShutdown: every subscriber is told when to come back (retry with
// jitter) and closed; requests already on their way are answered, and a
// publish is refused with 503; nothing listens afterwards.
func TestShutdown(t *testing.T) {
	t.Parallel()
	const retry = time.Second
	addr, eng, srv := startServer(t, engine.Config{TimeoutRetry: retry}, Config{})
	subs := []*sseClient{
		subscribe(t, addr, "/sse"),
		subscribe(t, addr, "/sse?topic=x"),
		subscribe(t, addr, "/sse?topic=x&topic=y"),
	}
	for _, s := range subs {
		s.expectOK()
	}
	waitSubscribers(t, eng, "", 1)
	waitSubscribers(t, eng, "x", 2)

	// A publish and a subscribe whose requests are not complete when the
	// shutdown begins.
	pub := dial(t, addr)
	body := `{"data":"too late"}`
	writeString(t, pub, "POST /sse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\n\r\n")
	late := dial(t, addr)
	writeString(t, late, "GET /sse HTTP/1.1\r\nHost: x\r\n")
	time.Sleep(100 * time.Millisecond) // the server reads what was sent

	start := time.Now()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()

	for i, s := range subs {
		blocks := s.drain(wait)
		if len(blocks) != 1 || len(blocks[0].Lines) != 2 || blocks[0].Lines[0] != ": shutdown" {
			t.Fatalf("subscriber %d got %+v, want one \": shutdown\" block with a retry", i, blocks)
		}
		got := time.Duration(blocks[0].Retry) * time.Millisecond
		if blocks[0].Lines[1] != "retry: "+strconv.FormatInt(blocks[0].Retry, 10) || got < retry || got >= 3*retry {
			t.Errorf("subscriber %d: %q, want a retry in [%v, %v)", i, blocks[0].Raw, retry, 3*retry)
		}
	}

	writeString(t, pub, body)
	_ = pub.SetReadDeadline(time.Now().Add(wait))
	wantError(t, readAnswer(t, bufio.NewReader(pub)), http.StatusServiceUnavailable)

	writeString(t, late, "\r\n")
	_ = late.SetReadDeadline(time.Now().Add(wait))
	a := readAnswer(t, bufio.NewReader(late))
	wantError(t, a, http.StatusServiceUnavailable)
	if a.Header.Get("Retry-After") == "" {
		t.Errorf("503 to a subscriber has no Retry-After")
	}

	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(2 * wait):
		t.Fatal("Shutdown did not return")
	}
	t.Logf("shutdown took %v", time.Since(start))
	for _, topic := range []string{"", "x", "y"} {
		if n := eng.Subscribers(topic); n != 0 {
			t.Errorf("%d subscribers left on topic %q", n, topic)
		}
	}
	if _, err := eng.Publish(&engine.Message{Data: "x", HasData: true}); err == nil {
		t.Error("the engine still publishes after shutdown")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("the server still accepts connections after shutdown")
	}
}

// TestShutdownIdle: a server with nothing to do stops at once, and an idle
// keep-alive connection does not hold it up.
func TestShutdownIdle(t *testing.T) {
	t.Parallel()
	addr, _, srv := startServer(t, engine.Config{}, Config{})
	idle := dial(t, addr)
	writeString(t, idle, "POST /sse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"data\":\"x\"}")
	_ = idle.SetReadDeadline(time.Now().Add(wait))
	br := bufio.NewReader(idle)
	if a := readAnswer(t, br); a.Status != http.StatusAccepted {
		t.Fatalf("status %d %s", a.Status, a.Body)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Error("the idle connection is still open")
	}
}

func writeString(t testing.TB, c net.Conn, s string) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatalf("write %.40q: %v", s, err)
	}
}
