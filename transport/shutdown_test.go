package transport

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"golang.org/x/net/http2"
)

// TestShutdown: every subscriber is told when to come back (retry with
// jitter) and closed; requests already on their way are answered, and a
// publish is refused with 503; nothing listens afterwards.
// startShutdown shuts srv down in the background, with wait for its
// connections to finish, and returns a function that waits for Shutdown
// to return and fails the test unless it returned nil.
func startShutdown(t *testing.T, srv *Server) (finished func()) {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	return func() {
		t.Helper()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		case <-time.After(2 * wait):
			t.Fatal("Shutdown did not return")
		}
	}
}

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
	shutdownDone := startShutdown(t, srv)

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

	shutdownDone()
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
	shutdownIdle(t, srv)
	if _, err := br.ReadByte(); err == nil {
		t.Error("the idle connection is still open")
	}
}

// shutdownIdle shuts srv down, which holds only idle connections: Shutdown
// must return nil well within a second (generous: it does not wait for
// them).
func shutdownIdle(t *testing.T, srv *Server) {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Shutdown took %v", d)
	}
}

func writeString(t testing.TB, c net.Conn, s string) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatalf("write %.40q: %v", s, err)
	}
}

// TestShutdownH2: over HTTP/2 every stream gets its retry hint and ends,
// then the connection gets a GOAWAY and is closed, in that order (read
// frame by frame); a publish whose body is still coming when the shutdown
// begins is answered 503 on the same connection; nothing listens
// afterwards.
func TestShutdownH2(t *testing.T) {
	t.Parallel()
	const retry = time.Second
	addr, eng, srv := h2c.startServer(t, engine.Config{TimeoutRetry: retry}, Config{})
	raw := dialH2(t, addr)
	for _, id := range []uint32{1, 3, 5} {
		if err := raw.get(id, "/sse?topic=s"); err != nil {
			t.Fatal(err)
		}
	}
	// A publish on the same connection whose body is not complete yet.
	pubBody := `{"data":"too late"}`
	if err := raw.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 7, EndHeaders: true,
		BlockFragment: raw.block("POST", "/sse", "content-type", "application/json", "content-length", strconv.Itoa(len(pubBody)))}); err != nil {
		t.Fatal(err)
	}
	if err := raw.fr.WriteData(7, false, []byte(pubBody[:5])); err != nil {
		t.Fatal(err)
	}
	waitSubscribers(t, eng, "s", 3)
	// Each stream's head and ": ok".
	for seen := 0; seen < 6; {
		f, err := raw.next(wait)
		if err != nil {
			t.Fatal(err)
		}
		switch f.(type) {
		case *http2.MetaHeadersFrame, *http2.DataFrame:
			seen++
		default:
			t.Fatalf("unexpected %v before the shutdown", f.Header())
		}
	}

	shutdownDone := startShutdown(t, srv)
	waitFor(t, wait, "the engine to close", eng.Closing)
	if err := raw.fr.WriteData(7, true, []byte(pubBody[5:])); err != nil {
		t.Fatal(err)
	}
	ended := map[uint32]bool{}
	retries := map[uint32]string{}
	var pubStatus int
	var away *http2.GoAwayFrame
	for away == nil {
		f, err := raw.next(wait)
		if err != nil {
			t.Fatalf("reading the shutdown: %v (streams ended %v)", err, ended)
		}
		switch f := f.(type) {
		case *http2.DataFrame:
			if f.StreamID != 7 {
				retries[f.StreamID] += string(f.Data())
			}
			if f.StreamEnded() {
				ended[f.StreamID] = true
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == 7 {
				pubStatus = status(f)
			}
			if f.StreamEnded() {
				ended[f.StreamID] = true
			}
		case *http2.GoAwayFrame:
			away = f
		case *http2.RSTStreamFrame:
			t.Fatalf("stream %d reset (%v) during a graceful shutdown", f.StreamID, f.ErrCode)
		}
	}
	for _, id := range []uint32{1, 3, 5} {
		if !ended[id] {
			t.Errorf("stream %d had not ended when the GOAWAY came", id)
		}
		r := retries[id]
		var ms int64
		if _, err := fmt.Sscanf(r, ": shutdown\nretry: %d\n\n", &ms); err != nil || time.Duration(ms)*time.Millisecond < retry || time.Duration(ms)*time.Millisecond >= 3*retry {
			t.Errorf("stream %d got %q, want \": shutdown\" and a retry in [%v, %v)", id, r, retry, 3*retry)
		}
	}
	if away.ErrCode != http2.ErrCodeNo {
		t.Errorf("GOAWAY %v, want NO_ERROR", away.ErrCode)
	}
	if pubStatus != http.StatusServiceUnavailable {
		t.Errorf("the publish in flight got %d, want 503", pubStatus)
	}
	if _, err := raw.next(wait); err == nil {
		t.Error("the connection stayed open after the GOAWAY")
	}
	shutdownDone()
	if st := srv.Stats(); st.H2Conns != 0 || st.H2Streams != 0 {
		t.Errorf("after shutdown: %d HTTP/2 connections, %d streams", st.H2Conns, st.H2Streams)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("the server still accepts connections after shutdown")
	}
}

// TestShutdownIdleH2: an idle HTTP/2 connection does not hold a shutdown
// up: it gets its GOAWAY and is closed at once.
func TestShutdownIdleH2(t *testing.T) {
	t.Parallel()
	addr, _, srv := h2c.startServer(t, engine.Config{}, Config{})
	if a := h2c.post(t, addr, "/sse", "application/json", `{"data":"x"}`); a.Status != http.StatusAccepted {
		t.Fatalf("status %d %s", a.Status, a.Body)
	}
	raw := dialH2(t, addr) // and one that never asks anything
	shutdownIdle(t, srv)
	for {
		f, err := raw.next(wait)
		if err != nil {
			break // closed
		}
		if _, ok := f.(*http2.GoAwayFrame); !ok {
			t.Errorf("unexpected %v", f.Header())
		}
	}
}
