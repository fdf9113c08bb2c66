package transport

import (
	"sync"
	"sync/atomic"
	"weak"

	"github.com/valyala/fasthttp"
)

// The body limit (Config.MaxBodySize) is fasthttp's MaxRequestBodySize:
// a body announced larger (Content-Length) is refused from its head, a
// chunked one as soon as it grows past the limit; neither is read
// further. headerReceived runs between the head and the body for the two
// cases fasthttp alone gets wrong.

// headerReceived is the server's fasthttp HeaderReceived: it runs on the
// connection's goroutine once a request's head is read, before its body.
func (s *Server) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	switch n := h.ContentLength(); {
	case n > s.cfg.MaxBodySize:
		// fasthttp answers Expect: 100-continue by inviting the body
		// before it looks at the length, and only then refuses it: a
		// client that waits for the invitation would send it all. Without
		// the Expect header the length is checked at once: 413, closed.
		h.Del(fasthttp.HeaderExpect)
	case n == -1 && h.IsPost() && s.isPubPath(h):
		s.chunked.add(h)
	case n == -1:
		s.chunked.take(h) // a mark left by a client that went away between chunks
	}
	return fasthttp.RequestConfig{} // the server's limits
}

// isPubPath says whether h's request goes to a publish path, as
// ctx.Path() in handle would say (the URI parsed and normalized).
func (s *Server) isPubPath(h *fasthttp.RequestHeader) bool {
	u := fasthttp.AcquireURI()
	defer fasthttp.ReleaseURI(u)
	if err := u.Parse(nil, h.RequestURI()); err != nil {
		return false
	}
	return s.isPublishPath(string(u.Path()))
}

// isPublishPath says whether path publishes: the pub path, or the API's
// publish endpoint.
func (s *Server) isPublishPath(path string) bool {
	return path == s.cfg.PubPath || s.api != nil && path == s.cfg.APIPath+"publish"
}

// chunkedHeads is the set of requests whose head said: a publish with a
// chunked body. When such a body grows past the limit fasthttp empties the
// request (method, path) before requestError sees it; the head's verdict,
// kept here, lets that 413 count as a publish refused as too_large, like
// one whose length was announced.
//
// Keyed by the request's header, which fasthttp hands to HeaderReceived
// and keeps in the RequestCtx that then reaches the handler or
// requestError, on the connection's goroutine; both take the mark, and
// requestError heeds it only for a request fasthttp emptied. A mark whose
// request got neither (the client left between two chunks) is taken when
// fasthttp, which pools its requests, reads the head of another chunked
// request into the same one. Weak keys hold no request alive: the marks
// of requests the pool dropped meanwhile are swept once many have
// gathered. Requests of known length never look at the set.
type chunkedHeads struct {
	m       sync.Map     // weak.Pointer[fasthttp.RequestHeader] → struct{}
	n       atomic.Int64 // marks in m; 0 lets every other request skip it
	sweepAt atomic.Int64 // sweep when n passes it
}

const chunkedSweepMin = 1024

func (c *chunkedHeads) add(h *fasthttp.RequestHeader) {
	if _, loaded := c.m.LoadOrStore(weak.Make(h), struct{}{}); loaded {
		return
	}
	if n := c.n.Add(1); n > max(c.sweepAt.Load(), chunkedSweepMin) {
		c.sweep()
	}
}

// take removes h's mark and says whether it had one.
func (c *chunkedHeads) take(h *fasthttp.RequestHeader) bool {
	if c.n.Load() == 0 {
		return false
	}
	if _, ok := c.m.LoadAndDelete(weak.Make(h)); ok {
		c.n.Add(-1)
		return true
	}
	return false
}

// sweep drops the marks of collected requests. The marks left are live
// requests' (at most one each); the next sweep waits until as many again
// have gathered.
func (c *chunkedHeads) sweep() {
	c.m.Range(func(k, _ any) bool {
		if k.(weak.Pointer[fasthttp.RequestHeader]).Value() == nil {
			if _, ok := c.m.LoadAndDelete(k); ok {
				c.n.Add(-1)
			}
		}
		return true
	})
	c.sweepAt.Store(2 * c.n.Load())
}
