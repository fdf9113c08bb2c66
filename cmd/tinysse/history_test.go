package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// keepAlivePublisher posts JSON messages on one keep-alive connection.
type keepAlivePublisher struct {
	conn net.Conn
	br   *bufio.Reader
}

func newKeepAlivePublisher(t *testing.T, addr string) *keepAlivePublisher {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &keepAlivePublisher{conn: c, br: bufio.NewReader(c)}
}

// publish posts body to path and returns the status.
func (p *keepAlivePublisher) publish(path, body string) (int, error) {
	_ = p.conn.SetDeadline(time.Now().Add(4 * wait))
	if _, err := fmt.Fprintf(p.conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", path, len(body), body); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// procKB reads a "Name: N kB" line of /proc/pid/status.
func procKB(t *testing.T, pid int, name string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", name, pid)
	return 0
}

// TestHistoryBudgetRSS is issue 13's unauthenticated publisher filling
// every ring: 40 topics × 256 messages × 60 KB with no subscribers, at the
// default options, against the built server. Without a byte budget the
// rings keep all of it (some 1.2 GB with the frames); with the default
// --max-history-bytes the server's peak RSS stays under 512 MiB. A
// subscriber that keeps up on one of the topics meanwhile gets every
// message of it, in order: eviction takes the oldest messages, never one
// a live reader still needs.
func TestHistoryBudgetRSS(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads the server's RSS from /proc")
	}
	bin := buildBinary(t)
	addr := freeAddr(t)
	var logs syncBuffer
	p := startProcess(t, addr, io.Discard, &logs, bin, "--listen", addr)
	pid := p.Cmd.Process.Pid
	start := procKB(t, pid, "VmRSS")

	const topics, perTopic, publishers = 40, 256, 4
	data := strings.Repeat("x", 60<<10)
	reader := openStream(t, addr, "/sse?topic=t0")
	reader.readUntil(t, ": ok\n\n")
	read := make(chan error, 1)
	go func() {
		// Not readUntil: it would Fatal off the test goroutine.
		br := bufio.NewReaderSize(reader.conn, 128<<10)
		next := 0
		for next < perTopic {
			_ = reader.conn.SetReadDeadline(time.Now().Add(6 * wait))
			line, err := br.ReadSlice('\n')
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			if err != nil {
				read <- fmt.Errorf("after %d of %d messages: %v", next, perTopic, err)
				return
			}
			switch s := string(line); {
			case strings.HasPrefix(s, ": lagged"):
				read <- fmt.Errorf("lagged after %d of %d messages", next, perTopic)
				return
			case strings.HasPrefix(s, "id: "):
				if want := fmt.Sprintf("id: t0-%d\n", next); s != want {
					read <- fmt.Errorf("got %q, want %q", s, want)
					return
				}
				next++
			}
		}
		read <- nil
	}()

	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for w := range publishers {
		pub := newKeepAlivePublisher(t, addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < topics*perTopic; i += publishers {
				topic, n := i%topics, i/topics
				body := fmt.Sprintf(`{"id":"t%d-%d","data":"%s"}`, topic, n, data)
				if status, err := pub.publish(fmt.Sprintf("/sse?topic=t%d", topic), body); err != nil || status != http.StatusAccepted {
					errs <- fmt.Errorf("publish %d: %d %v", i, status, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := <-read; err != nil {
		t.Errorf("the subscriber that keeps up: %v", err)
	}
	peak := procKB(t, pid, "VmHWM")
	t.Logf("RSS at start %d KiB, peak %d KiB", start, peak)
	if peak >= 512<<10 {
		t.Errorf("peak RSS %d KiB, want under 512 MiB", peak)
	}
	body := get(t, "http://"+addr+"/metrics").body
	held := metricValue(t, body, "tinysse_history_bytes")
	evicted := metricValue(t, body, "tinysse_history_evicted_total")
	t.Logf("history: %.0f bytes held, %.0f messages evicted", held, evicted)
	if held > 256<<20 || evicted < 1 {
		t.Errorf("history holds %.0f bytes (budget 256 MiB), %.0f evicted", held, evicted)
	}
	if metricValue(t, body, `tinysse_disconnects_total{reason="lagged"}`) != 0 {
		t.Error("a subscriber was closed as lagged")
	}
}

// TestHistoryBudgetCluster: in cluster mode every node applies the stream
// through PublishSeq and keeps its own rings under --max-history-bytes;
// a reader that keeps up loses nothing, and a client coming back with the
// id of a message its node dropped is replayed from the stream (with
// --auto-id), not told of a gap.
func TestHistoryBudgetCluster(t *testing.T) {
	url := startNATS(t)
	addrs := runNodes(t, 2, []string{"--auto-id", "--max-history-bytes", "64KB"}, "TINYSSE_NATS="+url)
	live := openStream(t, addrs[1], "/sse?topic=live")
	live.readUntil(t, ": ok\n\n")
	data := strings.Repeat("c", 8<<10)
	var liveIDs []string
	for i := range 40 {
		topic := "live"
		if i%2 == 1 {
			topic = fmt.Sprintf("other-%d", i)
		}
		a := request(t, http.MethodPost, "http://"+addrs[0]+"/sse?topic="+topic, `{"data":"`+data+`"}`)
		if a.status != http.StatusAccepted {
			t.Fatalf("publish %d: %d %s", i, a.status, a.body)
		}
		if topic == "live" {
			e := live.next(t)
			if e.data != data {
				t.Fatalf("live reader, message %d: %.40q", i, e.data)
			}
			liveIDs = append(liveIDs, e.id)
		}
	}
	for i, addr := range addrs {
		body := get(t, "http://"+addr+"/metrics").body
		held, evicted := metricValue(t, body, "tinysse_history_bytes"), metricValue(t, body, "tinysse_history_evicted_total")
		if held > 64<<10 || evicted < 20 {
			t.Errorf("node %d: %.0f bytes held (budget 64 KiB), %.0f evicted", i+1, held, evicted)
		}
	}
	// The first live message is long gone from node 2's rings; the stream
	// still has it and everything after.
	back := openStream(t, addrs[1], "/sse?topic=live&last_event_id="+liveIDs[0])
	back.readUntil(t, ": ok\n\n")
	if f := back.readUntil(t, "\n\n"); f != "id: "+liveIDs[1]+"\ndata: "+data+"\n\n" {
		t.Fatalf("first frame after the reconnect: %.60q, want the message after %s (no gap)", f, liveIDs[0])
	}
	for _, id := range liveIDs[2:] {
		if e := back.next(t); e.id != id || e.data != data {
			t.Fatalf("replay: got id %q, want %q", e.id, id)
		}
	}
}
