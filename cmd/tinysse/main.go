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

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/transport"
)

var version = "0.1.0"

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil))
}

// run is main with its surroundings passed in. ready, if not nil, gets the
// listening address once the server accepts.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer, ready chan<- string) int {
	o, err := parseOptions(args, getenv, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "tinysse: %v\n", err)
		return 2
	}
	if o.help {
		return 0
	}
	if o.version {
		fmt.Fprintf(stdout, "tinysse %s\n", version)
		return 0
	}
	log := newLogger(stderr, o.logLevel)
	if o.script != "" {
		fmt.Fprintln(stderr, "tinysse: --script: Lua hooks are not in this build yet (see the Lua hooks issue)")
		return 2
	}

	eng, err := engine.New(engine.Config{
		Shards:        o.shards,
		Capacity:      o.capacity,
		KeepAlive:     keepAliveOrOff(o),
		KeepAliveText: o.keepAliveText,
		Timeout:       o.timeout,
		TimeoutRetry:  o.timeoutRetry,
		WriteTimeout:  o.writeTimeout,
		AutoID:        o.autoID,
		Logger:        log,
	})
	if err != nil {
		fmt.Fprintf(stderr, "tinysse: %v\n", err)
		return 2
	}
	srv, err := transport.New(transport.Config{
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
		Logger:           log,
	}, eng)
	if err != nil {
		fmt.Fprintf(stderr, "tinysse: %v\n", err)
		return 2
	}

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		fmt.Fprintf(stderr, "tinysse: --listen: %v\n", err)
		return 1
	}
	log.Info(fmt.Sprintf("tinysse %s", version), "shards", eng.Config().Shards, "capacity", eng.Config().Capacity)
	log.Info(fmt.Sprintf("Listening on %s", ln.Addr()))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if ready != nil {
		ready <- ln.Addr().String()
	}

	select {
	case err := <-served:
		if err != nil {
			log.Error("server stopped", "err", err)
			return 1
		}
		return 0
	case s := <-sig:
		log.Info("shutting down", "signal", s.String(), "timeout", o.shutdownTimeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutdown", "err", err)
	}
	<-served
	log.Info("stopped")
	return 0
}

// keepAliveOrOff maps --keep-alive 0 to "off" for the engine.
func keepAliveOrOff(o *options) time.Duration {
	if o.keepAlive == 0 {
		return -1
	}
	return o.keepAlive
}

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.LevelKey && a.Value.Any().(slog.Level) == levelTrace {
				a.Value = slog.StringValue("TRACE")
			}
			return a
		},
	}))
}
