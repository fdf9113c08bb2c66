package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tinysse/tinysse/internal/browser"
)

// TestDashboardLogin: with --admin-token (and JWT keys, so that nothing
// is open), the dashboard page asks for a token, refuses a wrong one,
// goes live with the admin token, keeps it in sessionStorage only (no
// cookie, no localStorage, never in a URL), publishes through its form
// with it, stays signed in across a reload and asks again after signing
// out. Headless Chromium drives the page served by run().
func TestDashboardLogin(t *testing.T) {
	ctx := browser.New(t, 90*time.Second)
	const admin = "adm1n-t0ken"
	addr, _, _ := runServer(t, []string{"--jwt-secret", "a secret for users", "--admin-token", admin})
	page := "http://" + addr + "/_tinysse/"

	visible := func(sel string) chromedp.Action {
		return chromedp.Poll(fmt.Sprintf(`!document.querySelector(%q).hidden`, sel), nil,
			chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second))
	}
	text := func(sel, want string) chromedp.Action {
		return chromedp.Poll(fmt.Sprintf(`document.querySelector(%q).textContent.includes(%q)`, sel, want), nil,
			chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second))
	}
	signIn := func(token string) chromedp.Action {
		return chromedp.Tasks{
			chromedp.SetValue("#login-token", token, chromedp.ByQuery),
			chromedp.Click("#login-submit", chromedp.ByQuery),
		}
	}

	if err := chromedp.Run(ctx,
		chromedp.Navigate(page),
		visible("#login"),
		text("#login-error", "401"),
		text("#status", "disconnected"),
		signIn("not-the-token"),
		visible("#login"),
		text("#login-error", "401"),
	); err != nil {
		t.Fatalf("before signing in: %v", err)
	}

	var stored, local, cookie string
	var urls []string
	if err := chromedp.Run(ctx,
		signIn(admin),
		chromedp.WaitVisible("#status.on", chromedp.ByQuery),
		text("#heap", "MiB"), // a stats message arrived
		chromedp.Evaluate(`sessionStorage.getItem("tinysse-token") || ""`, &stored),
		chromedp.Evaluate(`JSON.stringify(localStorage)`, &local),
		chromedp.Evaluate(`document.cookie`, &cookie),
		chromedp.Evaluate(`performance.getEntriesByType("resource").map((e) => e.name)`, &urls),
	); err != nil {
		t.Fatalf("signing in: %v", err)
	}
	if stored != admin || local != "{}" || cookie != "" {
		t.Errorf("sessionStorage %q, localStorage %s, cookie %q: want the token in sessionStorage only", stored, local, cookie)
	}
	for _, u := range urls {
		if strings.Contains(u, admin) {
			t.Errorf("the token is in a URL: %s", u)
		}
	}

	// The form publishes with the admin token (publishing needs a token here).
	if err := chromedp.Run(ctx,
		chromedp.SetValue("#pub-topic", "news", chromedp.ByQuery),
		chromedp.SetValue("#pub-data", "from the signed-in page", chromedp.ByQuery),
		chromedp.Click("#pub-submit", chromedp.ByQuery),
		text("#pub-result", "queued for 0 subscribers"),
		text("#publishes-total", "1"),
	); err != nil {
		t.Fatalf("publishing through the form: %v", err)
	}

	// A reload keeps the tab's session; signing out asks again.
	var loginHidden bool
	if err := chromedp.Run(ctx,
		chromedp.Reload(),
		chromedp.WaitVisible("#status.on", chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelector("#login").hidden`, &loginHidden),
	); err != nil {
		t.Fatalf("after a reload: %v", err)
	}
	if !loginHidden {
		t.Error("the login showed after a reload of a signed-in tab")
	}
	if err := chromedp.Run(ctx,
		chromedp.Click("#sign-out", chromedp.ByQuery),
		visible("#login"),
		text("#login-error", "401"),
		chromedp.Evaluate(`sessionStorage.getItem("tinysse-token") || ""`, &stored),
	); err != nil {
		t.Fatalf("signing out: %v", err)
	}
	if stored != "" {
		t.Errorf("sessionStorage still holds %q after signing out", stored)
	}
}
