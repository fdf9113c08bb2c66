// Package browser starts headless Chromium for tests that judge the server
// with a real browser (EventSource, the dashboard).
//
// The browser is Debian's chromium, or the binary named by TINYSSE_CHROMIUM.
// Without one, New skips the test with a message that says how to get it;
// .ci/run installs it, so in CI these tests always run.
package browser

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Path is the Chromium binary tests use, or "" when there is none.
func Path() string {
	if p := os.Getenv("TINYSSE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// New starts a headless browser for t and returns a context for chromedp
// actions, bounded by timeout. The browser is stopped when t ends. Without
// a browser on the machine the test is skipped.
//
// The flags are the ones this machine's closed network needs: no
// background networking, no component updates, no sync; a fresh profile in
// a temporary directory; --no-sandbox because CI runs as root.
//
// extra options come after those (TrustSPKI, for a test certificate).
func New(t testing.TB, timeout time.Duration, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	path := Path()
	if path == "" {
		t.Skip("no Chromium: install Debian's chromium (apt-get install chromium) or set TINYSSE_CHROMIUM")
	}
	// Not t.TempDir: Chromium's helper processes may still write to the
	// profile for a moment after the browser is stopped, which fails the
	// test's own cleanup; this one is removed with a few retries instead.
	profile, err := os.MkdirTemp("", "tinysse-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(profile),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	}
	opts = append(opts, extra...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
		for range 40 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("leaving Chromium's profile %s behind", profile)
	})
	// Start the browser now so a broken install fails here, clearly.
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
}

// TrustSPKI makes the browser accept a certificate whose public key is
// certPEM's (a test's self-signed one) and no other untrusted one: HTTPS
// then works as with a real certificate, HTTP/2 included.
func TrustSPKI(t testing.TB, certPEM []byte) chromedp.ExecAllocatorOption {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("browser: no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(sum[:]))
}
