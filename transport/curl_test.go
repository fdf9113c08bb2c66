package transport

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
)

// TestCurlHTTP2: curl, a real HTTP/2 client, over TLS (--http2: ALPN) and
// over cleartext (--http2-prior-knowledge): it streams, publishes and is
// replayed what it missed, and says each exchange was HTTP/2.
func TestCurlHTTP2(t *testing.T) {
	t.Parallel()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is not installed (apt-get install curl; .ci/run installs it)")
	}
	certFile := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(certFile, sharedCert().CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		p    proto
		args []string
	}{
		{h2tls, []string{"--http2", "--cacert", certFile}},
		{h2c, []string{"--http2-prior-knowledge"}},
	} {
		t.Run(c.p.name, func(t *testing.T) {
			t.Parallel()
			addr, eng, _ := c.p.startServer(t, engine.Config{}, Config{})
			url := c.p.url(addr, "/sse?topic=curl")
			publish := func(id, data string) {
				t.Helper()
				args := append([]string{"-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code} %{http_version}",
					"-H", "Content-Type: application/json", "--data-binary", `{"id":"` + id + `","data":"` + data + `"}`}, c.args...)
				out, err := exec.Command(curl, append(args, url)...).CombinedOutput()
				if err != nil {
					t.Fatalf("curl publish: %v\n%s", err, out)
				}
				body, tail, _ := strings.Cut(string(out), "\n")
				if tail != "202 2" || !strings.HasPrefix(body, `{"queued":`) {
					t.Fatalf("curl publish: %q, want 202 over HTTP/2 and the JSON answer", out)
				}
			}
			// stream starts curl -N on url with extra arguments and returns
			// its output, line by line.
			stream := func(extra ...string) <-chan string {
				t.Helper()
				ctx, cancel := context.WithCancel(context.Background())
				args := append([]string{"-sS", "-N", "-v", "--max-time", "30"}, c.args...)
				cmd := exec.CommandContext(ctx, curl, append(append(args, extra...), url)...)
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				stdout, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				lines := make(chan string, 64)
				go func() {
					defer close(lines)
					sc := bufio.NewScanner(stdout)
					for sc.Scan() {
						lines <- sc.Text()
					}
				}()
				t.Cleanup(func() {
					cancel() // kills only the curl this test started
					_ = cmd.Wait()
					if !strings.Contains(stderr.String(), "< HTTP/2 200") {
						t.Errorf("curl's stream was not HTTP/2:\n%s", stderr.String())
					}
				})
				return lines
			}
			expect := func(lines <-chan string, want ...string) {
				t.Helper()
				for _, w := range want {
					select {
					case l, ok := <-lines:
						if !ok {
							t.Fatalf("stream ended, want %q", w)
						}
						if l != w {
							t.Fatalf("got %q, want %q", l, w)
						}
					case <-time.After(wait):
						t.Fatalf("nothing for %v, want %q", wait, w)
					}
				}
			}

			live := stream()
			expect(live, ": ok", "")
			waitSubscribers(t, eng, "curl", 1)
			publish("1", "one")
			expect(live, "id: 1", "data: one", "")
			publish("2", "two")
			publish("3", "three")
			expect(live, "id: 2", "data: two", "", "id: 3", "data: three", "")

			// Back with the id it saw first: replayed what came after.
			again := stream("-H", "Last-Event-ID: 1")
			expect(again, ": ok", "", "id: 2", "data: two", "", "id: 3", "data: three", "")
			publish("4", "four")
			expect(again, "id: 4", "data: four", "")
			expect(live, "id: 4", "data: four", "")
		})
	}
}
