package main

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tinysse/tinysse/internal/testcert"
	"golang.org/x/net/http2"
)

// h2Client speaks HTTP/2 only: with prior knowledge on plain connections
// (h2c), through ALPN on TLS ones trusting cert.
func h2Client(cert *testcert.Cert) *http.Client {
	var ps http.Protocols
	ps.SetUnencryptedHTTP2(true)
	ps.SetHTTP2(true)
	tr := &http.Transport{Protocols: &ps}
	if cert != nil {
		tr.TLSClientConfig = cert.Client()
	}
	return &http.Client{Transport: tr, Timeout: wait}
}

// h2Stream opens a stream with c and reads its ": ok".
func h2Stream(t *testing.T, c *http.Client, url string) *bufio.Reader {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	c = &http.Client{Transport: c.Transport} // no timeout: a stream
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
		t.Fatalf("stream: %s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	if l, err := br.ReadString('\n'); err != nil || l != ": ok\n" {
		t.Fatalf("stream began with %q (%v)", l, err)
	}
	return br
}

func h2Publish(t *testing.T, c *http.Client, url, body string) {
	t.Helper()
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 202 {
		t.Fatalf("publish: %s %d, want HTTP/2 202", resp.Proto, resp.StatusCode)
	}
}

func readUntilLine(t *testing.T, br *bufio.Reader, want string) {
	t.Helper()
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream: %v, want %q", err, want)
		}
		if l == want {
			return
		}
	}
}

// TestRunHTTP2: with --tls-cert the server speaks HTTP/2 to clients that
// offer it, and HTTP/2 with prior knowledge on a plain listener unless
// --no-h2c (or TINYSSE_NO_H2C); --h2-max-streams is what the server
// announces; the metrics count the HTTP/2 connection and its stream.
func TestRunHTTP2(t *testing.T) {
	t.Run("tls", func(t *testing.T) {
		cert := testcert.New(t)
		certFile, keyFile := cert.Files(t, t.TempDir())
		addr, _, _ := runServer(t, []string{"--tls-cert", certFile, "--tls-key", keyFile})
		c := h2Client(cert)
		defer c.Transport.(*http.Transport).CloseIdleConnections()
		br := h2Stream(t, c, "https://"+addr+"/sse?topic=x")
		h2Publish(t, c, "https://"+addr+"/sse?topic=x", `{"data":"over h2"}`)
		readUntilLine(t, br, "data: over h2\n")
		resp, err := c.Get("https://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		found := 0
		for sc.Scan() {
			switch sc.Text() {
			case `tinysse_connections{protocol="h2"} 1`, `tinysse_streams{protocol="h2"} 1`:
				found++
			}
		}
		if found != 2 {
			t.Errorf("the metrics do not count one HTTP/2 connection and one HTTP/2 stream")
		}
	})
	t.Run("h2c", func(t *testing.T) {
		addr, _, _ := runServer(t, []string{"--h2-max-streams", "7"})
		c := h2Client(nil)
		defer c.Transport.(*http.Transport).CloseIdleConnections()
		br := h2Stream(t, c, "http://"+addr+"/sse")
		h2Publish(t, c, "http://"+addr+"/sse", `{"data":"over h2c"}`)
		readUntilLine(t, br, "data: over h2c\n")
		if n := maxStreams(t, addr); n != 7 {
			t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS %d, want 7", n)
		}
	})
	for _, off := range [][]string{{"--no-h2c"}, {"-", "TINYSSE_NO_H2C=true"}} {
		t.Run(strings.Join(off, " "), func(t *testing.T) {
			var addr string
			if off[0] == "-" {
				addr, _, _ = runServer(t, nil, off[1])
			} else {
				addr, _, _ = runServer(t, off)
			}
			c := h2Client(nil)
			defer c.Transport.(*http.Transport).CloseIdleConnections()
			if resp, err := c.Get("http://" + addr + "/healthz"); err == nil {
				resp.Body.Close()
				t.Fatalf("HTTP/2 with prior knowledge was served (%s %d)", resp.Proto, resp.StatusCode)
			}
			if r := get(t, "http://"+addr+"/healthz"); r.status != 200 {
				t.Errorf("HTTP/1.1: %d", r.status)
			}
		})
	}
}

// maxStreams reads the server's SETTINGS_MAX_CONCURRENT_STREAMS.
func maxStreams(t *testing.T, addr string) uint32 {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			v, _ := sf.Value(http2.SettingMaxConcurrentStreams)
			return v
		}
	}
}
