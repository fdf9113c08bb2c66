package ops_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/browser"
)

// TestDashboardFirstPaint: the page shows the server's state as soon as
// it is open, not after the feed's next tick. The feed's Interval is an
// hour, so only the frame a new watcher gets at once can fill the
// counters and the topic table, and the tail's recent messages can only
// come from the API's history. The feed's own topic is not in the table;
// the page links a favicon the dashboard serves.
func TestDashboardFirstPaint(t *testing.T) {
	ctx := browser.New(t, 60*time.Second)
	s := startAPI(t, nil, engine.Config{}, 10, time.Hour, "/_tinysse/api/")
	for range 3 {
		s.subscribe(t, "/sse?topic=news")
	}
	for range 2 {
		s.subscribe(t, "/sse?topic=alerts")
	}
	for _, id := range []string{"first", "second", "third"} {
		if code := s.publish(t, "/sse", `{"id":"`+id+`","data":"message `+id+`"}`); code != 202 {
			t.Fatalf("publish: %d", code)
		}
	}
	waitFor(t, "5 subscribers", func() bool { return s.eng.Stats().Subscribers == 5 })

	start := time.Now()
	var topics, tail, subs string
	err := chromedp.Run(ctx,
		chromedp.Navigate("http://"+s.addr+"/_tinysse/"),
		waitText("#topics-body", "news"),
		waitText("#tail-list", "message third"),
		chromedp.Text("#topics-body", &topics, chromedp.ByQuery),
		chromedp.Text("#tail-list", &tail, chromedp.ByQuery),
		chromedp.Text("#subscribers", &subs, chromedp.ByQuery),
	)
	if err != nil {
		t.Fatalf("the page did not show the server's state (feed interval 1h): %v", err)
	}
	t.Logf("state shown %v after navigating", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(topics, "alerts") || strings.Contains(topics, "_tinysse.stats") {
		t.Errorf("topic table %q: want news and alerts, not the feed's own topic", topics)
	}
	if subs == "–" || subs == "" {
		t.Errorf("subscribers card %q", subs)
	}
	if i, j, k := strings.Index(tail, "message third"), strings.Index(tail, "message second"), strings.Index(tail, "message first"); i < 0 || j < i || k < j {
		t.Errorf("tail %q: want the three messages, newest first", tail)
	}
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), "first-paint.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}

	// The token field can be read back: "show" turns it to text.
	const token = "eyJhbGciOiJIUzI1NiJ9.e30.sig"
	var typ, value string
	err = chromedp.Run(ctx,
		chromedp.Click("#sign-in-open", chromedp.ByQuery),
		chromedp.SendKeys("#login-token", token, chromedp.ByQuery),
		// The button's own click(), which runs its handler before it
		// returns: a synthetic mouse click at the button's coordinates
		// sometimes landed while the sign-in box was still being laid out
		// (the type read right after was still "password").
		chromedp.WaitVisible("#login-show", chromedp.ByQuery),
		chromedp.Evaluate(`document.getElementById("login-show").click()`, nil),
		chromedp.AttributeValue("#login-token", "type", &typ, nil, chromedp.ByQuery),
		chromedp.Value("#login-token", &value, chromedp.ByQuery),
	)
	if err != nil || typ != "text" || value != token {
		t.Errorf("token field after show: type %q value %q (%v)", typ, value, err)
	}

	// The favicon the page links.
	var icon string
	if err := chromedp.Run(ctx, chromedp.AttributeValue(`link[rel="icon"]`, "href", &icon, nil, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	code, hdr, body := s.get(t, "/_tinysse/"+icon)
	if code != 200 || hdr.Get("Content-Type") != "image/svg+xml" || !strings.HasPrefix(body, "<svg") {
		t.Errorf("favicon %s: %d %q", icon, code, hdr.Get("Content-Type"))
	}
}

// TestDashboardFeedJoinsBounded: watchers joining as fast as they can
// make the feed publish at most once per look (every 50ms, ops'
// watchEvery), however many join: the bound is checked against the
// time the joins took, measured.
func TestDashboardFeedJoinsBounded(t *testing.T) {
	s := startEvery(t, "", engine.Config{}, 10, time.Hour)
	first := s.subscribe(t, "/sse?topic=_tinysse.stats")
	for first.On(t).NextEvent().Type != "stats" { // the first watcher's own frame
	}
	start := time.Now()
	for range 200 {
		s.subscribe(t, "/sse?topic=_tinysse.stats")
	}
	waitFor(t, "201 watchers", func() bool { return s.eng.Subscribers("_tinysse.stats") == 201 })
	time.Sleep(200 * time.Millisecond) // a last look sees the last joins
	elapsed := time.Since(start)
	// Count what the first watcher got since; nothing else publishes.
	frames := 0
	for {
		b, err := first.Next(300 * time.Millisecond)
		if err != nil {
			break
		}
		if b.Event != nil && b.Event.Type == "stats" {
			frames++
		}
	}
	bound := int(elapsed/(50*time.Millisecond)) + 2
	t.Logf("200 joins in %v: %d stats messages (bound %d)", elapsed.Round(time.Millisecond), frames, bound)
	if frames < 1 || frames > bound {
		t.Errorf("%d stats messages while 200 watchers joined in %v, want 1 to %d", frames, elapsed, bound)
	}
}
