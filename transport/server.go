package transport

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tinysse/tinysse/auth"
	"github.com/tinysse/tinysse/engine"
	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
)

var errNoRawConn = errors.New("transport: connection has no raw socket")

// Config configures a Server. The zero value of every field is its
// documented default.
type Config struct {
	// PubPath is where POST publishes. Default "/sse".
	PubPath string
	// SubPath is where GET subscribes. Default "/sse".
	SubPath string
	// MaxBodySize is the largest publish body accepted. Default 64 KiB.
	MaxBodySize int
	// ReadTimeout cuts off a client that takes longer to send a request
	// (slowloris). Default 10s.
	ReadTimeout time.Duration
	// StaticDir, when set, is served under StaticPath (default "/").
	StaticDir  string
	StaticPath string
	// CORS: AllowOrigin default "*"; AllowMethods default "GET, HEAD, POST";
	// AllowHeaders default "*"; MaxAge 0 sends no Access-Control-Max-Age.
	AllowOrigin      string
	AllowMethods     string
	AllowHeaders     string
	AllowCredentials bool
	MaxAge           time.Duration
	// MaxConns bounds open connections, streams included; beyond it new
	// clients get a fast 503. Default: the open-file limit less 128.
	MaxConns int
	// MaxConnsPerIP bounds the open connections of one client address,
	// streams included, counted in the listener: beyond it that address
	// gets a fast 429. 0: no bound.
	MaxConnsPerIP int
	// MaxSubscribers bounds the streams open at once: beyond it a
	// subscribe gets a fast 503 before any hook runs. 0: no bound (the
	// connection limit still holds).
	MaxSubscribers int
	// Logger receives the transport's logs. Default slog.Default().
	Logger *slog.Logger
	// HealthPath answers 200 {"status":"ok"} while serving and 503 while
	// shutting down. Default "": no health endpoint.
	HealthPath string
	// Routes are extra endpoints (metrics, the dashboard), matched after
	// the API paths and before static files.
	Routes []Route
	// TLS, when set, serves HTTPS on the listener. ALPN offers h2 and
	// http/1.1 (its NextProtos are the transport's): HTTP/2 clients get
	// HTTP/2, the others fasthttp's HTTP/1.1. Streams are then written by
	// the subscriber's goroutine through the TLS connection (or the
	// HTTP/2 stream): the engine's writev fast path needs the raw socket.
	TLS *tls.Config
	// NoH2C turns off cleartext HTTP/2 on a plain listener. Default false:
	// a connection that opens with the HTTP/2 client preface (prior
	// knowledge, as curl --http2-prior-knowledge) is served HTTP/2. The
	// HTTP/1.1 Upgrade: h2c is not offered.
	NoH2C bool
	// H2MaxStreams bounds the streams one HTTP/2 connection may have open
	// at once (SETTINGS_MAX_CONCURRENT_STREAMS). Default 250.
	H2MaxStreams int
	// Publish, when set, takes a publish after the publish hook accepted
	// it, instead of the engine (cluster mode: it goes to JetStream and
	// reaches the engine from there). key is the request's
	// Idempotency-Key header, "" without one: a client retrying a publish
	// whose answer it lost sends the same key, and Publish stores the
	// message once. Errors other than engine.ErrInvalid and
	// engine.ErrClosed answer 503 (the backend is unreachable), or the
	// status an error reports through a StatusCode() int method. Nil: the
	// engine's Publish, and the header is not read.
	Publish func(m *engine.Message, key string) (engine.PublishResult, error)
	// PublishBatch is Publish for a batch (a JSON array or NDJSON body,
	// batch.go): all of ms, in order, or none. Nil with Publish set: a
	// batch is refused (501), never published message by message, which
	// could stop half-way.
	PublishBatch func(ms []*engine.Message, key string) (engine.PublishResult, error)
	// MaxBatch bounds the messages of one batch publish; beyond it 413.
	// Default 1000.
	MaxBatch int
	// Auth, when set, checks every publish and subscribe (and the routes
	// marked Admin or given a Token) before any hook runs: 401 without a
	// valid token, 403 when it does not allow the topics. Nil: everything
	// is open, as in Tiny SSE.
	Auth *auth.Auth
	// TokenCookie is the cookie a token may come in, after the
	// Authorization header and before the ?authorization= parameter.
	// Default DefaultTokenCookie.
	TokenCookie string

	// APIPath, when set (it must start and end with "/"), serves the
	// server API under it (api.go, docs/api.yaml): GET topics, history
	// and presence, POST disconnect and publish. It is matched before
	// Routes, so it may sit under the dashboard's path. With Auth, every
	// API request needs admin rights (the admin token or an admin JWT);
	// without, only loopback clients are answered (403 otherwise).
	// Default "": no API.
	APIPath string
	// APIHistory, when set, reads a topic's messages beyond the rings
	// (cluster mode: cluster.Node.History): GET history asks it for what
	// the node's ring cannot show whole. Nil: the ring only, with
	// "gap" when it has lost messages.
	APIHistory func(topic string, after uint64, limit int) (StoredHistory, error)
	// APIKeys, when set, returns the keys hooks attached to each
	// subscriber (lua.Runtime.SubscriberKeys), for GET presence. It is
	// called on the request's worker with no lock held.
	APIKeys func(subs []*engine.Subscriber) []SubscriberKeys
	// APIRateWindow is how often the API samples every topic's publish
	// count: a topic's publish_rate covers the last one to two windows.
	// Default 5s.
	APIRateWindow time.Duration
}

func (c *Config) setDefaults() error {
	if c.PubPath == "" {
		c.PubPath = "/sse"
	}
	if c.SubPath == "" {
		c.SubPath = "/sse"
	}
	if !strings.HasPrefix(c.PubPath, "/") || !strings.HasPrefix(c.SubPath, "/") {
		return errors.New("transport: pub and sub paths must start with /")
	}
	if c.MaxBodySize == 0 {
		c.MaxBodySize = 64 << 10
	}
	if c.MaxBodySize < 0 {
		return errors.New("transport: max body size must not be negative")
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 10 * time.Second
	}
	if c.StaticPath == "" {
		c.StaticPath = "/"
	}
	if c.AllowOrigin == "" {
		c.AllowOrigin = "*"
	}
	if c.AllowMethods == "" {
		c.AllowMethods = "GET, HEAD, POST"
	}
	if c.AllowHeaders == "" {
		c.AllowHeaders = "*"
	}
	if c.AllowCredentials && (c.AllowOrigin == "*" || c.AllowHeaders == "*") {
		return errors.New("transport: CORS credentials cannot be allowed with a * origin or * headers")
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 1 << 20
		if n := maxOpenFiles(); n > 0 {
			c.MaxConns = int(max(n-128, n/2))
		}
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 1000
	}
	if c.H2MaxStreams == 0 {
		c.H2MaxStreams = DefaultH2MaxStreams
	}
	if c.H2MaxStreams < 0 || c.H2MaxStreams > 1<<20 {
		return errors.New("transport: HTTP/2 streams per connection must be between 1 and 1048576")
	}
	if c.MaxConnsPerIP < 0 || c.MaxSubscribers < 0 || c.MaxBatch < 0 {
		return errors.New("transport: connection, subscriber and batch limits must not be negative")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.TokenCookie == "" {
		c.TokenCookie = DefaultTokenCookie
	}
	if c.APIRateWindow <= 0 {
		c.APIRateWindow = 5 * time.Second
	}
	return c.checkRoutes()
}

// Server serves the HTTP API in front of an Engine.
type Server struct {
	cfg     Config
	eng     *engine.Engine
	hooks   engine.Hooks
	srv     *fasthttp.Server
	static  fasthttp.RequestHandler // nil without StaticDir
	origins []string                // AllowOrigin split, when it lists several
	routes  []Route                 // Config.Routes, their handlers guarded (see guard)
	// mu orders Serve's listener registration against Shutdown: a
	// Shutdown that comes first makes Serve return at once, one that comes
	// later closes the listener itself (fasthttp's own Shutdown misses a
	// listener its Serve has not registered yet).
	mu      sync.Mutex
	closing atomic.Bool
	ln      atomic.Pointer[limitListener]
	// streams counts subscribers from the slot taken in subscribe to the
	// end of their Serve goroutine (see takeStream).
	streams atomic.Int64

	counters counters // refused requests; see ops.go
	// chunked marks publishes with a chunked body from their head to
	// their end (body.go).
	chunked chunkedHeads

	// api serves Config.APIPath (nil without); apiHandler is its handle
	// behind the admin guard. apiOnce starts its rate sampler in Serve,
	// stopOnce ends it in Shutdown.
	api        *api
	apiHandler fasthttp.RequestHandler
	apiOnce    sync.Once
	stopOnce   sync.Once

	// HTTP/2 (h2.go); h2 is nil when it is off (no TLS and NoH2C).
	tls         *tls.Config   // Config.TLS with ALPN h2 and http/1.1; nil: plain
	h2          *http2.Server // read-only after New
	h2base      *http.Server  // x/net's settings and the GOAWAY on Shutdown
	h2conns     h2Conns       // open HTTP/2 connections
	h2Streams   atomic.Int64  // event streams served over HTTP/2 (part of streams)
	h2ResetCuts atomic.Uint64 // connections closed for resetting streams too fast
	// h2ContinuationCuts counts connections closed for a header block in
	// too many CONTINUATION frames (h2guard.go).
	h2ContinuationCuts atomic.Uint64
}

// New builds a Server for eng. Hooks come from eng's configuration.
func New(cfg Config, eng *engine.Engine) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, eng: eng, hooks: eng.Config().Hooks}
	for _, r := range cfg.Routes {
		s.routes = append(s.routes, Route{Path: r.Path, Handler: s.guard(r)})
	}
	if cfg.APIPath != "" {
		s.api = newAPI(s)
		s.apiHandler = s.guard(Route{Path: cfg.APIPath, Handler: s.api.handle, Admin: true})
	}
	if cfg.AllowOrigin != "*" {
		for _, o := range strings.Split(cfg.AllowOrigin, ",") {
			if o = strings.TrimSpace(o); o != "" {
				s.origins = append(s.origins, o)
			}
		}
	}
	if cfg.StaticDir != "" {
		dir, err := newStaticFS(cfg.StaticDir)
		if err != nil {
			return nil, fmt.Errorf("transport: static directory: %w", err)
		}
		fs := &fasthttp.FS{
			FS:                 dir, // confined: see staticFS
			IndexNames:         []string{"index.html"},
			AcceptByteRange:    true,
			PathNotFound:       func(ctx *fasthttp.RequestCtx) { writeError(ctx, fasthttp.StatusNotFound, "not found") },
			SkipCache:          false,
			GenerateIndexPages: false, // no listing
			Compress:           false, // fasthttp would write compressed copies into the directory
		}
		if p := strings.TrimSuffix(cfg.StaticPath, "/"); p != "" {
			fs.PathRewrite = fasthttp.NewPathPrefixStripper(len(p))
		}
		s.static = fs.NewRequestHandler()
	}
	if cfg.TLS != nil {
		s.tls = cfg.TLS.Clone()
		s.tls.NextProtos = []string{http2.NextProtoTLS, "http/1.1"}
	}
	if s.tls != nil || !cfg.NoH2C {
		if err := s.newH2(); err != nil {
			return nil, fmt.Errorf("transport: HTTP/2: %w", err)
		}
	}
	s.srv = &fasthttp.Server{
		Handler:            s.handle,
		ErrorHandler:       s.requestError,
		HeaderReceived:     s.headerReceived,
		Name:               "tinysse",
		Concurrency:        cfg.MaxConns,
		MaxRequestBodySize: cfg.MaxBodySize,
		ReadTimeout:        cfg.ReadTimeout,
		WriteTimeout:       cfg.ReadTimeout,
		IdleTimeout:        60 * time.Second,
		ReadBufferSize:     8 << 10,
		KeepHijackedConns:  true, // the engine closes streams itself
		CloseOnShutdown:    true,
		NoDefaultDate:      true,
		Logger:             fasthttpLogger{cfg.Logger},
	}
	return s, nil
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	l := &limitListener{Listener: ln, max: int64(s.cfg.MaxConns), perIP: s.cfg.MaxConnsPerIP}
	if s.tls != nil {
		l.tls = s.tls.Clone()
		l.tls.NextProtos = []string{"http/1.1"} // the refusal is an HTTP/1.1 answer
	}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return ln.Close()
	}
	s.ln.Store(l)
	s.mu.Unlock()
	if s.api != nil {
		s.apiOnce.Do(func() { go s.api.sampleRates(s.cfg.APIRateWindow) })
	}
	var inner net.Listener = l
	if s.h2 != nil {
		// HTTP/2 too: one accept loop classifies each connection
		// (dispatch.go) and gives fasthttp the HTTP/1 ones.
		q := newConnQueue(l.Addr())
		go s.dispatch(l, q)
		inner = q
	}
	err := s.srv.Serve(inner)
	if s.closing.Load() {
		return nil
	}
	if err == nil {
		// fasthttp returns nil when the listener is closed; only Shutdown
		// may do that.
		err = ErrListenerClosed
	}
	return err
}

// ErrListenerClosed is returned by Serve when its listener stopped
// accepting (it was closed, or failed) before Shutdown.
var ErrListenerClosed = errors.New("transport: the listener stopped accepting before Shutdown")

// OpenConns returns how many connections are open, streams included.
func (s *Server) OpenConns() int64 {
	if l := s.ln.Load(); l != nil {
		return l.open.Load()
	}
	return 0
}

// Shutdown stops accepting, answers requests already received, tells every
// subscriber when to come back and closes it, all within ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	l := s.ln.Load()
	s.mu.Unlock()
	if s.api != nil {
		s.stopOnce.Do(func() { close(s.api.stop) })
	}
	done := make(chan error, 1)
	go func() { done <- s.srv.ShutdownWithContext(ctx) }()
	if l != nil {
		_ = l.Close() // stops accepting even if fasthttp's Serve had not registered it
		l.closeSilent()
	}
	engErr := s.eng.Close(ctx)
	if s.h2 != nil {
		// The streams have had their retry: once every HTTP/2 handler has
		// returned (each stream ended, requests in flight answered), tell
		// every connection that no new stream will be served (GOAWAY),
		// and wait for them to close.
		s.h2conns.quiesce(ctx)
		_ = s.h2base.Shutdown(ctx)
		s.h2conns.shutdown(ctx)
	}
	srvErr := <-done
	if errors.Is(srvErr, net.ErrClosed) {
		srvErr = nil // we closed the listener first
	}
	return errors.Join(srvErr, engErr)
}

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	path := string(ctx.Path())
	s.setCORS(ctx)
	switch {
	case ctx.IsOptions():
		s.preflight(ctx)
	case path == s.cfg.PubPath && ctx.IsPost():
		if ctx.Request.Header.ContentLength() <= 0 {
			s.chunked.take(&ctx.Request.Header) // its body was read
		}
		s.publish(ctx)
		s.countPublish(ctx)
	case path == s.cfg.SubPath && ctx.IsGet():
		s.subscribe(ctx)
		s.countSubscribe(ctx)
	case path == s.cfg.PubPath || path == s.cfg.SubPath:
		allow := "OPTIONS"
		if path == s.cfg.PubPath {
			allow = "POST, " + allow
		}
		if path == s.cfg.SubPath {
			allow = "GET, " + allow
		}
		ctx.Response.Header.Set("Allow", allow)
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed")
	case s.api != nil && (strings.HasPrefix(path, s.cfg.APIPath) || path == strings.TrimSuffix(s.cfg.APIPath, "/")):
		s.apiHandler(ctx)
	case s.cfg.HealthPath != "" && path == s.cfg.HealthPath:
		s.health(ctx)
	case s.route(path) != nil:
		s.route(path)(ctx)
	case s.static != nil && hasPathPrefix(path, s.cfg.StaticPath):
		if !ctx.IsGet() && !ctx.IsHead() {
			ctx.Response.Header.Set("Allow", "GET, HEAD")
			writeError(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed: static files take GET or HEAD")
			return
		}
		s.serveStatic(ctx)
	default:
		writeError(ctx, fasthttp.StatusNotFound, "not found")
	}
}

func hasPathPrefix(path, prefix string) bool {
	if prefix == "/" || path == prefix {
		return true
	}
	return strings.HasPrefix(path, strings.TrimSuffix(prefix, "/")+"/")
}

// allowOrigin returns the Access-Control-Allow-Origin value for a request
// from origin ("" means send none).
func (s *Server) allowOrigin(origin []byte) string {
	if s.origins == nil {
		return s.cfg.AllowOrigin
	}
	for _, o := range s.origins {
		if string(origin) == o {
			return o
		}
	}
	return ""
}

func (s *Server) setCORS(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	if o := s.allowOrigin(ctx.Request.Header.Peek("Origin")); o != "" {
		h.Set("Access-Control-Allow-Origin", o)
	}
	if s.origins != nil {
		h.Set("Vary", "Origin")
	}
	if s.cfg.AllowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
}

func (s *Server) preflight(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.Set("Access-Control-Allow-Methods", s.cfg.AllowMethods)
	h.Set("Access-Control-Allow-Headers", s.cfg.AllowHeaders)
	if s.cfg.MaxAge > 0 {
		h.Set("Access-Control-Max-Age", strconv.Itoa(int(s.cfg.MaxAge/time.Second)))
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

const msgHeadTooLarge = "request line or headers too large"

// requestError answers what fasthttp could not parse, in JSON.
func (s *Server) requestError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	// A chunked body's failure leaves the request empty, its raw head
	// included: then the head's verdict says whether it was a publish.
	chunkedPub := s.chunked.take(&ctx.Request.Header) && len(ctx.Request.Header.RawHeaders()) == 0
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeError(ctx, fasthttp.StatusRequestEntityTooLarge,
			fmt.Sprintf("body is larger than %d bytes", s.cfg.MaxBodySize))
		if chunkedPub || ctx.IsPost() && s.isPublishPath(string(ctx.Path())) {
			s.countPublish(ctx)
		}
	case errors.As(err, &small):
		writeError(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, msgHeadTooLarge)
	case isTimeout(err):
		writeError(ctx, fasthttp.StatusRequestTimeout, "request not received in time")
	default:
		writeError(ctx, fasthttp.StatusBadRequest, "malformed request")
	}
	ctx.SetConnectionClose()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// writeError answers status with {"error": msg}.
func writeError(ctx *fasthttp.RequestCtx, status int, msg string) {
	ctx.Response.ResetBody()
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(appendJSONError(nil, msg))
}

func appendJSONError(dst []byte, msg string) []byte {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	return append(dst, b...)
}

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	// fasthttp reports client errors (bad requests, oversized bodies) here;
	// they are answered already, so they are not the operator's concern.
	// They may quote the request: tokens are taken out.
	f.l.Debug(redact(fmt.Sprintf(format, args...)), "component", "fasthttp")
}
