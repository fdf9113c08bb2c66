package transport

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/valyala/fasthttp"
)

// The body limit (--max-body-size) against a client that announces a body
// and waits to be invited (Expect: 100-continue), and against a chunked
// body that grows past it.

// readAll reads what the server sends on c until it closes the connection
// (bounded by wait).
func readAll(t *testing.T, c io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(c)
	if err != nil && !isClosed(err) {
		t.Fatalf("reading until close: %v (read %q)", err, b)
	}
	return string(b)
}

// TestExpectContinue: a body announced larger than the limit is answered
// 413 (JSON) without first inviting it with 100 Continue, and the
// connection is closed; a body within the limit is invited and published;
// a chunked body (its size unknown) is invited, and refused with 413 as
// soon as it grows past the limit. Each 413 counts as too_large.
//
// HTTP/1.1 only: Content-Length, chunks and 100 Continue are HTTP/1.1's
// framing; over HTTP/2 see TestH2BodyLimit.
func TestExpectContinue(t *testing.T) {
	t.Parallel()
	const limit = 1024
	addr, eng, srv := startServer(t, engine.Config{}, Config{MaxBodySize: limit})
	sub := subscribed(t, eng, subscribe(t, addr, "/sse"), "", 1)
	head := "POST /sse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"

	t.Run("announced too large", func(t *testing.T) {
		sub := sub.on(t)
		for _, n := range []int{limit + 1, 10 << 20, 1 << 30} {
			c := dial(t, addr)
			_ = c.SetDeadline(time.Now().Add(wait))
			writeString(t, c, head+fmt.Sprintf("Content-Length: %d\r\n\r\n", n)) // and wait, as the client does
			got := readAll(t, c)
			if strings.Contains(got, "100 Continue") {
				t.Fatalf("Content-Length %d: the server invited the body: %q", n, got)
			}
			a := readAnswer(t, bufio.NewReader(strings.NewReader(got)))
			wantError(t, a, http.StatusRequestEntityTooLarge)
			if !strings.Contains(got, "\r\nConnection: close\r\n") { // and it did: readAll read to the end
				t.Errorf("Content-Length %d: no Connection: close in %q", n, got)
			}
		}
		checkNothingPublished(t, addr, sub, 3000)
	})

	t.Run("within the limit", func(t *testing.T) {
		sub := sub.on(t)
		body := `{"data":"invited"}`
		c := dial(t, addr)
		_ = c.SetDeadline(time.Now().Add(wait))
		writeString(t, c, head+fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)))
		br := bufio.NewReader(c)
		line, err := br.ReadString('\n')
		if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
			t.Fatalf("first line %q (%v), want the 100 Continue", line, err)
		}
		if blank, _ := br.ReadString('\n'); blank != "\r\n" {
			t.Fatalf("after 100 Continue: %q", blank)
		}
		writeString(t, c, body)
		if a := readAnswer(t, br); a.Status != http.StatusAccepted {
			t.Fatalf("status %d %s, want 202", a.Status, a.Body)
		}
		sub.expectLines("data: invited")
	})

	t.Run("chunked past the limit", func(t *testing.T) {
		sub := sub.on(t)
		c := dial(t, addr)
		_ = c.SetDeadline(time.Now().Add(wait))
		writeString(t, c, head+"Transfer-Encoding: chunked\r\n\r\n")
		br := bufio.NewReader(c)
		if line, _ := br.ReadString('\n'); line != "HTTP/1.1 100 Continue\r\n" {
			t.Fatalf("first line %q, want the 100 Continue (the size is not known yet)", line)
		}
		_, _ = br.ReadString('\n')
		chunk := strings.Repeat("z", 600)
		writeString(t, c, fmt.Sprintf("9\r\n{\"data\":\"\r\n%x\r\n%s\r\n%x\r\n%s\r\n", len(chunk), chunk, len(chunk), chunk))
		wantError(t, readAnswer(t, br), http.StatusRequestEntityTooLarge)
		checkNothingPublished(t, addr, sub, 3001)
	})

	// Two announced, one chunked; the invited one was published.
	if got := srv.Stats().PublishRejected; got != [rejectReasons]uint64{RejectTooLarge: 4} {
		t.Errorf("publishes refused %v, want 4 too_large (3 announced, 1 chunked)", got)
	}
}

// TestChunkedTooLargeCounted: a chunked body that grows past the limit is
// counted as too_large like an announced one, and only when it was a
// publish: a chunked body too large for another path is not a publish.
//
// HTTP/1.1 only (chunked framing); TestH2BodyLimit counts HTTP/2's.
func TestChunkedTooLargeCounted(t *testing.T) {
	t.Parallel()
	const limit = 1024
	addr, eng, srv := startServer(t, engine.Config{}, Config{MaxBodySize: limit})
	sub := subscribed(t, eng, subscribe(t, addr, "/sse"), "", 1)
	chunked := func(target string, sizes ...int) answer {
		var b strings.Builder
		fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n", target)
		for _, n := range sizes {
			fmt.Fprintf(&b, "%x\r\n%s\r\n", n, strings.Repeat("c", n))
		}
		b.WriteString("0\r\n\r\n")
		return rawExchange(t, addr, b.String())
	}
	wantError(t, chunked("/sse", 700, 700), http.StatusRequestEntityTooLarge)
	wantError(t, chunked("/sse?topic=a", limit+1), http.StatusRequestEntityTooLarge)
	wantError(t, chunked("/sse", 1, 1, 1, limit), http.StatusRequestEntityTooLarge)
	// A chunk that announces more than the limit is refused from its size.
	wantError(t, rawExchange(t, addr, "POST /sse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"fffffff\r\n"), http.StatusRequestEntityTooLarge)
	// Not publishes: a chunked body too large for another path.
	wantError(t, chunked("/elsewhere", 2000), http.StatusRequestEntityTooLarge)
	// A chunked publish within the limit is published, and one that fails
	// otherwise is counted as what it is.
	if a := chunked2(t, addr, `{"data":"chunked"}`); a.Status != http.StatusAccepted {
		t.Fatalf("chunked publish within the limit: %d %s", a.Status, a.Body)
	}
	sub.expectLines("data: chunked")
	wantError(t, chunked2(t, addr, `{"data":`), http.StatusBadRequest)
	if got := srv.Stats().PublishRejected; got != [rejectReasons]uint64{RejectTooLarge: 4, RejectBadRequest: 1} {
		t.Errorf("publishes refused %v, want 4 too_large and 1 bad_request", got)
	}
}

// chunked2 publishes body in two chunks.
func chunked2(t *testing.T, addr, body string) answer {
	t.Helper()
	h := len(body) / 2
	return rawExchange(t, addr, "POST /sse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"+
		fmt.Sprintf("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", h, body[:h], len(body)-h, body[h:]))
}

// TestExpectContinueCurl: curl, which sends Expect: 100-continue for a big
// body and waits for the invitation, gets the 413 at once and never a 100
// Continue; a body within the limit goes through the invitation.
//
// HTTP/1.1 only: curl sends Expect over HTTP/1.1.
func TestExpectContinueCurl(t *testing.T) {
	t.Parallel()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is not installed (apt-get install curl; .ci/run installs it)")
	}
	addr, _, srv := startServer(t, engine.Config{}, Config{MaxBodySize: 64 << 10})
	dir := t.TempDir()
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, []byte(`{"data":"`+strings.Repeat("b", 2<<20)+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(dir, "small.json")
	if err := os.WriteFile(small, []byte(`{"data":"`+strings.Repeat("s", 2000)+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(file string, extra ...string) (status, verbose, body string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		args := append([]string{"-sS", "-v", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}",
			"-H", "Content-Type: application/json", "--data-binary", "@" + file}, extra...)
		cmd := exec.Command(curl, append(args, "http://"+addr+"/sse")...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("curl: %v\n%s", err, stderr.String())
		}
		out := stdout.String()
		i := strings.LastIndexByte(out, '\n')
		return out[i+1:], stderr.String(), out[:i]
	}
	for _, extra := range [][]string{nil, {"-H", "Expect: 100-continue"}} {
		start := time.Now()
		status, verbose, body := run(big, extra...)
		took := time.Since(start)
		if !strings.Contains(verbose, "> Expect: 100-continue") {
			t.Fatalf("curl %q did not send Expect: 100-continue:\n%s", extra, verbose)
		}
		if status != "413" || !strings.HasPrefix(body, `{"error":`) {
			t.Errorf("curl %q: %s %q, want 413 and a JSON error", extra, status, body)
		}
		if strings.Contains(verbose, "100 Continue") {
			t.Errorf("curl %q was invited to send the body:\n%s", extra, verbose)
		}
		// curl sends the body anyway after waiting a second for an answer
		// (--expect100-timeout): an answer that comes first came at once.
		t.Logf("curl %q: %s in %v", extra, status, took)
	}
	status, verbose, body := run(small, "-H", "Expect: 100-continue")
	if status != "202" || !strings.Contains(verbose, "< HTTP/1.1 100 Continue") {
		t.Errorf("curl with a body within the limit: %s %q, want 202 after a 100 Continue:\n%s", status, body, verbose)
	}
	if got := srv.Stats().PublishRejected[RejectTooLarge]; got != 2 {
		t.Errorf("too_large %d, want 2", got)
	}
}

// TestChunkedMarksBounded: the marks of chunked publishes whose client
// left between two chunks (fasthttp then calls neither the handler nor
// the error handler) do not make a later request's 413 a publish's, and
// do not pile up: marks of requests no longer alive are swept.
//
// HTTP/1.1 only: the marks are fasthttp's chunked requests'.
func TestChunkedMarksBounded(t *testing.T) {
	t.Parallel()
	addr, _, srv := startServer(t, engine.Config{}, Config{MaxBodySize: 1024})
	for range 20 {
		c := dial(t, addr)
		writeString(t, c, "POST /sse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"dat\r\n")
		c.Close()
		waitFor(t, wait, "the server to see the client leave", func() bool { return srv.OpenConns() == 0 })
		a := rawExchange(t, addr, "POST /elsewhere HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n"+strings.Repeat("e", 2000)+"\r\n0\r\n\r\n")
		wantError(t, a, http.StatusRequestEntityTooLarge)
		waitFor(t, wait, "the server to close", func() bool { return srv.OpenConns() == 0 })
	}
	if got := srv.Stats().PublishRejected[RejectTooLarge]; got != 0 {
		t.Errorf("too_large %d after 413s for another path, want 0", got)
	}

	// Rounds of marks whose requests are dropped, with a collection between
	// rounds: the count stays within a few rounds' worth however many
	// rounds go by (without the sweep it would be all of them).
	var c chunkedHeads
	const rounds, perRound = 10, 3 * chunkedSweepMin
	most := int64(0)
	for range rounds {
		for range perRound {
			c.add(new(fasthttp.RequestHeader))
			most = max(most, c.n.Load())
		}
		runtime.GC()
	}
	t.Logf("most marks kept: %d", most)
	if most > 3*perRound {
		t.Errorf("%d marks kept at most over %d rounds of %d dead ones, want at most %d", most, rounds, perRound, 3*perRound)
	}
	live := make([]*fasthttp.RequestHeader, 3*chunkedSweepMin)
	for i := range live {
		live[i] = new(fasthttp.RequestHeader)
		c.add(live[i])
	}
	for _, h := range live {
		if !c.take(h) {
			t.Fatal("a live request's mark was swept")
		}
	}
}
