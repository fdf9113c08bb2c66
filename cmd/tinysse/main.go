// Command tinysse is a programmable Server-Sent Events server, compatible
// with Tiny SSE's command line, HTTP API and Lua scripts.
//
// Flags and TINYSSE_* environment variables are read here and nowhere else;
// each component gets its Config.
package main

import (
	"context"
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
	tlsConfig, err := loadTLS(o)
	if err != nil {
		fmt.Fprintf(stderr, "tinysse: --tls-cert/--tls-key: %v\n", err)
		return 1
	}
	authz, err := newAuth(o, log)
	if err != nil {
		fmt.Fprintf(stderr, "tinysse: %v\n", err)
		return 1
	}
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

	// Cluster mode: the node connects before the script and the engine
	// exist (the script asks it who leads, the engine replays from it); it
	// feeds the engine once built. --store is the same on one node, with
	// JetStream embedded in this process.
	var node *cluster.Node
	var replay engine.ReplayFunc
	var publish func(*engine.Message, string) (engine.PublishResult, error)
	var leader func() bool // nil: a single node leads itself
	if o.nats.url != "" || o.store.dir != "" {
		flag, ccfg := "--nats", o.nats.config(log)
		if o.store.dir != "" {
			flag = "--store"
			store, err := cluster.OpenStore(cluster.StoreConfig{
				Dir: o.store.dir, Sync: o.store.sync, SyncAlways: o.store.syncAlways,
				MaxPayload: storePayload(o.maxBodySize), Logger: log,
			})
			if err != nil {
				fmt.Fprintf(stderr, "tinysse: --store: %v\n", err)
				return 1
			}
			defer store.Close() // after node.Close below
			ccfg = o.store.config(store, log)
		}
		ccfg.ReplayFetches = o.scale.replayFetches
		if o.script != "" {
			// message hooks on every node see pub as the publishing node made it
			ccfg.EncodeState, ccfg.DecodeState = lua.MarshalState, lua.UnmarshalState
		}
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		node, err = cluster.Connect(ctx, ccfg)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "tinysse: %s: %v\n", flag, err)
			return 1
		}
		defer node.Close() // after the server's shutdown below: deferred calls run last first
		replay, publish = node.Replay, node.Publish
		if o.nats.url != "" {
			leader = node.Leader
		}
		if !o.autoID {
			log.Warn(flag + " without --auto-id: a Last-Event-ID is looked up in the rings of the node the client reconnects to, never in the stream")
		}
	}

	var script *lua.Runtime
	if o.script != "" {
		scriptTimeout := o.scriptTimeout
		if scriptTimeout == 0 {
			scriptTimeout = -1 // --script-timeout 0: never
		}
		script, err = lua.Load(lua.Config{
			Script:    o.script,
			Data:      o.scriptData,
			Tick:      o.scriptTick,
			Unsafe:    o.unsafeScript,
			DataDir:   o.dataDir,
			VMs:       vms,
			Timeout:   scriptTimeout,
			MaxMemory: scriptMemory(o),
			CLI:       cliTable(o, shards, vms),
			Leader:    leader,
			Stdout:    stdout,
			Logger:    log,
		})
		if err != nil {
			fmt.Fprintf(stderr, "tinysse: --script: %v\n", err)
			return 1
		}
	}

	ln, err := listen("tcp", o.listen)
	if err != nil {
		fmt.Fprintf(stderr, "tinysse: --listen: %v\n", err)
		return 1
	}
	defer ln.Close()
	var hooks engine.Hooks
	var hookStats *ops.HookStats // nil: hooks not timed
	if script != nil {
		// startup runs on every VM after the socket is bound and before
		// anyone is accepted.
		if err := script.Start(); err != nil {
			fmt.Fprintf(stderr, "tinysse: --script: %v\n", err)
			return 1
		}
		defer script.Close()
		hooks = script.Hooks()
		if o.metricsPath != "" || !o.noDashboard {
			hookStats = ops.NewHookStats()
			hooks = hookStats.Wrap(hooks)
		}
		log.Info("script loaded", "script", o.script, "hooks", script.Defined(), "vms", vms)
	}

	eng, err := engine.New(engine.Config{
		Shards:          shards,
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
		Hooks:           hooks,
		Replay:          replay,
		NoPoll:          o.scale.noPoll,
		Logger:          log,
	})
	if err != nil {
		fmt.Fprintf(stderr, "tinysse: %v\n", err)
		return 2
	}
	var srv *transport.Server
	dashboard := dashboardAllowed(o, ln.Addr(), log)
	var extraMetrics func(io.Writer)
	if node != nil {
		extraMetrics = node.WritePrometheus
	}
	apiPath := ""
	if apiAllowed(o, ln.Addr(), log) {
		apiPath = o.apiPath
	}
	routes, feed, err := opsRoutes(o, dashboard, eng, func() transport.Stats { return srv.Stats() }, hookStats, script, extraMetrics, log)
	if err != nil {
		fmt.Fprintf(stderr, "tinysse: %v\n", err)
		return 2
	}
	healthPath := o.healthPath
	if node != nil && healthPath != "" {
		// The health answer says whether the node is linked to NATS.
		routes = append(routes, transport.Route{Path: healthPath,
			Handler: healthHandler(func() bool { return srv.Closing() }, node.Connected, o.nats.healthRequired)})
		healthPath = ""
	}
	srv, err = transport.New(transport.Config{
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
		Logger:           log,
		HealthPath:       healthPath,
		Routes:           routes,
		TLS:              tlsConfig,
		Publish:          publish,
		MaxBatch:         o.scale.maxBatch,
		Auth:             authz,
		TokenCookie:      o.auth.cookie,
		APIPath:          apiPath,
		APIHistory:       apiHistory(node),
		APIKeys:          apiKeys(script),
	}, eng)
	if err != nil {
		fmt.Fprintf(stderr, "tinysse: %v\n", err)
		return 2
	}
	// The engine is closed by the server's Shutdown; until the server
	// runs, a failure here closes it.
	engineOwned := true
	defer func() {
		if engineOwned {
			_ = eng.Close(context.Background())
		}
	}()
	if node != nil {
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		err := node.Start(ctx, eng)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "tinysse: --nats: %v\n", err)
			return 1
		}
	}

	log.Info(fmt.Sprintf("tinysse %s", version), "shards", eng.Config().Shards, "capacity", eng.Config().Capacity)
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	}
	log.Info(fmt.Sprintf("Listening on %s", ln.Addr()), "scheme", scheme)

	// From here every part runs under one errgroup and one context: a
	// signal, or any part returning an error (the listener failing), ends
	// the context, and the shutdown part then stops the rest in order:
	// the server (listener, streams with their goodbye, the engine's
	// shards), then, as run returns, the cluster link, the script's VMs
	// and tick, the store (the deferred calls above, last first).
	sigCtx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()
	g, ctx := errgroup.WithContext(sigCtx)
	engineOwned = false
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil {
			return fmt.Errorf("--listen: %w", err)
		}
		return nil
	})
	if feed != nil {
		g.Go(func() error { feed(ctx.Done()); return nil })
	}
	if budget := historyBudget(o); budget > 0 {
		g.Go(func() error { paceGC(eng, budget, ctx.Done()); return nil }) // see memlimit.go
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
		fmt.Fprintf(stderr, "tinysse: %v\n", err)
		return 1
	}
	log.Info("stopped")
	return 0
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
