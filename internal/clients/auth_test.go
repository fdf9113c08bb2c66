package clients

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/tinysse/tinysse/auth"
	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/browser"
	"github.com/tinysse/tinysse/internal/testjwt"
	"github.com/tinysse/tinysse/transport"
)

const authSecret = "the clients' secret"

// authConfig is a transport checking HS256 tokens with authSecret, no
// leeway (the stream ends at exp itself).
func authConfig(t *testing.T, tcfg transport.Config) transport.Config {
	t.Helper()
	k, err := auth.SecretKey([]byte(authSecret))
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Config{Keys: []auth.Key{k}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	tcfg.Auth = a
	return tcfg
}

var everything = testjwt.Topics([]string{"*"}, []string{"*"})

// TestNodeEventSourceTokenExpiry: the npm eventsource package with a
// custom fetch that sends the current token as a header. The stream ends
// at the token's exp with a retry hint; the client, whose token was
// renewed meanwhile, comes back by itself after the hint with the new
// token and its Last-Event-ID, and gets every message once, the ones
// published while it was away included.
func TestNodeEventSourceTokenExpiry(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("no node: install Node.js 18 or later (apt-get install nodejs npm)")
	}
	if _, err := os.Stat(filepath.Join("node", "node_modules", "eventsource", "package.json")); err != nil {
		t.Skip("the npm eventsource package is not installed: run `npm ci` in internal/clients/node")
	}
	s := startServerWith(t, engine.Config{TimeoutRetry: retry}, authConfig(t, transport.Config{}))
	s.token = testjwt.HS256(t, authSecret, testjwt.Claims(time.Hour, everything))

	// Far enough for node to start and connect on a loaded machine.
	exp := time.Now().Add(6 * time.Second).Truncate(time.Second)
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeToken := func(tok string) {
		t.Helper()
		if err := os.WriteFile(tokenFile+".new", []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tokenFile+".new", tokenFile); err != nil { // never read half-written
			t.Fatal(err)
		}
	}
	writeToken(testjwt.HS256(t, authSecret, jwt.MapClaims{"exp": exp.Unix(), "tinysse": everything}))

	c := startNodeAt(t, s.url("/sse?topic=feed"), nil, "TINYSSE_TOKEN_FILE="+tokenFile)
	defer func() {
		if t.Failed() {
			t.Logf("the client reported %+v", c.records(t))
		}
	}()
	waitFor(t, "the client to subscribe", func() bool { return s.eng.Subscribers("feed") == 1 })
	pub := func(id string) { s.publish(t, map[string]string{"id": id, "data": "data of " + id, "topic": "feed"}) }
	pub("e1")
	pub("e2")
	waitEvents(t, c, 2)
	writeToken(testjwt.HS256(t, authSecret, testjwt.Claims(time.Hour, everything))) // renewed before exp

	waitFor(t, "the end of the stream at exp", func() bool { _, u := s.visits(); return len(u) >= 1 })
	if _, u := s.visits(); u[0].Before(exp) {
		t.Errorf("the stream ended %v before exp", exp.Sub(u[0]))
	}
	if n := s.eng.Stats().Closed.Expired; n != 1 {
		t.Errorf("%d streams ended as expired, want 1", n)
	}
	pub("e3") // while the client waits out the retry hint
	pub("e4")
	checkReconnect(t, s, 1, "e2")
	waitEvents(t, c, 4)
	pub("e5")
	waitEvents(t, c, 5)
	time.Sleep(200 * time.Millisecond) // nothing more may come
	got := events(c.records(t))
	if want := []string{"e1", "e2", "e3", "e4", "e5"}; !slices.Equal(ids(got), want) {
		t.Fatalf("events %q, want each of %q exactly once", ids(got), want)
	}
	for _, r := range c.records(t) {
		if r.K == "error" && r.Type != "" {
			t.Errorf("the client reported %+v", r)
		}
	}
}

// TestChromiumEventSourceCookie: a page on one origin opens an
// EventSource on tinysse at another origin (another port of 127.0.0.1)
// with withCredentials, and the token travels in tinysse's cookie; with
// --cors-allow-credentials and that origin named, Chromium accepts the
// stream. The same EventSource without withCredentials sends no cookie
// and is refused (401): it fails for good.
func TestChromiumEventSourceCookie(t *testing.T) {
	if browser.Path() == "" {
		t.Skip("no Chromium: install Debian's chromium (apt-get install chromium) or set TINYSSE_CHROMIUM")
	}
	var pageHTML string
	pages := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, pageHTML)
	}))
	t.Cleanup(pages.Close)
	s := startServerWith(t, engine.Config{}, authConfig(t, transport.Config{
		AllowOrigin: pages.URL, AllowCredentials: true, AllowHeaders: "Last-Event-ID",
	}))
	s.token = testjwt.HS256(t, authSecret, testjwt.Claims(time.Hour, everything))
	reader := testjwt.HS256(t, authSecret, testjwt.Claims(time.Hour, testjwt.Topics(nil, []string{"feed"})))
	pageHTML = fmt.Sprintf(`<!doctype html><meta charset="utf-8"><title>cookie</title><script>
document.cookie = %q + "=" + %q + "; path=/; SameSite=Lax";
window.log = {creds: [], plain: []};
const open = (name, opts) => {
  const es = new EventSource(%q, opts);
  es.addEventListener("open", () => log[name].push({k: "open"}));
  es.addEventListener("error", () => { log[name].push({k: "error", state: es.readyState}); });
  es.addEventListener("message", (e) => log[name].push({k: "event", data: e.data, id: e.lastEventId}));
};
open("creds", {withCredentials: true});
open("plain", {});
</script>`, transport.DefaultTokenCookie, reader, s.url("/sse?topic=feed"))

	ctx := browser.New(t, 60*time.Second)
	if err := chromedp.Run(ctx, chromedp.Navigate(pages.URL+"/page.html")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the credentialed EventSource to subscribe", func() bool { return s.eng.Subscribers("feed") == 1 })
	s.publish(t, map[string]string{"id": "c1", "data": "through the cookie", "topic": "feed"})
	type entry struct {
		K     string `json:"k"`
		Data  string `json:"data"`
		ID    string `json:"id"`
		State int    `json:"state"`
	}
	var log struct{ Creds, Plain []entry }
	waitFor(t, "the event", func() bool {
		if err := chromedp.Run(ctx, chromedp.Evaluate(`window.log`, &log)); err != nil {
			t.Fatal(err)
		}
		return slices.Contains(log.Creds, entry{K: "event", Data: "through the cookie", ID: "c1"}) && len(log.Plain) > 0
	})
	if log.Creds[0].K != "open" {
		t.Errorf("credentialed EventSource: %+v", log.Creds)
	}
	// A non-200 answer fails an EventSource for good: readyState CLOSED (2).
	if log.Plain[0].K != "error" || log.Plain[0].State != 2 || slices.ContainsFunc(log.Plain, func(e entry) bool { return e.K == "event" }) {
		t.Errorf("EventSource without credentials: %+v, want one error and closed", log.Plain)
	}
	if n := s.eng.Subscribers("feed"); n != 1 {
		t.Errorf("%d subscribers of feed, want the credentialed one only", n)
	}
}
