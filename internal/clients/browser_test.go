package clients

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tinysse/tinysse/internal/browser"
)

// TestChromiumEventSource runs the scenarios with headless Chromium's own
// EventSource, on a page the server itself serves (same origin).
func TestChromiumEventSource(t *testing.T) {
	if browser.Path() == "" {
		t.Skip("no Chromium: install Debian's chromium (apt-get install chromium) or set TINYSSE_CHROMIUM")
	}
	runScenarios(t, startChromium)
}

// esPage opens an EventSource on its src parameter, listening for
// "message" and each type parameter, and logs what it reports in window.log.
const esPage = `<!doctype html><meta charset="utf-8"><title>es</title><script>
window.log = [];
const p = new URLSearchParams(location.search);
const es = new EventSource(p.get('src'));
es.addEventListener('open', () => log.push({k: 'open'}));
es.addEventListener('error', () => log.push({k: 'error'}));
for (const type of ['message', ...p.getAll('type')]) {
  es.addEventListener(type, (e) => log.push({k: 'event', type: e.type, data: e.data, id: e.lastEventId}));
}
</script>`

type chromiumClient struct{ ctx context.Context }

func (c *chromiumClient) records(t testing.TB) []record {
	var rs []record
	if err := chromedp.Run(c.ctx, chromedp.Evaluate(`window.log`, &rs)); err != nil {
		t.Fatalf("reading the page's log: %v", err)
	}
	return rs
}

func (c *chromiumClient) eventIDIsBlockID() bool { return false }

func startChromium(t *testing.T, s *server, types []string) esClient {
	t.Helper()
	ctx := browser.New(t, 2*time.Minute)
	writeFile(t, s.static, "es.html", esPage)
	q := url.Values{"src": {"/sse"}, "type": types}
	if err := chromedp.Run(ctx, chromedp.Navigate(s.url("/es.html?"+q.Encode()))); err != nil {
		t.Fatal(err)
	}
	return &chromiumClient{ctx: ctx}
}
