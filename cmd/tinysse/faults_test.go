package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tinysse/tinysse/internal/testserver"
)

// Faults, with the built binary as a user runs it: SIGTERM under load,
// logs and prints to a full disk, a static directory that goes away, and
// a small open-file limit.

// buildBinary is the command, built once for the package's tests.
func buildBinary(t *testing.T) string { return testserver.Binary(t) }

// freeAddr returns a loopback address with a port nobody listens on now.
func freeAddr(t *testing.T) string { return testserver.FreeAddr(t) }

// process is the binary running as a child of the test.
type process = testserver.Process

// startProcess runs name with args (which must listen on addr), with the
// given stdout and stderr, and waits until addr accepts connections.
func startProcess(t *testing.T, addr string, stdout, stderr io.Writer, name string, args ...string) *process {
	t.Helper()
	return testserver.StartProcess(t, addr, stdout, stderr, name, args...)
}

// keepPublishing runs n publishers, each calling publish(w, i) with its
// number w and i = 0, 1, ... until publish returns false or stop is
// called; stop waits for them all.
func keepPublishing(n int, publish func(w, i int) bool) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				if !publish(w, i) {
					return
				}
			}
		}()
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

// rawPublish sends one publish on a new connection and returns when the
// request was written and the status answered (0 with err if none).
func rawPublish(addr, body string) (written time.Time, status int, err error) {
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		return time.Time{}, 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * wait))
	req := fmt.Sprintf("POST /sse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	if _, err := io.WriteString(c, req); err != nil {
		return time.Time{}, 0, err
	}
	written = time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return written, 0, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted && (resp.Header.Get("Content-Type") != "application/json" || !strings.HasPrefix(string(b), `{"error":`)) {
		return written, resp.StatusCode, fmt.Errorf("status %d with body %q", resp.StatusCode, b)
	}
	return written, resp.StatusCode, nil
}

// TestSIGTERMUnderLoad: SIGTERM while publishers hammer the server and 50
// subscribers read. Every publish received well before the signal is
// answered 202, every answer is 202 or a JSON error; every subscriber gets
// a retry hint and a clean close; unsubscribe runs once for each; the
// process exits 0 within --shutdown-timeout.
func TestSIGTERMUnderLoad(t *testing.T) {
	bin := buildBinary(t)
	script := filepath.Join(t.TempDir(), "unsub.lua")
	if err := os.WriteFile(script, []byte(`function unsubscribe(sub) print("unsubscribe " .. sub.req.query) end`), 0o644); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	addr := freeAddr(t)
	const shutdownTimeout = 5 * time.Second
	p := startProcess(t, addr, &out, io.Discard, bin, "--listen", addr, "--script", script,
		"--shutdown-timeout", shutdownTimeout.String(), "--timeout-retry", "300ms", "--keep-alive", "0")

	const subscribers = 50
	streams := make([]*stream, subscribers)
	for i := range streams {
		streams[i] = openStream(t, addr, fmt.Sprintf("/sse?s%d", i))
		streams[i].readUntil(t, ": ok\n\n")
	}

	type outcome struct {
		written time.Time
		status  int
		err     error
	}
	var mu sync.Mutex
	var outcomes []outcome
	stopPublishing := keepPublishing(4, func(w, n int) bool {
		written, status, err := rawPublish(addr, fmt.Sprintf(`{"id":"%d-%d","data":"load"}`, w, n))
		mu.Lock()
		outcomes = append(outcomes, outcome{written, status, err})
		mu.Unlock()
		if written.IsZero() && err != nil {
			time.Sleep(5 * time.Millisecond) // refused: the listener is gone
		}
		return true
	})
	// Subscribers drain their streams meanwhile; each keeps its last block.
	lastBlocks := make([]string, subscribers)
	closedClean := make([]bool, subscribers)
	var readers sync.WaitGroup
	for i, s := range streams {
		readers.Add(1)
		go func() {
			defer readers.Done()
			_ = s.conn.SetReadDeadline(time.Now().Add(shutdownTimeout + 3*wait))
			br := bufio.NewReader(io.MultiReader(strings.NewReader(string(s.got)), s.conn))
			var block strings.Builder
			for {
				line, err := br.ReadString('\n')
				block.WriteString(line)
				if line == "\n" {
					lastBlocks[i] = block.String()
					block.Reset()
				}
				if err != nil {
					closedClean[i] = err == io.EOF && block.Len() == 0
					return
				}
			}
		}()
	}

	time.Sleep(500 * time.Millisecond)
	signalled := time.Now()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done, err := p.ExitedWithin(shutdownTimeout + wait)
	exitTook := time.Since(signalled)
	stopPublishing()
	readers.Wait()
	if !done {
		t.Fatal("the process did not exit after SIGTERM")
	}
	if err != nil {
		t.Errorf("exit: %v, want status 0", err)
	}
	if exitTook > shutdownTimeout {
		t.Errorf("exit took %v, more than --shutdown-timeout %v", exitTook, shutdownTimeout)
	}

	retry := regexp.MustCompile(`^: [^\n]*\nretry: \d+\n\n$`)
	for i := range streams {
		if !retry.MatchString(lastBlocks[i]) || !closedClean[i] {
			t.Errorf("subscriber %d: last block %q, clean close %v; want a retry hint, then the end of the stream", i, lastBlocks[i], closedClean[i])
		}
	}
	unsub := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if q, ok := strings.CutPrefix(l, "unsubscribe "); ok {
			unsub[q]++
		}
	}
	for i := range subscribers {
		if n := unsub[fmt.Sprintf("s%d", i)]; n != 1 {
			t.Errorf("unsubscribe ran %d times for subscriber %d, want once", n, i)
		}
	}

	var accepted, refused, cut, early int
	for _, o := range outcomes {
		switch {
		case o.status == http.StatusAccepted:
			accepted++
		case o.status != 0:
			refused++
		case !o.written.IsZero():
			cut++
		}
		if !o.written.IsZero() && o.written.Before(signalled.Add(-100*time.Millisecond)) && o.status != http.StatusAccepted {
			early++
			t.Errorf("a publish written %v before SIGTERM got %d %v", signalled.Sub(o.written), o.status, o.err)
		}
		if o.status != 0 && o.err != nil {
			t.Errorf("publish answered badly: %v", o.err)
		}
	}
	t.Logf("SIGTERM under load: exit 0 after %v; publishes: %d accepted, %d refused with a JSON error, %d cut after being written (at the signal), %d written before it unanswered; %d subscribers closed with a retry hint, unsubscribe once each",
		exitTook.Round(time.Millisecond), accepted, refused, cut, early, subscribers)
	if accepted == 0 {
		t.Error("no publish was accepted: there was no load")
	}
}

// TestFullDiskAndStaticDirGone: with standard output and error on a full
// device (every log line and print fails with ENOSPC) and the static
// directory removed while serving, publishing and streaming go on.
func TestFullDiskAndStaticDirGone(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	if _, err := full.Write([]byte("x")); err == nil {
		t.Skip("/dev/full accepts writes here")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	static := filepath.Join(dir, "static")
	if err := os.Mkdir(static, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(static, "index.html"), []byte("<p>hello</p>"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(static, 0o555); err != nil { // read-only (root may write anyway)
		t.Fatal(err)
	}
	script := filepath.Join(dir, "print.lua")
	if err := os.WriteFile(script, []byte("function publish(pub) print(\"published\", pub.msg.data) return pub end\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	startProcess(t, addr, full, full, bin, "--listen", addr, "--log-level", "TRACE", "--script", script,
		"--serve-static-dir", static, "--serve-static-path", "/static")

	sub := openStream(t, addr, "/sse")
	sub.readUntil(t, ": ok\n\n")
	if a := request(t, http.MethodGet, "http://"+addr+"/static/", ""); a.status != http.StatusOK || a.body != "<p>hello</p>" {
		t.Fatalf("static: %d %q", a.status, a.body)
	}
	for i := range 50 {
		if a := request(t, http.MethodPost, "http://"+addr+"/sse", fmt.Sprintf(`{"id":"%d","data":"to a full disk"}`, i)); a.status != http.StatusAccepted {
			t.Fatalf("publish %d: %d %s", i, a.status, a.body)
		}
		sub.readUntil(t, fmt.Sprintf("id: %d\ndata: to a full disk\n\n", i))
	}
	entries, _ := os.ReadDir(static)
	if len(entries) != 1 {
		t.Errorf("the server wrote into the static directory: %v", entries)
	}

	_ = os.Chmod(static, 0o755)
	if err := os.RemoveAll(static); err != nil {
		t.Fatal(err)
	}
	a := request(t, http.MethodGet, "http://"+addr+"/static/index.html", "")
	if a.status != http.StatusNotFound || !strings.HasPrefix(a.body, `{"error":`) {
		t.Errorf("static file after its directory went: %d %q, want a JSON 404", a.status, a.body)
	}
	if a := request(t, http.MethodPost, "http://"+addr+"/sse", `{"id":"last","data":"still streaming"}`); a.status != http.StatusAccepted {
		t.Fatalf("publish after the directory went: %d %s", a.status, a.body)
	}
	sub.readUntil(t, "id: last\ndata: still streaming\n\n")
	late := openStream(t, addr, "/sse")
	late.readUntil(t, ": ok\n\n")
}

// TestDescriptorLimit: under an open-file limit of 256 the server keeps
// its connections below it (256-128); beyond, clients get a fast JSON 503
// and the server never stops accepting; streams already open go on, and
// slots come back as clients leave.
func TestDescriptorLimit(t *testing.T) {
	bin := buildBinary(t)
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to set the limit with")
	}
	var logs syncBuffer
	addr := freeAddr(t)
	startProcess(t, addr, io.Discard, &logs, sh, "-c", `ulimit -n 256 && exec "$0" "$@"`, bin, "--listen", addr)

	var open []*stream
	refused := 0
	for range 140 {
		c, err := net.DialTimeout("tcp", addr, wait)
		if err != nil {
			t.Fatalf("dial: %v (the server stopped accepting)", err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(wait))
		fmt.Fprintf(c, "GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		if resp.StatusCode == http.StatusServiceUnavailable {
			b, _ := io.ReadAll(resp.Body)
			if !strings.HasPrefix(string(b), `{"error":`) {
				t.Errorf("503 body %q", b)
			}
			refused++
			c.Close()
			continue
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("subscribe: %d", resp.StatusCode)
		}
		s := &stream{conn: c}
		if n := br.Buffered(); n > 0 {
			s.got, _ = br.Peek(n)
			s.got = append([]byte(nil), s.got...)
		}
		s.readUntil(t, ": ok\n\n")
		open = append(open, s)
	}
	t.Logf("open-file limit 256: %d streams open, %d clients refused with 503", len(open), refused)
	if len(open) != 128 || refused != 12 {
		t.Errorf("%d open and %d refused, want 128 and 12 (the limit less 128)", len(open), refused)
	}
	// A publisher at the limit is refused too, before it has sent anything
	// (so read the answer on a bare connection: an HTTP client would call
	// it unsolicited).
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatalf("dial at the limit: %v (the server stopped accepting)", err)
	}
	_ = c.SetDeadline(time.Now().Add(wait))
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a connection at the limit: %v %v, want 503", resp, err)
	}
	c.Close()
	for _, s := range open[:20] {
		s.conn.Close()
	}
	var a reply
	deadline := time.Now().Add(wait)
	for a.status != http.StatusAccepted && time.Now().Before(deadline) {
		a = request(t, http.MethodPost, "http://"+addr+"/sse", `{"id":"after","data":"slots back"}`)
	}
	if a.status != http.StatusAccepted {
		t.Fatalf("publish after 20 clients left: %d %s", a.status, a.body)
	}
	for _, s := range open[20:] {
		s.readUntil(t, "id: after\ndata: slots back\n\n")
	}
	if strings.Contains(strings.ToLower(logs.String()), "too many open files") {
		t.Errorf("the server ran out of descriptors:\n%s", logs.String())
	}
}
