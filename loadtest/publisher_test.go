package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestReadResponse(t *testing.T) {
	for _, c := range []struct {
		name, in, body string
		status         int
		keep           bool
	}{
		{"length", "HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\nhello", "hello", 202, true},
		{"chunked", "HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "hello", 202, true},
		{"close", "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}", "{}", 400, false},
		{"until close", "HTTP/1.1 202 Accepted\r\n\r\nbody", "bodyNEXT", 202, false},
		{"1.0", "HTTP/1.0 202 Accepted\r\nContent-Length: 0\r\n\r\n", "", 202, false},
		{"no reason", "HTTP/1.1 204\r\n\r\n", "", 204, true},
		{"tabs", "HTTP/1.1\t200\tOK\r\nContent-Length: 2\r\n\r\nok", "ok", 200, true},
		{"long", "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + strings.Repeat("y", 5000), strings.Repeat("y", maxBody), 200, true},
	} {
		br := bufio.NewReader(strings.NewReader(c.in + "NEXT"))
		status, keep, body, err := readResponse(br, nil)
		if err != nil || status != c.status || keep != c.keep || string(body) != c.body {
			t.Errorf("%s: %d %v %.20q %v", c.name, status, keep, body, err)
			continue
		}
		if rest, _ := br.Peek(br.Buffered()); keep && string(rest) != "NEXT" {
			t.Errorf("%s: body not consumed exactly, left %q", c.name, rest)
		}
	}
	for _, in := range []string{"garbage\r\n\r\n", "HTTP/1.1 abc OK\r\n\r\n", "HTTP/1.1\r\n\r\n", "HTTP/2 200\r\n\r\n"} {
		if _, _, _, err := readResponse(bufio.NewReader(strings.NewReader(in)), nil); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// startSlowPublishSink answers every request with 202 after delay.
func startSlowPublishSink(t *testing.T, delay time.Duration) *url.URL {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					time.Sleep(delay)
					io.WriteString(c, "HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}")
				}
			}()
		}
	}()
	u, _ := targetURL("http://"+ln.Addr().String()+"/sse", "/sse")
	return u
}

// A slow server gets more publisher connections, up to the maximum; past
// it, ticks are skipped and counted.
func TestPublishersKeepTheRate(t *testing.T) {
	u := startSlowPublishSink(t, 20*time.Millisecond)
	for _, c := range []struct {
		max         int
		wantSkipped bool
	}{{64, false}, {1, true}} {
		o := &publishOptions{Rate: 200, Duration: 500 * time.Millisecond, Size: 10, Publishers: 1, MaxPublishers: c.max}
		r := newPublishRun(targets["tinysse"], u, o)
		r.run(context.Background())
		pubs, acked, skipped := len(r.publishers()), r.acked.Load(), r.skipped.Load()
		t.Logf("max %d: %d publishers, %d acked, %d skipped", c.max, pubs, acked, skipped)
		// With room for more connections the run opens them and keeps the
		// pace; on one connection a 20 ms answer allows at most 50 of the
		// 200/s (at least 73 of the 100 ticks skipped). Four connections
		// would do on an idle machine; a loaded one answers in far more
		// than 20 ms and wakes the pacer late (it then sends the missed
		// ticks at once), so up to 64 may open: with 16, 9 of 100 ticks
		// were skipped at load 12 under -race, and 39 at load 17. A
		// quarter is far from the one-connection floor: a run that did
		// not open or use the connections still fails (two skip 58).
		kept := pubs > 1 && skipped <= 25
		starved := pubs == 1 && skipped >= 50
		if pubs > c.max || acked+skipped != 100 || (c.wantSkipped && !starved) || (!c.wantSkipped && !kept) {
			t.Errorf("max %d: %d publishers, %d acked, %d skipped", c.max, pubs, acked, skipped)
		}
		var n int
		for _, s := range r.timeline() {
			n += len(s)
		}
		if int64(n) != acked {
			t.Errorf("timeline holds %d sends, want %d", n, acked)
		}
	}
}
