package transport

import (
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"unicode/utf8"

	"github.com/tinysse/tinysse/auth"
	"github.com/tinysse/tinysse/engine"
	"github.com/valyala/fasthttp"
)

// subscribe handles GET {sub-path}: hooks first (they may refuse with a
// normal HTTP answer), then the connection is hijacked and served by the
// engine on a goroutine of its own (HTTP/1.1), or the stream is handed to
// the engine on its handler's goroutine (HTTP/2, h2Stream.open).
func (s *Server) subscribe(ctx *fasthttp.RequestCtx) {
	if s.closing.Load() || s.eng.Closing() {
		ctx.Response.Header.Set("Retry-After", "1")
		writeError(ctx, fasthttp.StatusServiceUnavailable, "server is shutting down")
		return
	}
	if !s.takeStream() {
		ctx.SetUserValue(rejectKey, RejectLimit)
		ctx.Response.Header.Set("Retry-After", "1")
		writeError(ctx, fasthttp.StatusServiceUnavailable, "server is at its subscriber limit")
		return
	}
	h2, _ := ctx.Conn().(*h2Stream) // nil: HTTP/1.1
	if h2 != nil && !h2.takeAddressSlot() {
		ctx.SetUserValue(rejectKey, RejectLimit)
		ctx.Response.Header.Set("Retry-After", "1")
		writeError(ctx, fasthttp.StatusTooManyRequests, "too many connections from your address")
		s.streams.Add(-1)
		return
	}
	handedOver := false
	defer func() {
		if !handedOver {
			s.streams.Add(-1)
			if h2 != nil {
				h2.giveAddressSlot()
			}
		}
	}()
	var grant *auth.Grant
	if s.cfg.Auth != nil {
		g, aerr := s.cfg.Auth.Verify(s.token(ctx), auth.Subscribe)
		if aerr != nil {
			refuseAuth(ctx, aerr)
			return
		}
		grant = g
	}
	topics := uniqueTopics(queryTopics(ctx))
	if err := checkSubscribeTopics(topics); err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	if grant != nil && !s.allowed(ctx, grant, auth.Subscribe, topics, "") {
		return
	}
	sub := &engine.Subscriber{Topics: topics}
	if grant != nil {
		sub.Expires = grant.Expires
	}
	s.eng.Assign(sub)
	if s.needRequest() {
		sub.Request = newRequest(ctx)
		if grant != nil {
			sub.Request.Claims = grant.Claims
		}
	}
	if h := s.hooks.Subscribe; h != nil {
		accept, err := h(sub)
		switch {
		case err != nil:
			writeError(ctx, fasthttp.StatusInternalServerError, hookFailure("subscribe", err)) // the runtime logged it with file and line
			return
		case !accept:
			writeError(ctx, fasthttp.StatusForbidden, "subscription rejected by script")
			return
		}
		sub.Topics = uniqueTopics(sub.Topics)
		if err := checkSubscribeTopics(sub.Topics); err != nil {
			writeError(ctx, fasthttp.StatusInternalServerError, "subscribe hook set bad topics: "+err.Error())
			s.unsubscribeRefused(sub)
			return
		}
		// A hook may narrow what the token allows, never widen it.
		if grant != nil && !s.allowed(ctx, grant, auth.Subscribe, sub.Topics, "the subscribe hook set topics the token does not allow: ") {
			s.unsubscribeRefused(sub)
			return
		}
	}

	if !s.topicsRoom(ctx, sub) {
		if s.hooks.Subscribe != nil {
			s.unsubscribeRefused(sub)
		}
		return
	}

	var st engine.Stream
	st.LastEventID, st.HasLastEventID = lastEventID(ctx)
	if h2 != nil {
		// HTTP/2: the handler's goroutine serves the stream once this
		// returns (h2Handler); nothing to hijack.
		h2.open(s, ctx, sub, st)
		handedOver = true
		return
	}
	st.Head = s.streamHead(ctx)
	conn := ctx.Conn()
	// The subscriber slot goes back just before the socket closes, not
	// after the Unsubscribe hook: a client told to come back (a timeout,
	// a disconnect, retry: 0) that reconnects the moment it reads the end
	// must find its slot free. Given back once, by whichever comes first.
	var slotBack atomic.Bool
	giveSlot := func() {
		if slotBack.CompareAndSwap(false, true) {
			s.streams.Add(-1)
		}
	}
	st.Conn, st.Close = conn, func() error { giveSlot(); return conn.Close() }
	// Over TLS the socket's bytes are not the stream's: no raw writes, the
	// engine falls back to Write on the TLS connection; its poller still
	// watches the socket under it for the client leaving.
	if tc, ok := conn.(*tlsConn); ok {
		st.Watch = rawConn(tc.NetConn())
	} else if !s.isTLS(conn) {
		st.Raw = rawConn(conn)
	}
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(net.Conn) {
		// fasthttp releases the request and its buffers when this returns
		// (KeepHijackedConns leaves the socket open): the stream starts on
		// a fresh goroutine with a small stack and holds nothing of theirs.
		// Once the head is out that goroutine ends too and the shard's
		// poller watches the idle stream (engine/poll.go); without a
		// descriptor or a poller it stays for the stream's life.
		go s.eng.Start(sub, st, func(error) { giveSlot() })
	})
	handedOver = true
}

// unsubscribeRefused runs the Unsubscribe hook for a subscriber that the
// Subscribe hook accepted and the transport then refused, so that hooks
// always come in pairs (a script counting its subscribers stays right).
func (s *Server) unsubscribeRefused(sub *engine.Subscriber) {
	if h := s.hooks.Unsubscribe; h != nil {
		h(sub)
	}
}

// streamHead is the HTTP response head of an event stream. The body is
// delimited by the connection's close, so no chunked framing is needed.
func (s *Server) streamHead(ctx *fasthttp.RequestCtx) []byte {
	var b []byte
	b = append(b, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"+
		"Connection: close\r\nX-Accel-Buffering: no\r\n"...)
	ctx.Response.Header.VisitAll(func(k, v []byte) {
		if isStreamHeader(k) {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	})
	return append(b, "\r\n"...)
}

// isStreamHeader says whether a header the handler set goes with an event
// stream's head: the CORS ones.
func isStreamHeader(k []byte) bool {
	return strings.HasPrefix(string(k), "Access-Control-") || string(k) == "Vary"
}

// lastEventID is the Last-Event-ID header, else the last_event_id query
// parameter. An id that no message can have (over engine.MaxIDLen bytes,
// invalid UTF-8, a line break or NUL) is kept as given: it matches nothing,
// so the client gets ": replay-gap" and live messages.
func lastEventID(ctx *fasthttp.RequestCtx) (string, bool) {
	// An empty id is no id: EventSource sends the header only once it has
	// seen one, and an empty one would match a message published without id.
	if v := ctx.Request.Header.Peek("Last-Event-ID"); len(v) > 0 {
		return sanitizeID(v), true
	}
	if v := ctx.QueryArgs().Peek("last_event_id"); len(v) > 0 {
		return sanitizeID(v), true
	}
	return "", false
}

func sanitizeID(v []byte) string {
	if len(v) > engine.MaxIDLen || !utf8.Valid(v) || strings.ContainsAny(string(v), "\r\n\x00") {
		return "\x00invalid" // no valid id contains NUL, so this finds nothing
	}
	return string(v)
}

func uniqueTopics(ts []string) []string {
	for i := 1; i < len(ts); i++ {
		for j := 0; j < i; j++ {
			if ts[i] == ts[j] {
				ts = append(ts[:i], ts[i+1:]...)
				i--
				break
			}
		}
	}
	return ts
}

// topicsRoom says whether sub's topics fit under the engine's MaxTopics,
// and answers 503 when one it would make does not: a subscriber's topic
// costs a ring of Capacity entries like any other, and 64 topics a
// request over many connections would otherwise hold memory that no
// limit counts. Patterns are not topics. A check, not a reservation, as
// for a publish (engine.CheckTopics): subscribes racing it may each make
// one topic more.
func (s *Server) topicsRoom(ctx *fasthttp.RequestCtx, sub *engine.Subscriber) bool {
	names := sub.Topics
	if len(names) > 0 {
		names = slices.DeleteFunc(slices.Clone(names), engine.IsPattern)
		if len(names) == 0 {
			return true // patterns only
		}
	}
	if err := s.eng.CheckTopics(names); err != nil {
		ctx.SetUserValue(rejectKey, RejectLimit)
		ctx.Response.Header.Set("Retry-After", "1")
		writeError(ctx, fasthttp.StatusServiceUnavailable, "server is at its topic limit: subscribe to an existing topic")
		return false
	}
	return true
}

// needRequest says whether some hook will look at a subscriber's request;
// without one, nothing of it is copied and kept.
func (s *Server) needRequest() bool {
	h := &s.hooks
	return h.Subscribe != nil || h.Catchup != nil || h.Message != nil || h.Timeout != nil || h.Unsubscribe != nil
}

// newRequest copies what hooks see of the request. A token in the query
// (?authorization=) is taken out of uri and query: hooks get the verified
// claims instead, and a script that logs its requests leaks no token.
func newRequest(ctx *fasthttp.RequestCtx) *engine.Request {
	r := &engine.Request{
		Method:  string(ctx.Method()),
		Path:    string(ctx.Path()),
		URI:     string(ctx.RequestURI()),
		Query:   string(ctx.QueryArgs().QueryString()),
		Headers: make(map[string]string),
	}
	if ctx.QueryArgs().Has(tokenParam) {
		args := fasthttp.AcquireArgs()
		ctx.QueryArgs().CopyTo(args)
		args.Del(tokenParam)
		r.Query = args.String()
		fasthttp.ReleaseArgs(args)
		r.URI = string(ctx.URI().PathOriginal())
		if r.Query != "" {
			r.URI += "?" + r.Query
		}
	}
	ctx.Request.Header.VisitAll(func(k, v []byte) {
		r.Headers[strings.ToLower(string(k))] = string(v)
	})
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		r.IP, r.Port = a.IP.String(), a.Port
	} else {
		r.IP = ctx.RemoteIP().String()
	}
	return r
}

// rawConn is c's socket, for the engine's non-blocking writes and its
// poller; nil when c has none.
func rawConn(c net.Conn) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}
