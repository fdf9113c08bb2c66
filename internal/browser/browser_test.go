package browser

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The browser loads a page from a loopback server and runs its script.
func TestBrowserRendersPage(t *testing.T) {
	ctx := New(t, 60*time.Second)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(`<!doctype html><p id="x"></p><script>document.getElementById("x").textContent = "ran " + (1+1)</script>`))
	}))
	defer srv.Close()
	var text string
	if err := chromedp.Run(ctx, chromedp.Navigate(srv.URL), chromedp.Text("#x", &text, chromedp.ByID)); err != nil {
		t.Fatal(err)
	}
	if text != "ran 2" {
		t.Fatalf("page text = %q, want %q", text, "ran 2")
	}
}
