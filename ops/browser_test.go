package ops_test

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/browser"
)

// TestDashboardInBrowser opens the dashboard in headless Chromium while
// publishers and subscribers are busy, publishes through its form, and
// checks that the message shows in the tail and the counters move. It
// saves a screenshot in the test's artifact directory (go test -artifacts)
// and, when TINYSSE_DASHBOARD_PNG names a file, there too (that is how
// docs/dashboard.png is made).
func TestDashboardInBrowser(t *testing.T) {
	ctx := browser.New(t, 60*time.Second)
	const src = `local uuid = require "uuid"
function subscribe(sub) sub.id = uuid(); return sub end
function publish(pub) return pub end
function message(pub, sub) return pub end`
	s := startEvery(t, src, engine.Config{Shards: 2, Capacity: 64}, 10, 250*time.Millisecond)

	// Some life: subscribers on a few topics and a publisher per topic.
	topics := map[string]int{"news": 12, "prices": 30, "chat/lobby": 5, "alerts": 2}
	for topic, n := range topics {
		for range n {
			s.subscribe(t, "/sse?topic="+topic)
		}
	}
	var sent atomic.Uint64 // publishes answered 202
	stopPublishers := publishers(t, s, &sent, "news", "prices", "chat/lobby", "alerts")
	defer stopPublishers()

	var status string
	err := chromedp.Run(ctx,
		chromedp.Navigate("http://"+s.addr+"/_tinysse/"),
		chromedp.WaitVisible("#status.on", chromedp.ByQuery),
		chromedp.Text("#status", &status, chromedp.ByQuery),
		chromedp.SetValue("#tail-topic", "news", chromedp.ByQuery),
		chromedp.Click("#tail-form button", chromedp.ByQuery),
		waitText(`#tail-status`, "watching news"),
		waitText(`#tail-list`, "news "), // a publisher's message reached the tail
		waitText(`#hooks-body`, "message"),
		waitText(`#heap`, "MiB"),
		chromedp.Sleep(2*time.Second), // let the charts draw a few points
	)
	if err != nil {
		t.Fatalf("opening the dashboard: %v (status %q)", err, status)
	}
	if status != "live" {
		t.Errorf("status %q", status)
	}

	// Quiet the publishers and let the page catch up, so that one more
	// publish is exactly one more on the counter.
	stopPublishers()
	before := sent.Load()
	want := strconv.FormatUint(before, 10)
	if err := chromedp.Run(ctx, waitText("#publishes-total", want)); err != nil {
		t.Fatalf("the page never showed %s publishes: %v", want, err)
	}
	// A refused publish shows its error.
	err = chromedp.Run(ctx,
		chromedp.SetValue("#pub-id", strings.Repeat("x", 300), chromedp.ByQuery),
		chromedp.Click("#pub-submit", chromedp.ByQuery),
		waitText("#pub-result", "400 invalid message: id is longer than 256 bytes"),
	)
	if err != nil {
		t.Fatalf("a bad publish: %v", err)
	}

	var result string
	err = chromedp.Run(ctx,
		chromedp.SetValue("#pub-event", "greet", chromedp.ByQuery),
		chromedp.SetValue("#pub-id", "from-the-form", chromedp.ByQuery),
		chromedp.SetValue("#pub-data", "hello from chromium", chromedp.ByQuery),
		chromedp.Click("#pub-submit", chromedp.ByQuery),
		waitText("#pub-result", "queued for 13 subscribers"), // 12 on news and the tail
		chromedp.Text("#pub-result", &result, chromedp.ByQuery),
		waitText("#tail-list", "hello from chromium"),
		waitText("#publishes-total", strconv.FormatUint(before+1, 10)),
	)
	if err != nil {
		t.Fatalf("publishing through the form: %v (result %q)", err, result)
	}
	var tail string
	if err := chromedp.Run(ctx, chromedp.Text("#tail-list li:first-child", &tail, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tail, "#from-the-form") || !strings.Contains(tail, "greet") {
		t.Errorf("newest tail entry %q, want the form's id and event", tail)
	}

	// Traffic again (news stays quiet, so the form's message stays on top
	// of the tail) for the screenshot's charts.
	stopPublishers = publishers(t, s, &sent, "prices", "chat/lobby", "alerts")
	defer stopPublishers()
	if err := chromedp.Run(ctx, chromedp.Sleep(3*time.Second)); err != nil {
		t.Fatal(err)
	}

	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Fatal(err)
	}
	if len(png) < 10000 {
		t.Fatalf("screenshot of %d bytes", len(png))
	}
	paths := []string{filepath.Join(t.ArtifactDir(), "dashboard.png")}
	if p := os.Getenv("TINYSSE_DASHBOARD_PNG"); p != "" {
		paths = append(paths, p)
	}
	for _, p := range paths {
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
}

// waitText waits until the element's text contains want.
func waitText(sel, want string) chromedp.Action {
	return chromedp.Poll(fmt.Sprintf(`(document.querySelector(%q) || {textContent: ""}).textContent.includes(%q)`, sel, want), nil,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second))
}

// publishers publishes to each topic every 20ms (news every 200ms) until
// the returned func is called.
func publishers(t *testing.T, s *server, sent *atomic.Uint64, topics ...string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, topic := range topics {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				case <-tick.C:
				}
				if topic == "news" && i%10 != 0 {
					continue // news is quieter
				}
				// Not s.publish: t.Fatal belongs to the test's goroutine.
				resp, err := client.Post("http://"+s.addr+"/sse?topic="+url.QueryEscape(topic), "application/json",
					strings.NewReader(fmt.Sprintf(`{"event":"tick","data":"%s %d"}`, topic, i)))
				if err != nil {
					t.Errorf("publish to %s: %v", topic, err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusAccepted {
					sent.Add(1)
				}
			}
		}()
	}
	return sync.OnceFunc(func() { close(done); wg.Wait() })
}

// TestDashboardPatternsInBrowser: the page's topic table shows a pattern
// that subscribers hold, marked as one, with its subscriber count.
func TestDashboardPatternsInBrowser(t *testing.T) {
	ctx := browser.New(t, 60*time.Second)
	s := startEvery(t, "", engine.Config{}, 10, 100*time.Millisecond)
	s.subscribe(t, "/sse?topic=sports/*")
	s.subscribe(t, "/sse?topic=sports/*&topic=news")
	var row string
	err := chromedp.Run(ctx,
		chromedp.Navigate("http://"+s.addr+"/_tinysse/"),
		chromedp.WaitVisible("#status.on", chromedp.ByQuery),
		waitText("#topics-body", "sports/* pattern"),
		chromedp.Text("#topics-body", &row, chromedp.ByQuery),
	)
	if err != nil {
		t.Fatalf("the dashboard never showed the pattern: %v (table %q)", err, row)
	}
	if !strings.Contains(row, "sports/* pattern\t2\t") {
		t.Errorf("topic table %q, want the pattern with its 2 subscribers", row)
	}
}
