package transport

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinysse/tinysse/engine"
)

// staticTree builds, in a fresh directory, a static directory "public"
// with hidden files, a directory without index, and symbolic links that
// stay inside it or lead out of it (to a sibling "outside" and to /etc),
// or out and back in.
func staticTree(t *testing.T) (public string) {
	t.Helper()
	root := t.TempDir()
	public = filepath.Join(root, "public")
	files := map[string]string{
		"outside/secret.txt":        "outside secret",
		"public/index.html":         "<p>index</p>",
		"public/ok.txt":             "ok",
		"public/sub/file.txt":       "in sub",
		"public/docs/index.html":    "<p>docs</p>",
		"public/.env":               "SECRET=1",
		"public/.git/config":        "[core]",
		"public/sub/.hidden":        "hidden",
		"public/.well-known/x.json": "{}",
	}
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"etcdir":      "/etc",
		"passwd":      "/etc/passwd",
		"link-out":    "../outside",
		"link-secret": "../outside/secret.txt",
		"deep-out":    "sub/../../outside/secret.txt",
		"abs-inside":  filepath.Join(public, "ok.txt"),
		"alias.txt":   "ok.txt",
		"alias-dir":   "sub",
		"up-and-in":   "../public/ok.txt",
		"dangling":    "missing.txt",
		"sub/back":    "../ok.txt",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(public, name)); err != nil {
			t.Fatal(err)
		}
	}
	return public
}

// TestStaticConfined: the static directory serves its own files and
// nothing else: a symbolic link that leads out of it (even on its way
// back in), or is absolute, is not followed; a relative one that stays
// inside is. Hidden files and directories
// (a name beginning with a dot) are not served, a directory is never
// listed, and every refusal is the API's JSON error.
func TestStaticConfined(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		public := staticTree(t)
		for _, prefix := range []string{"/static/", "/"} {
			t.Run("under "+prefix, func(t *testing.T) {
				addr, _, _ := p.startServer(t, engine.Config{}, Config{StaticDir: public, StaticPath: prefix})
				get := func(path string, headers ...string) answer {
					return p.do(t, http.MethodGet, "http://"+addr+prefix+path, "", headers...)
				}
				for path, body := range map[string]string{
					"":                   "<p>index</p>",
					"ok.txt":             "ok",
					"sub/file.txt":       "in sub",
					"docs/":              "<p>docs</p>",
					"alias.txt":          "ok", // links inside the directory are followed
					"alias-dir/file.txt": "in sub",
					"sub/back":           "ok",
				} {
					if a := get(path); a.Status != http.StatusOK || a.Body != body {
						t.Errorf("GET %s%s: %d %q, want 200 %q", prefix, path, a.Status, a.Body, body)
					}
				}
				for _, path := range []string{
					"etcdir/passwd", "etcdir/", "passwd", // absolute links out
					"link-out/secret.txt", "link-secret", "deep-out", // relative links out
					"abs-inside", // absolute, though it points inside
					"up-and-in",  // relative, out of the directory and back: it leaves it on the way
					"dangling",
					".env", ".git/config", ".git/", ".git", "sub/.hidden", ".well-known/x.json", // hidden
					"%2eenv", "sub/%2Ehidden", "%2egit/config", ".%65nv",
					"sub/", "alias-dir/", // directories without index.html: no listing
					"missing", "sub/missing",
				} {
					a := get(path)
					wantError(t, a, http.StatusNotFound)
					if strings.Contains(a.Body, "root:") || strings.Contains(a.Body, "secret") || strings.Contains(a.Body, "SECRET") || strings.Contains(a.Body, "file.txt") {
						t.Errorf("GET %s%s leaked %q", prefix, path, a.Body)
					}
				}
				if a := p.do(t, http.MethodHead, "http://"+addr+prefix+".env", ""); a.Status != http.StatusNotFound || a.Body != "" {
					t.Errorf("HEAD %s.env: %d %q", prefix, a.Status, a.Body)
				}
				// A directory asked for without its slash is redirected to it,
				// under the static path.
				a := p.rawGet(t, addr, prefix+"docs") // not followed
				if loc := a.Header.Get("Location"); a.Status != http.StatusFound || loc != prefix+"docs/" {
					t.Errorf("GET %sdocs: %d Location %q, want 302 to %sdocs/", prefix, a.Status, loc, prefix)
				}
				// Static files take GET and HEAD only; anything else is 405
				// naming them, whether or not the file exists.
				for _, path := range []string{"ok.txt", "missing", ""} {
					for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
						a := p.do(t, m, "http://"+addr+prefix+path, "x")
						wantError(t, a, http.StatusMethodNotAllowed)
						if allow := a.Header.Get("Allow"); allow != "GET, HEAD" {
							t.Errorf("%s %s%s: Allow %q, want GET, HEAD", m, prefix, path, allow)
						}
					}
				}
				// fasthttp's own refusals come out as JSON too.
				wantError(t, get("ok.txt", "Range", "bytes=100-200"), http.StatusRequestedRangeNotSatisfiable)
				wantError(t, p.rawGet(t, addr, prefix+"ok%00.txt"), http.StatusBadRequest)
				if a := get("ok.txt", "Range", "bytes=0-0"); a.Status != http.StatusPartialContent || a.Body != "o" {
					t.Errorf("range: %d %q", a.Status, a.Body)
				}
				noEscapeFrom(t, p, addr, prefix)
			})
		}
		entries, err := os.ReadDir(public)
		if err != nil || len(entries) != 17 {
			t.Errorf("the static directory holds %d entries (%v), want the 17 it was given: nothing written", len(entries), err)
		}
	})
}

// noEscapeFrom asks for ../outside/secret.txt under prefix, spelled in
// several ways.
func noEscapeFrom(t *testing.T, p proto, addr, prefix string) {
	t.Helper()
	for _, path := range []string{
		"../outside/secret.txt",
		"sub/../../outside/secret.txt",
		"%2e%2e/outside/secret.txt",
		"..%2foutside%2fsecret.txt",
		"..%5coutside%5csecret.txt",
		"sub/..%2f..%2foutside/secret.txt",
		"alias-dir/../../outside/secret.txt",
	} {
		a := p.rawGet(t, addr, prefix+path)
		if a.Status == http.StatusOK || strings.Contains(a.Body, "secret") {
			t.Errorf("GET %s%s: %d %.60q", prefix, path, a.Status, a.Body)
		}
	}
}
