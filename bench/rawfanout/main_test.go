package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestFanOut(t *testing.T) {
	ln, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go newServer().serve(ln)
	url := "http://" + ln.Addr().String() + "/sse"

	var streams []*bufio.Reader
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(c)
		head := readUntil(t, br, ": ok\n\n")
		if !strings.HasPrefix(head, "HTTP/1.1 200 OK\r\n") || !strings.Contains(head, "text/event-stream") {
			t.Fatalf("head %q", head)
		}
		streams = append(streams, br)
	}

	resp, err := http.Post(url, "application/json", strings.NewReader(`{"id":"7","data":"a\nb"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 202 || string(body) != `{"queued":0,"subscribers":3}` {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	for i, br := range streams {
		if got := readUntil(t, br, "\n\n"); got != "id: 7\ndata: a\ndata: b\n\n" {
			t.Errorf("stream %d got %q", i, got)
		}
	}

	resp, err = http.Post(url, "application/json", strings.NewReader(`{`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("bad JSON: %d", resp.StatusCode)
	}
}

func TestListenLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "example.com:80"} {
		if ln, err := listen(addr); err == nil {
			ln.Close()
			t.Errorf("listen(%q) accepted", addr)
		}
	}
}

func readUntil(t *testing.T, br *bufio.Reader, end string) string {
	t.Helper()
	var b strings.Builder
	for !strings.HasSuffix(b.String(), end) {
		c, err := br.ReadByte()
		if err != nil {
			t.Fatalf("after %q: %v", b.String(), err)
		}
		b.WriteByte(c)
	}
	return b.String()
}
