package transport

import (
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/valyala/fasthttp"
)

// Static files (Config.StaticDir): fasthttp.FS serves them (ranges,
// If-Modified-Since, content types, an open-file cache), reading through
// staticFS, which alone decides what may be opened; serveStatic turns
// fasthttp's own answers into the API's.

// staticFS is the static directory as fasthttp.FS reads it. Every name is
// opened beneath dir with os.OpenInRoot, which follows a symbolic link
// only when it is relative and stays inside dir (a link out of it, or an
// absolute one even to a file inside, fails to open), and refuses ".."
// however spelled: the kernel resolves each step, so no check made before
// the open can be raced. The root is opened again for every file, so a
// directory replaced or removed while serving is seen as it is now.
// Names with an element beginning with a dot (.env, .git/config) are not
// there. Safe from any goroutine.
type staticFS struct {
	dir string // absolute
}

func newStaticFS(dir string) (staticFS, error) {
	abs, err := filepath.Abs(dir)
	return staticFS{dir: abs}, err
}

func (s staticFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if hidden(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	local, err := filepath.Localize(name) // refuses what the system would read otherwise (a\b on Windows)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	f, err := os.OpenInRoot(s.dir, local)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// hidden says whether a slash-separated path has an element that begins
// with a dot ("." alone is the directory itself).
func hidden(name string) bool {
	if name == "." {
		return false
	}
	for _, e := range strings.Split(name, "/") {
		if strings.HasPrefix(e, ".") {
			return true
		}
	}
	return false
}

// serveStatic serves a static file and answers every refusal as the API
// does: {"error": ...} with its status. A directory is served by its
// index.html, never listed: without one it is not found.
func (s *Server) serveStatic(ctx *fasthttp.RequestCtx) {
	s.static(ctx)
	switch code := ctx.Response.StatusCode(); {
	case code == fasthttp.StatusFound:
		// A directory asked for without its trailing slash. fasthttp
		// redirects to the path it served, from which the static prefix
		// was stripped: point to the one the client asked for.
		u := url.URL{Path: string(ctx.Path()) + "/"}
		ctx.Response.Header.Set("Location", u.EscapedPath())
	case code == fasthttp.StatusForbidden, code == fasthttp.StatusNotFound:
		// 403 is fasthttp's answer to a directory without index.html.
		writeError(ctx, fasthttp.StatusNotFound, "not found")
	case code == fasthttp.StatusBadRequest:
		writeError(ctx, code, "bad path") // a NUL in it
	case code == fasthttp.StatusRequestedRangeNotSatisfiable:
		writeError(ctx, code, "range not satisfiable")
	case code >= 400:
		writeError(ctx, code, "cannot read the file") // logged by fasthttp at DEBUG
	}
}
