package main

import (
	"bufio"
	"errors"
	"fmt"
	"github.com/tinysse/tinysse/internal/tcpstate"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestStuckSubscribersDoNotLagOthers is issue 13's slow-reader attack on
// the built server: 50 sockets that never read (receive buffer 4096
// bytes) subscribe next to 5 that read as fast as they can, and 3,000
// messages of 32 KB are published at 1,000 a second. Every healthy reader
// gets all 3,000, in order, without ": lagged"; every stuck one is cut off
// within --write-timeout plus a second, counted as a slow disconnect, and
// its socket really closed.
func TestStuckSubscribersDoNotLagOthers(t *testing.T) {
	bin := buildBinary(t)
	addr := freeAddr(t)
	const (
		stuck, healthy = 50, 5
		total, rate    = 3000, 1000
		writeTimeout   = 2 * time.Second
	)
	var logs syncBuffer
	startProcess(t, addr, io.Discard, &logs, bin, "--listen", addr, "--write-timeout", writeTimeout.String())

	var stuckConns []*net.TCPConn
	for range stuck {
		c, err := net.DialTimeout("tcp", addr, wait)
		if err != nil {
			t.Fatal(err)
		}
		tc := c.(*net.TCPConn)
		t.Cleanup(func() { tc.Close() })
		if err := tc.SetReadBuffer(4096); err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Fprintf(tc, "GET /sse HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		stuckConns = append(stuckConns, tc)
	}

	type result struct {
		got    int
		lagged bool
		err    error
	}
	results := make([]result, healthy)
	var readers sync.WaitGroup
	for i := range healthy {
		s := openStream(t, addr, "/sse")
		s.readUntil(t, ": ok\n\n")
		_ = s.conn.SetDeadline(time.Time{})
		readers.Add(1)
		go func() {
			defer readers.Done()
			r := &results[i]
			br := bufio.NewReaderSize(io.MultiReader(strings.NewReader(string(s.got)), s.conn), 64<<10)
			for r.got < total {
				_ = s.conn.SetReadDeadline(time.Now().Add(4 * wait))
				line, err := br.ReadSlice('\n')
				for err == bufio.ErrBufferFull {
					_, err = br.ReadSlice('\n')
				}
				if err != nil {
					r.err = err
					return
				}
				switch {
				case strings.HasPrefix(string(line), ": lagged"):
					r.lagged = true
				case strings.HasPrefix(string(line), "id: "):
					if id := strings.TrimSpace(string(line[4:])); id != strconv.Itoa(r.got+1) {
						r.err = fmt.Errorf("message %q after %d", id, r.got)
						return
					}
					r.got++
				}
			}
		}()
	}
	waitMetric(t, addr, "tinysse_subscribers", stuck+healthy)

	pub := newKeepAlivePublisher(t, addr)
	data := strings.Repeat("s", 32<<10)
	start := time.Now()
	// When each stuck socket is closed, seen from its own side: it filled
	// within the first messages, so it must be cut off by the write
	// timeout plus a second from the start.
	cutAt := make([]time.Duration, stuck)
	watched := make(chan bool, 1)
	go func() {
		left, known := stuck, true
		for left > 0 && known && time.Since(start) < writeTimeout+10*time.Second {
			for i, c := range stuckConns {
				if cutAt[i] != 0 {
					continue
				}
				open, ok := tcpstate.Open(c)
				if known = ok; !ok {
					break
				}
				if !open {
					cutAt[i] = time.Since(start)
					left--
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		watched <- known
	}()
	for i := 1; i <= total; i++ {
		if d := time.Until(start.Add(time.Duration(i-1) * time.Second / rate)); d > 0 {
			time.Sleep(d)
		}
		if status, err := pub.publish("/sse", fmt.Sprintf(`{"id":"%d","data":"%s"}`, i, data)); err != nil || status != http.StatusAccepted {
			t.Fatalf("publish %d: %d %v", i, status, err)
		}
	}
	t.Logf("published %d messages of 32 KB in %v", total, time.Since(start).Round(time.Millisecond))

	if <-watched {
		var latest time.Duration
		for i, d := range cutAt {
			latest = max(latest, d)
			if d == 0 || d > writeTimeout+time.Second {
				t.Errorf("stuck subscriber %d: cut off %v after the first publish, want within --write-timeout %v plus a second", i, d, writeTimeout)
			}
		}
		t.Logf("every stuck subscriber cut off within %v of the first publish", latest.Round(time.Millisecond))
	} else {
		t.Log("no TCP_INFO here: cut-off times not measured")
	}
	waitMetric(t, addr, `tinysse_disconnects_total{reason="slow"}`, stuck)
	readers.Wait()
	for i, r := range results {
		if r.got != total || r.lagged || r.err != nil {
			t.Errorf("healthy reader %d: %d of %d messages, lagged %v, error %v", i, r.got, total, r.lagged, r.err)
		}
	}
	// A stuck socket is closed for real, with a reset: the server kept
	// none of what it could not send.
	for i, c := range stuckConns {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		_, err := io.Copy(io.Discard, c)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("stuck subscriber %d: reading it ended with %v, want a reset", i, err)
		}
	}
	if strings.Contains(logs.String(), "lagged") {
		t.Errorf("the server closed someone as lagged:\n%s", logs.String())
	}
}
