package transport

import (
	"bytes"
	"crypto/subtle"
	"net/url"
	"regexp"
	"strings"

	"github.com/tinysse/tinysse/auth"
	"github.com/valyala/fasthttp"
)

// DefaultTokenCookie is the cookie a token may come in (Config.TokenCookie).
const DefaultTokenCookie = "tinysseAuthorization"

// tokenParam is the query parameter a token may come in, for EventSource,
// which cannot send headers. It is never logged nor shown to hooks.
const tokenParam = "authorization"

// token is the request's bearer token: the Authorization header's, then
// the cookie's, then the query parameter's; "" when there is none.
func (s *Server) token(ctx *fasthttp.RequestCtx) string {
	t, _ := s.tokenFrom(ctx)
	return t
}

// tokenFrom is token, and whether it came from the cookie.
func (s *Server) tokenFrom(ctx *fasthttp.RequestCtx) (token string, cookie bool) {
	if h := ctx.Request.Header.Peek(fasthttp.HeaderAuthorization); len(h) > 0 {
		if t, ok := bearer(h); ok {
			return t, false
		}
	}
	if c := ctx.Request.Header.Cookie(s.cfg.TokenCookie); len(c) > 0 {
		return string(bytes.TrimSpace(c)), true
	}
	if q := ctx.QueryArgs().Peek(tokenParam); len(q) > 0 {
		if t, ok := bearer(q); ok {
			return t, false
		}
		return string(bytes.TrimSpace(q)), false
	}
	return "", false
}

// cookieOriginOK says whether a publish whose token came from the cookie
// may be accepted: a browser sends the cookie with a form that any site
// posts (cross-site request forgery), so such a publish must come from
// the server's own origin or one --cors-allow-origin names (never "*"),
// or carry no Origin at all (not a browser's cross-site request).
func (s *Server) cookieOriginOK(ctx *fasthttp.RequestCtx) bool {
	origin := ctx.Request.Header.Peek("Origin")
	if len(origin) == 0 {
		return true
	}
	if _, host, ok := bytes.Cut(origin, []byte("://")); ok && bytes.Equal(host, ctx.Host()) {
		return true
	}
	return s.origins != nil && s.allowOrigin(origin) != ""
}

// bearer returns the token of "Bearer TOKEN" (the scheme in any case).
func bearer(v []byte) (string, bool) {
	const scheme = "bearer "
	if len(v) <= len(scheme) || !bytes.EqualFold(v[:len(scheme)], []byte(scheme)) {
		return "", false
	}
	return string(bytes.TrimSpace(v[len(scheme):])), true
}

// allowed says whether g allows op on topics, and answers the refusal
// (401 or 403, JSON, WWW-Authenticate) when it does not; prefix starts its
// message.
func (s *Server) allowed(ctx *fasthttp.RequestCtx, g *auth.Grant, op auth.Op, topics []string, prefix string) bool {
	t, ok := g.Allows(op, topics)
	if !ok {
		e := g.Refuse(op, t)
		e.Msg = prefix + e.Msg
		refuseAuth(ctx, e)
	}
	return ok
}

// refuseAuth answers an auth refusal.
func refuseAuth(ctx *fasthttp.RequestCtx, e *auth.Error) {
	if e.Status == fasthttp.StatusUnauthorized {
		ctx.SetUserValue(rejectKey, RejectUnauthorized)
	}
	ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, e.Challenge())
	writeError(ctx, e.Status, e.Msg)
}

// guard runs h for a route that needs admin rights or its token, and
// answers the refusal otherwise. Without Config.Auth, an Admin route is
// open only when there is no token to ask for (no admin protection).
func (s *Server) guard(r Route) fasthttp.RequestHandler {
	if !r.Admin && r.Token == "" {
		return r.Handler
	}
	token := []byte(r.Token)
	return func(ctx *fasthttp.RequestCtx) {
		if ctx.IsOptions() {
			r.Handler(ctx)
			return
		}
		t := s.token(ctx)
		if len(token) > 0 && t != "" && subtle.ConstantTimeCompare([]byte(t), token) == 1 {
			r.Handler(ctx)
			return
		}
		if s.cfg.Auth == nil {
			if r.Admin && len(token) == 0 {
				r.Handler(ctx) // nothing protects admin routes
				return
			}
			msg, status := "a token is required", fasthttp.StatusUnauthorized
			if t != "" {
				msg = "wrong token"
			}
			refuseAuth(ctx, &auth.Error{Status: status, Code: "invalid_token", Msg: msg})
			return
		}
		if _, aerr := s.cfg.Auth.Verify(t, auth.Admin); aerr != nil {
			if len(token) > 0 && t != "" && !s.cfg.Auth.JWT() {
				// Neither the route's token nor the admin token, and no
				// JWT it could be: a wrong token, 401 as without an admin
				// token (README: "401 otherwise").
				aerr = &auth.Error{Status: fasthttp.StatusUnauthorized, Code: "invalid_token", Msg: "wrong token"}
			}
			refuseAuth(ctx, aerr)
			return
		}
		r.Handler(ctx)
	}
}

// secretParam matches what a log line must not carry, as fasthttp may
// quote a request it could not parse: the token query parameter and an
// Authorization header's value. cookieHeader and encodedParam match the
// rest.
var secretParam = regexp.MustCompile(`(?i)(authorization=|authorization:\s*(bearer\s+)?)[^&\s"'\\]+`)

// cookieHeader matches a Cookie header's value up to the end of its line
// (a quoted "\r\n" starts with a backslash): the token cookie may have
// any name (--jwt-cookie).
var cookieHeader = regexp.MustCompile(`(?i)(cookie:[ \t]*)[^"\\\r\n]+`)

// encodedParam matches a query parameter whose name is percent-encoded:
// the server decodes names, so ?author%69zation=TOKEN carries the token
// too, and secretParam does not see it.
var encodedParam = regexp.MustCompile(`(?i)([?&](?:[a-z0-9._~-]|%[0-9a-f]{2})*%[0-9a-f]{2}(?:[a-z0-9._~-]|%[0-9a-f]{2})*=)[^&\s"'\\]+`)

// redact hides tokens in a log line.
func redact(s string) string {
	s = secretParam.ReplaceAllString(s, "${1}REDACTED")
	s = cookieHeader.ReplaceAllString(s, "${1}REDACTED")
	return encodedParam.ReplaceAllStringFunc(s, func(m string) string {
		name, _, _ := strings.Cut(m[1:], "=")
		if dec, err := url.QueryUnescape(name); err == nil && !strings.EqualFold(dec, tokenParam) {
			return m
		}
		return m[:1] + name + "=REDACTED"
	})
}
