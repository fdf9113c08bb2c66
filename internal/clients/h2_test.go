package clients

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/browser"
	"github.com/tinysse/tinysse/internal/testcert"
	"github.com/tinysse/tinysse/internal/testserver/inproc"
	"github.com/tinysse/tinysse/transport"
)

// Why tinysse speaks HTTP/2: a browser opens at most six HTTP/1.1
// connections to one origin, and an EventSource holds one for its life, so
// a page (or the tabs of one site) with a seventh stream waits without an
// error. Over HTTP/2 every stream of the origin shares one connection.

// manyPage opens one EventSource per topic parameter and records, per
// topic, whether it opened and the data of what it got.
const manyPage = `<!doctype html><meta charset="utf-8"><title>many</title><script>
window.streams = {};
for (const topic of new URLSearchParams(location.search).getAll('topic')) {
  const st = window.streams[topic] = {open: false, data: [], errors: 0};
  const es = new EventSource('/sse?topic=' + encodeURIComponent(topic));
  es.onopen = () => { st.open = true; };
  es.onerror = () => { st.errors++; };
  es.onmessage = (e) => { st.data.push(e.data); };
}
</script>`

type pageStream struct {
	Open   bool     `json:"open"`
	Data   []string `json:"data"`
	Errors int      `json:"errors"`
}

// manyServer is tinysse serving manyPage from its static directory, over
// HTTPS (with a self-signed certificate) or plain HTTP.
type manyServer struct {
	addr string
	eng  *engine.Engine
	srv  *transport.Server
	cert *testcert.Cert // nil: plain HTTP
}

func startManyServer(t *testing.T, useTLS bool) *manyServer {
	t.Helper()
	s := &manyServer{}
	static := t.TempDir()
	if err := os.WriteFile(filepath.Join(static, "many.html"), []byte(manyPage), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := transport.Config{StaticDir: static}
	if useTLS {
		s.cert = testcert.New(t)
		cfg.TLS = s.cert.Server(t)
	}
	is := inproc.Start(t, inproc.Config{Transport: cfg})
	s.addr, s.eng, s.srv = is.Addr, is.Engine, is.Transport
	return s
}

func (s *manyServer) url(path string) string {
	if s.cert != nil {
		return "https://" + s.addr + path
	}
	return "http://" + s.addr + path
}

// publish posts data to topic over HTTP/1.1 from Go (TLS trusting the
// test certificate).
func (s *manyServer) publish(t *testing.T, topic, data string) {
	t.Helper()
	tr := &http.Transport{}
	if s.cert != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: s.cert.Pool, ServerName: "127.0.0.1"}
	}
	defer tr.CloseIdleConnections()
	body, _ := json.Marshal(map[string]string{"data": data})
	resp, err := (&http.Client{Transport: tr, Timeout: wait}).Post(s.url("/sse?topic="+topic), "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish to %s: %d", topic, resp.StatusCode)
	}
}

// openMany loads manyPage with n topics in Chromium and returns a function
// that reads the page's streams.
func openMany(t *testing.T, s *manyServer, n int) (topics []string, read func() map[string]pageStream) {
	t.Helper()
	var opts []chromedp.ExecAllocatorOption
	if s.cert != nil {
		opts = append(opts, browser.TrustSPKI(t, s.cert.CertPEM))
	}
	ctx := browser.New(t, 2*time.Minute, opts...)
	q := make([]string, n)
	for i := range q {
		topics = append(topics, fmt.Sprintf("t%02d", i))
		q[i] = "topic=" + topics[i]
	}
	if err := chromedp.Run(ctx, chromedp.Navigate(s.url("/many.html?"+strings.Join(q, "&")))); err != nil {
		t.Fatal(err)
	}
	return topics, func() map[string]pageStream {
		var got map[string]pageStream
		if err := chromedp.Run(ctx, chromedp.Evaluate(`window.streams`, &got)); err != nil {
			t.Fatalf("reading the page: %v", err)
		}
		return got
	}
}

// openCount is how many of the page's streams have opened.
func openCount(streams map[string]pageStream) int {
	n := 0
	for _, st := range streams {
		if st.Open {
			n++
		}
	}
	return n
}

// TestChromiumManyStreamsHTTP2: a page from tinysse's static files over
// HTTPS opens 20 EventSources to 20 topics on its own origin: Chromium
// speaks HTTP/2 (ALPN), all 20 open multiplexed over one connection (at
// most two), and each gets
// exactly the message published to its topic.
func TestChromiumManyStreamsHTTP2(t *testing.T) {
	if browser.Path() == "" {
		t.Skip("no Chromium: install Debian's chromium (apt-get install chromium) or set TINYSSE_CHROMIUM")
	}
	s := startManyServer(t, true)
	topics, read := openMany(t, s, 20)
	waitFor(t, "20 streams open", func() bool { return openCount(read()) == 20 })
	// Usually one connection; Chromium sometimes opens a second to the
	// same origin (seen once on a loaded machine: the page's connection
	// was still settling when the scripts' requests began). Either way
	// the 20 streams are multiplexed, past HTTP/1.1's 6 per origin.
	if st := s.srv.Stats(); st.H2Streams != 20 || st.H2Conns < 1 || st.H2Conns > 2 {
		t.Errorf("server: %d HTTP/2 streams on %d HTTP/2 connections, want 20 on 1 (or 2)", st.H2Streams, st.H2Conns)
	}
	for _, topic := range topics {
		s.publish(t, topic, "for "+topic)
	}
	waitFor(t, "a message on every stream", func() bool {
		for _, st := range read() {
			if len(st.Data) == 0 {
				return false
			}
		}
		return true
	})
	for topic, st := range read() {
		if len(st.Data) != 1 || st.Data[0] != "for "+topic || st.Errors != 0 {
			t.Errorf("stream %s got %q with %d errors, want only %q", topic, st.Data, st.Errors, "for "+topic)
		}
	}
}

// TestChromiumSixStreamsHTTP1 is the reason for TestChromiumManyStreamsHTTP2,
// kept as a test so that it stays visible: the same page over plain HTTP
// (browsers speak HTTP/2 only over TLS) gets six streams open, the other
// fourteen wait for a connection, and their messages never come.
func TestChromiumSixStreamsHTTP1(t *testing.T) {
	if browser.Path() == "" {
		t.Skip("no Chromium: install Debian's chromium (apt-get install chromium) or set TINYSSE_CHROMIUM")
	}
	s := startManyServer(t, false)
	topics, read := openMany(t, s, 20)
	waitFor(t, "6 streams open", func() bool { return openCount(read()) == 6 })
	time.Sleep(2 * time.Second) // time enough for a seventh, if there were one
	if n := openCount(read()); n != 6 {
		t.Fatalf("%d streams open over HTTP/1.1, want Chromium's 6 per origin", n)
	}
	if n := s.eng.Stats().Subscribers; n != 6 {
		t.Errorf("the server has %d subscribers, want 6", n)
	}
	if st := s.srv.Stats(); st.H2Conns != 0 {
		t.Errorf("%d HTTP/2 connections over plain HTTP", st.H2Conns)
	}
	for _, topic := range topics {
		s.publish(t, topic, "for "+topic)
	}
	waitFor(t, "the open streams' messages", func() bool {
		got := 0
		for _, st := range read() {
			got += len(st.Data)
		}
		return got == 6
	})
	for topic, st := range read() {
		if st.Open != (len(st.Data) == 1) {
			t.Errorf("stream %s: open %v, got %q", topic, st.Open, st.Data)
		}
	}
}
