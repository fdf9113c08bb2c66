package transport

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

// Route is an extra endpoint served next to the API (metrics, the
// dashboard). Handler answers every method; it runs on a fasthttp worker.
type Route struct {
	// Path is matched exactly, or as a prefix when it ends in "/" (the
	// path without that slash matches too).
	Path    string
	Handler fasthttp.RequestHandler
	// Admin: only requests with admin rights (Config.Auth: the admin
	// token, or a JWT whose claim says "admin": true) reach Handler; the
	// others get 401 or 403. Without Config.Auth nothing is asked.
	Admin bool
	// Token, when set, is a bearer token that also lets a request in (the
	// metrics token); without Admin, only it or admin rights do.
	Token string
}

func (r Route) matches(path string) bool {
	if strings.HasSuffix(r.Path, "/") {
		return path == strings.TrimSuffix(r.Path, "/") || strings.HasPrefix(path, r.Path)
	}
	return path == r.Path
}

// checkRoutes refuses extra routes that would hide the API.
func (c *Config) checkRoutes() error {
	taken := map[string]string{c.PubPath: "pub path", c.SubPath: "sub path"}
	if c.HealthPath != "" {
		if !strings.HasPrefix(c.HealthPath, "/") {
			return errors.New("transport: health path must start with /")
		}
		if what, ok := taken[c.HealthPath]; ok {
			return errors.New("transport: health path is the same as the " + what)
		}
		taken[c.HealthPath] = "health path"
	}
	if c.APIPath != "" {
		if !strings.HasPrefix(c.APIPath, "/") || !strings.HasSuffix(c.APIPath, "/") {
			return errors.New("transport: API path must start and end with /")
		}
		for p, what := range taken {
			if hasPathPrefix(p, c.APIPath) {
				return errors.New("transport: API path " + c.APIPath + " would hide the " + what)
			}
		}
		// Routes may sit above it (the dashboard's path): handle matches
		// the API first.
	}
	for _, r := range c.Routes {
		if !strings.HasPrefix(r.Path, "/") || r.Handler == nil {
			return errors.New("transport: a route needs a path starting with / and a handler")
		}
		for p, what := range taken {
			if r.matches(p) {
				return errors.New("transport: route " + r.Path + " would hide the " + what)
			}
		}
		if c.APIPath != "" && hasPathPrefix(r.Path, c.APIPath) {
			return errors.New("transport: route " + r.Path + " is under the API path " + c.APIPath + ", which hides it")
		}
		taken[r.Path] = "route " + r.Path
	}
	return nil
}

// Rejection reasons, indexes of Stats' arrays and the metrics' labels.
const (
	RejectBadRequest   = iota // 400: malformed, wrong type, invalid field, bad topic
	RejectForbidden           // 403: the hook refused
	RejectTooLarge            // 413: body over MaxBodySize
	RejectMediaType           // 415: content type missing or not JSON/form
	RejectHookError           // 500: the hook failed
	RejectShuttingDown        // 503: the server is shutting down
	RejectLimit               // 503: at --max-subscribers (subscribe) or --max-topics (publish)
	RejectUnavailable         // 503: cluster mode, the stream could not be reached (publish)
	RejectUnauthorized        // 401: no token, or one that does not verify (Config.Auth)
	rejectReasons
)

// RejectReasons names each reason, for labels.
var RejectReasons = [rejectReasons]string{"bad_request", "forbidden", "too_large", "unsupported_media_type", "hook_error", "shutting_down", "limit", "unavailable", "unauthorized"}

// rejectKey is the user value a handler sets (to a Reject* index) when the
// status alone does not tell why it refused: three reasons share 503.
const rejectKey = "tinysse.reject"

// rejectReasonOf is the reason ctx's refusal is counted under.
func rejectReasonOf(ctx *fasthttp.RequestCtx, status int) int {
	if r, ok := ctx.UserValue(rejectKey).(int); ok {
		return r
	}
	return rejectReason(status)
}

func rejectReason(status int) int {
	switch status {
	case fasthttp.StatusUnauthorized:
		return RejectUnauthorized
	case fasthttp.StatusForbidden:
		return RejectForbidden
	case fasthttp.StatusRequestEntityTooLarge:
		return RejectTooLarge
	case fasthttp.StatusUnsupportedMediaType:
		return RejectMediaType
	case fasthttp.StatusServiceUnavailable:
		return RejectShuttingDown
	case fasthttp.StatusInternalServerError:
		return RejectHookError
	}
	return RejectBadRequest
}

// counters are the transport's own counts: one atomic add per refused
// request or connection, nothing per delivery. Read by Stats.
type counters struct {
	pubRejected [rejectReasons]atomic.Uint64
	subRejected [rejectReasons]atomic.Uint64
}

// Stats is a snapshot of what the transport refused.
type Stats struct {
	// PublishRejected and SubscribeRejected count refused requests by
	// reason (index with Reject*; names in RejectReasons).
	PublishRejected   [rejectReasons]uint64
	SubscribeRejected [rejectReasons]uint64
	// ConnsRefused counts connections turned away at the connection limit
	// (503); ConnsRefusedPerIP those turned away at MaxConnsPerIP (429).
	ConnsRefused, ConnsRefusedPerIP uint64
	// OpenConns is how many connections are open now, streams included.
	OpenConns int64
	// H2Conns is how many of OpenConns speak HTTP/2 (the others HTTP/1.1,
	// or have not said yet).
	H2Conns int64
	// Streams is how many event streams are open (or being opened);
	// H2Streams how many of them are HTTP/2 streams.
	Streams, H2Streams int64
	// H2ResetCuts counts HTTP/2 connections closed for resetting streams
	// faster than allowed (rapid reset); H2ContinuationCuts those closed
	// for a header block in too many CONTINUATION frames.
	H2ResetCuts, H2ContinuationCuts uint64
}

// Stats returns the transport's counters. Safe from any goroutine.
func (s *Server) Stats() Stats {
	var st Stats
	for i := range st.PublishRejected {
		st.PublishRejected[i] = s.counters.pubRejected[i].Load()
		st.SubscribeRejected[i] = s.counters.subRejected[i].Load()
	}
	if l := s.ln.Load(); l != nil {
		st.ConnsRefused = l.refused.Load()
		st.ConnsRefusedPerIP = l.refusedIP.Load()
		st.OpenConns = l.open.Load()
	}
	st.H2Conns = s.h2conns.n.Load()
	st.Streams, st.H2Streams = s.streams.Load(), s.h2Streams.Load()
	st.H2ResetCuts, st.H2ContinuationCuts = s.h2ResetCuts.Load(), s.h2ContinuationCuts.Load()
	return st
}

// countPublish counts a publish answered with something other than 202.
func (s *Server) countPublish(ctx *fasthttp.RequestCtx) {
	if code := ctx.Response.StatusCode(); code != fasthttp.StatusAccepted {
		s.counters.pubRejected[rejectReasonOf(ctx, code)].Add(1)
	}
}

// countSubscribe counts a subscribe refused before its stream began (a
// hijacked stream has no status code set: it is 200).
func (s *Server) countSubscribe(ctx *fasthttp.RequestCtx) {
	if code := ctx.Response.StatusCode(); code != fasthttp.StatusOK {
		s.counters.subRejected[rejectReasonOf(ctx, code)].Add(1)
	}
}

// Closing reports whether Shutdown has begun.
func (s *Server) Closing() bool { return s.closing.Load() || s.eng.Closing() }

// health answers {"status":"ok"} while serving and 503
// {"status":"shutting down"} once Shutdown has begun.
func (s *Server) health(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	if s.Closing() {
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.Response.Header.Set("Retry-After", "1")
		ctx.SetBodyString(`{"status":"shutting down"}`)
		return
	}
	ctx.SetBodyString(`{"status":"ok"}`)
}

// route returns the extra route serving path, if any.
func (s *Server) route(path string) fasthttp.RequestHandler {
	for _, r := range s.routes {
		if r.matches(path) {
			return r.Handler
		}
	}
	return nil
}

// isTLS says whether conn is a TLS connection (checked explicitly, so that
// a future tls.Conn exposing its socket never gets plaintext written to it).
func (s *Server) isTLS(conn net.Conn) bool {
	switch conn.(type) {
	case *tls.Conn, *tlsConn:
		return true
	}
	return s.cfg.TLS != nil
}
