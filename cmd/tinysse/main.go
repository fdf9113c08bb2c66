// Command tinysse is a programmable Server-Sent Events server, compatible
// with Tiny SSE's command line, HTTP API and Lua scripts.
//
// Flags and TINYSSE_* environment variables are read here and nowhere else;
// each component gets its Config.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tinysse/tinysse/auth"
	"github.com/tinysse/tinysse/cluster"
	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/lua"
	"github.com/tinysse/tinysse/ops"
	"github.com/tinysse/tinysse/transport"
)

var version = "0.1.0"

// startTimeout bounds cluster mode's start: connecting, making the
// stream and the leader bucket (a new replicated stream waits for its
// first election), and the first consumer.
const startTimeout = 30 * time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil))
}

// run is main with its surroundings passed in. ready, if not nil, gets the
// listening address once the server accepts.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer, ready chan<- string) int {
	o, err := parseOptions(args, getenv, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "tinysse: %v\n", err)
		if checking(args) {
			return 1 // --check's answer: the file is not fine
		}
		return 2
	}
	if o.help {
		return 0
	}
	if o.version {
		fmt.Fprintf(stdout, "tinysse %s\n", version)
		return 0
	}
	log := newLogger(stderr, o.logLevel, o.logFormat)
	if o.checkConfig {
		return checkConfig(o, stdout, stderr, log)
	}
	if o.check != "" {
		return checkScript(o, stdout, stderr, log)
	}

	// Start-up is in order; a step that fails returns its exit code and
	// message, and what the steps before it opened is closed as run
	// returns (s.close: last opened, first closed).
	s := newInstance(o, log, stdout)
	defer s.close()
	steps := []func() error{
		s.secure,         // TLS and access control
		s.connectCluster, // --nats or --store
		s.loadScript,
		s.listenAndStart, // bind, then the script's startup
		s.buildEngine,
		s.buildServer,
		s.startNode,
		func() error { return s.serve(ready) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			fmt.Fprintf(stderr, "tinysse: %v\n", err)
			return exitCode(err)
		}
	}
	return 0
}

// exitError is a failed step of run: its message (without "tinysse: ")
// and the exit code run returns for it, 1 or 2.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exit is a failed step's error: the message from format and args, and
// code.
func exit(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

// exitCode is the code carried by err (1 if it carries none).
func exitCode(err error) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return 1
}

// instance is what run builds, one step after another, and the closers that
// undo it. Only run's goroutine writes it; the parts serve starts, the
// metrics route and the health handler read fields set before they run
// (srv is set before anyone is accepted).
type instance struct {
	o      *options
	log    *slog.Logger
	stdout io.Writer
	shards int
	vms    int

	tls   *tls.Config // nil: plain HTTP
	authz *auth.Auth

	// Cluster mode (connectCluster); all nil on a single node.
	node    *cluster.Node
	replay  engine.ReplayFunc
	publish func(*engine.Message, string) (engine.PublishResult, error)
	leader  func() bool // nil: a single node leads itself

	script    *lua.Runtime // nil: no --script
	ln        net.Listener
	hooks     engine.Hooks
	hookStats *ops.HookStats // nil: hooks not timed
	eng       *engine.Engine
	srv       *transport.Server
	feed      func(stop <-chan struct{}) // nil: no dashboard

	// engineOwned says the engine is closed by close, not yet by the
	// server's Shutdown (serve hands it over).
	engineOwned bool
	// closers undo what the steps opened; close runs them last first.
	closers []func()
}

// newInstance settles the shard and VM counts (0 and auto).
func newInstance(o *options, log *slog.Logger, stdout io.Writer) *instance {
	shards := o.shards
	if shards == 0 {
		shards = engine.DefaultShards()
		if o.luaVMs > 1 {
			shards = o.luaVMs // with N VMs, each shard gets its own
		}
	}
	vms := o.luaVMs
	if vms == 0 {
		vms = shards
	}
	return &instance{o: o, log: log, stdout: stdout, shards: shards, vms: vms}
}

// onClose adds f to what close runs.
func (s *instance) onClose(f func()) { s.closers = append(s.closers, f) }

// close runs the closers, the last added first.
func (s *instance) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

// secure reads the TLS certificate and the access-control options.
func (s *instance) secure() error {
	var err error
	s.tls, err = loadTLS(s.o)
	if err != nil {
		return exit(1, "--tls-cert/--tls-key: %v", err)
	}
	s.authz, err = newAuth(s.o, s.log)
	if err != nil {
		return exit(1, "%v", err)
	}
	return nil
}

// connectCluster is cluster mode: the node connects before the script and
// the engine exist (the script asks it who leads, the engine replays from
// it); it feeds the engine once built (startNode). --store is the same on
// one node, with JetStream embedded in this process.
func (s *instance) connectCluster() error {
	o := s.o
	if o.nats.url == "" && o.store.dir == "" {
		return nil
	}
	flag, ccfg := "--nats", o.nats.config(s.log)
	if o.store.dir != "" {
		flag = "--store"
		store, err := cluster.OpenStore(cluster.StoreConfig{
			Dir: o.store.dir, Sync: o.store.sync, SyncAlways: o.store.syncAlways,
			MaxPayload: storePayload(o.maxBodySize), Logger: s.log,
		})
		if err != nil {
			return exit(1, "--store: %v", err)
		}
		s.onClose(store.Close) // after node.Close below
		ccfg = o.store.config(store, s.log)
	}
	ccfg.ReplayFetches = o.scale.replayFetches
	if o.script != "" {
		// message hooks on every node see pub as the publishing node made it
		ccfg.EncodeState, ccfg.DecodeState = lua.MarshalState, lua.UnmarshalState
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	node, err := cluster.Connect(ctx, ccfg)
	cancel()
	if err != nil {
		return exit(1, "%s: %v", flag, err)
	}
	s.onClose(node.Close) // after the server's shutdown: closers run last first
	s.node, s.replay, s.publish = node, node.Replay, node.Publish
	if o.nats.url != "" {
		s.leader = node.Leader
	}
	if !o.autoID {
		s.log.Warn(flag + " without --auto-id: a Last-Event-ID is looked up in the rings of the node the client reconnects to, never in the stream")
	}
	return nil
}

// loadScript loads --script on its VMs; startup runs later
// (listenAndStart).
func (s *instance) loadScript() error {
	o := s.o
	if o.script == "" {
		return nil
	}
	scriptTimeout := o.scriptTimeout
	if scriptTimeout == 0 {
		scriptTimeout = -1 // --script-timeout 0: never
	}
	var err error
	s.script, err = lua.Load(lua.Config{
		Script:    o.script,
		Data:      o.scriptData,
		Tick:      o.scriptTick,
		Unsafe:    o.unsafeScript,
		DataDir:   o.dataDir,
		VMs:       s.vms,
		Timeout:   scriptTimeout,
		MaxMemory: scriptMemory(o),
		CLI:       cliTable(o, s.shards, s.vms),
		Leader:    s.leader,
		Stdout:    s.stdout,
		Logger:    s.log,
	})
	if err != nil {
		return exit(1, "--script: %v", err)
	}
	return nil
}

// listenAndStart binds --listen, then runs the script's startup on every
// VM: after the socket is bound and before anyone is accepted.
func (s *instance) listenAndStart() error {
	ln, err := listen("tcp", s.o.listen)
	if err != nil {
		return exit(1, "--listen: %v", err)
	}
	s.ln = ln
	s.onClose(func() { _ = ln.Close() })
	if s.script == nil {
		return nil
	}
	if err := s.script.Start(); err != nil {
		return exit(1, "--script: %v", err)
	}
	s.onClose(s.script.Close)
	s.hooks = s.script.Hooks()
	if s.o.metricsPath != "" || !s.o.noDashboard {
		s.hookStats = ops.NewHookStats()
		s.hooks = s.hookStats.WrapScript(s.hooks, s.script.Defined())
	}
	s.log.Info("script loaded", "script", s.o.script, "hooks", s.script.Defined(), "vms", s.vms)
	return nil
}

// buildEngine makes the sharded engine.
func (s *instance) buildEngine() error {
	o := s.o
	var err error
	s.eng, err = engine.New(engine.Config{
		Shards:          s.shards,
		Capacity:        o.capacity,
		KeepAlive:       keepAliveOrOff(o),
		KeepAliveText:   o.keepAliveText,
		Timeout:         o.timeout,
		TimeoutRetry:    o.timeoutRetry,
		WriteTimeout:    o.writeTimeout,
		WriteCoalesce:   o.writeCoalesce,
		AutoID:          o.autoID,
		MaxTopics:       o.maxTopics,
		MaxHistoryBytes: historyBudget(o),
		Hooks:           s.hooks,
		Replay:          s.replay,
		NoPoll:          o.scale.noPoll,
		Logger:          s.log,
	})
	if err != nil {
		return exit(2, "%v", err)
	}
	return nil
}

// buildServer makes the operations routes and the transport server over
// the engine.
func (s *instance) buildServer() error {
	o := s.o
	dashboard := dashboardAllowed(o, s.ln.Addr(), s.log)
	var extraMetrics func(io.Writer)
	if s.node != nil {
		extraMetrics = s.node.WritePrometheus
	}
	apiPath := ""
	if apiAllowed(o, s.ln.Addr(), s.log) {
		apiPath = o.apiPath
	}
	routes, feed, err := opsRoutes(o, dashboard, s.eng, func() transport.Stats { return s.srv.Stats() }, s.hookStats, s.script, extraMetrics, s.log)
	if err != nil {
		return exit(2, "%v", err)
	}
	s.feed = feed
	healthPath := o.healthPath
	if s.node != nil && healthPath != "" {
		// The health answer says whether the node is linked to NATS.
		routes = append(routes, transport.Route{Path: healthPath,
			Handler: healthHandler(func() bool { return s.srv.Closing() }, s.node.Connected, o.nats.healthRequired)})
		healthPath = ""
	}
	s.srv, err = transport.New(transport.Config{
		PubPath:          o.pubPath,
		SubPath:          o.subPath,
		MaxBodySize:      int(o.maxBodySize),
		ReadTimeout:      o.readTimeout,
		StaticDir:        o.staticDir,
		StaticPath:       o.staticPath,
		AllowOrigin:      o.corsOrigin,
		AllowMethods:     o.corsMethods,
		AllowHeaders:     o.corsHeaders,
		AllowCredentials: o.corsCredentials,
		MaxAge:           o.corsMaxAge,
		MaxSubscribers:   o.maxSubscribers,
		MaxConnsPerIP:    o.maxConnsPerIP,
		NoH2C:            o.noH2C,
		H2MaxStreams:     o.h2MaxStreams,
		Logger:           s.log,
		HealthPath:       healthPath,
		Routes:           routes,
		TLS:              s.tls,
		Publish:          s.publish,
		MaxBatch:         o.scale.maxBatch,
		Auth:             s.authz,
		TokenCookie:      o.auth.cookie,
		APIPath:          apiPath,
		APIHistory:       apiHistory(s.node),
		APIKeys:          apiKeys(s.script),
	}, s.eng)
	if err != nil {
		return exit(2, "%v", err)
	}
	// The engine is closed by the server's Shutdown; until the server
	// runs (serve), a failure closes it here.
	s.engineOwned = true
	eng := s.eng
	s.onClose(func() {
		if s.engineOwned {
			_ = eng.Close(context.Background())
		}
	})
	return nil
}

// startNode starts the cluster link feeding the engine.
func (s *instance) startNode() error {
	if s.node == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	err := s.node.Start(ctx, s.eng)
	cancel()
	if err != nil {
		return exit(1, "--nats: %v", err)
	}
	return nil
}

// serve runs the server until a signal or a failing part, then shuts it
// down. It returns once every part has ended; close does the rest.
func (s *instance) serve(ready chan<- string) error {
	o, log, srv, ln := s.o, s.log, s.srv, s.ln
	log.Info(fmt.Sprintf("tinysse %s", version), "shards", s.eng.Config().Shards, "capacity", s.eng.Config().Capacity)
	scheme := "http"
	if s.tls != nil {
		scheme = "https"
	}
	log.Info(fmt.Sprintf("Listening on %s", ln.Addr()), "scheme", scheme)

	// From here every part runs under one errgroup and one context: a
	// signal, or any part returning an error (the listener failing), ends
	// the context, and the shutdown part then stops the rest in order:
	// the server (listener, streams with their goodbye, the engine's
	// shards), then, as run returns, the cluster link, the script's VMs
	// and tick, the store (the closers of the steps above, last first).
	sigCtx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	s.onClose(stopSignals)
	g, ctx := errgroup.WithContext(sigCtx)
	s.engineOwned = false
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil {
			return fmt.Errorf("--listen: %w", err)
		}
		return nil
	})
	if s.feed != nil {
		g.Go(func() error { s.feed(ctx.Done()); return nil })
	}
	if budget := historyBudget(o); budget > 0 {
		g.Go(func() error { paceGC(s.eng, budget, ctx.Done()); return nil }) // see memlimit.go
	}
	g.Go(func() error {
		<-ctx.Done()
		if sigCtx.Err() != nil {
			log.Info("shutting down", "timeout", o.shutdownTimeout)
		} else {
			log.Error("shutting down: a part of the server failed", "timeout", o.shutdownTimeout)
		}
		sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			log.Warn("shutdown", "err", err)
		}
		return nil
	})
	if ready != nil {
		ready <- ln.Addr().String()
	}
	if err := g.Wait(); err != nil {
		log.Error("server stopped", "err", err)
		return &exitError{code: 1, err: err}
	}
	log.Info("stopped")
	return nil
}

// listen is net.Listen; a test makes the listener fail while serving.
var listen = net.Listen

// keepAliveOrOff maps --keep-alive 0 to "off" for the engine.
func keepAliveOrOff(o *options) time.Duration {
	if o.keepAlive == 0 {
		return -1
	}
	return o.keepAlive
}

func newLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.LevelKey && a.Value.Any().(slog.Level) == levelTrace {
				a.Value = slog.StringValue("TRACE")
			}
			return a
		},
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// cliTable is the options table startup(cli) receives: snake_case keys,
// durations in milliseconds.
func cliTable(o *options, shards, vms int) map[string]any {
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	return map[string]any{
		"listen":                 o.listen,
		"log_level":              (*levelValue)(&o.logLevel).String(),
		"keep_alive":             ms(o.keepAlive),
		"keep_alive_text":        o.keepAliveText,
		"timeout":                ms(o.timeout),
		"timeout_retry":          ms(o.timeoutRetry),
		"capacity":               o.capacity,
		"script":                 o.script,
		"script_data":            o.scriptData,
		"script_tick":            ms(o.scriptTick),
		"script_timeout":         ms(o.scriptTimeout),
		"script_memory":          o.scriptMemory,
		"unsafe_script":          o.unsafeScript,
		"data_dir":               o.dataDir,
		"max_body_size":          o.maxBodySize,
		"pub_path":               o.pubPath,
		"sub_path":               o.subPath,
		"serve_static_dir":       o.staticDir,
		"serve_static_path":      o.staticPath,
		"cors_allow_origin":      o.corsOrigin,
		"cors_allow_methods":     o.corsMethods,
		"cors_allow_headers":     o.corsHeaders,
		"cors_allow_credentials": o.corsCredentials,
		"cors_max_age":           ms(o.corsMaxAge),
		"auto_id":                o.autoID,
		"write_timeout":          ms(o.writeTimeout),
		"write_coalesce":         ms(max(o.writeCoalesce, -1)), // -1: off
		"read_timeout":           ms(o.readTimeout),
		"shutdown_timeout":       ms(o.shutdownTimeout),
		"shards":                 shards,
		"lua_vms":                vms,
		"max_subscribers":        o.maxSubscribers,
		"max_conns_per_ip":       o.maxConnsPerIP,
		"no_h2c":                 o.noH2C,
		"h2_max_streams":         o.h2MaxStreams,
		"max_topics":             o.maxTopics,
		"max_history_bytes":      o.maxHistoryBytes,
		"nats":                   o.nats.url,
		"nats_stream":            o.nats.stream,
		"nats_max_age":           ms(o.nats.maxAge),
		"nats_max_msgs":          o.nats.maxMsgs,
		"nats_replicas":          o.nats.replicas,
		"nats_publish_timeout":   ms(o.nats.publishTimeout),
		"health_requires_nats":   o.nats.healthRequired,
		"store":                  o.store.dir,
		"store_max_age":          ms(o.store.maxAge),
		"store_max_msgs":         o.store.maxMsgs,
		"store_max_bytes":        o.store.maxBytes,
		"metrics_path":           o.metricsPath,
		"metrics_topics":         o.metricsTopics,
		"health_path":            o.healthPath,
		"log_format":             o.logFormat,
		"dashboard_path":         o.dashboardPath,
		"api_path":               o.apiPath,
		"config":                 o.config,
		"no_dashboard":           o.noDashboard,
		"tls_cert":               o.tlsCert,
		"tls_key":                o.tlsKey,
		// Access control, without its secrets (--jwt-secret,
		// --jwt-publish-secret, --admin-token, --metrics-token).
		"jwt":                    o.auth.keysGiven,
		"jwt_public_key":         o.auth.publicKey,
		"jwks":                   o.auth.jwks,
		"jwt_publish_public_key": o.auth.publishKey,
		"jwt_audience":           o.auth.audience,
		"jwt_issuer":             o.auth.issuer,
		"jwt_leeway":             ms(o.auth.leeway),
		"jwt_cookie":             o.auth.cookie,
		"anonymous":              o.auth.anonymous,
		"public_topics":          o.auth.publicTopics,
		"dashboard_public":       o.auth.dashboardPublic,
		"no_poll":                o.scale.noPoll,
		"max_batch":              o.scale.maxBatch,
		"nats_replay_fetches":    o.scale.replayFetches,
	}
}

// scriptMemory maps --script-memory 0 to "no bound" for the runtime.
func scriptMemory(o *options) int64 {
	if o.scriptMemory == 0 {
		return -1
	}
	return o.scriptMemory
}

// historyBudget is --max-history-bytes for the engine: 0 is no bound (-1
// there).
func historyBudget(o *options) int64 {
	if o.maxHistoryBytes == 0 {
		return -1
	}
	return o.maxHistoryBytes
}
