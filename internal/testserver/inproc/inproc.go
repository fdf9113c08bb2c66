// Package inproc runs a whole tinysse in the test's process: a lua script
// (optional), the engine and the transport, served on a free 127.0.0.1
// port by testserver.Serve. It is the in-process half of the test harness
// (package testserver); the engine and transport packages' own tests
// cannot import it (it imports them) and use testserver.Serve directly.
package inproc

import (
	"log/slog"
	"testing"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/testserver"
	"github.com/tinysse/tinysse/lua"
	"github.com/tinysse/tinysse/transport"
)

// Config says what to run. Loggers left nil in it are set: to Log when
// Capture is true, otherwise to a logger that discards.
type Config struct {
	Engine    engine.Config
	Transport transport.Config

	// Script, when not nil, is loaded (Stdout to Server.Out) and started,
	// and its hooks are the engine's; Runtime is a script loaded already,
	// started here.
	Script  *lua.Config
	Runtime *lua.Runtime
	// WrapHooks, when set, wraps the script's hooks (ops.HookStats.Wrap).
	WrapHooks func(engine.Hooks) engine.Hooks
	// Capture sends the logs, from DEBUG up, to Server.Log, and shows
	// them and the script's output when the test fails.
	Capture bool
	// Setup, when set, runs after the engine is made and before the
	// transport is: it may add routes to tc that need the engine (and may
	// keep s, whose Transport is set just after).
	Setup func(s *Server, tc *transport.Config)
	// Ready, when true, waits until the server answers an HTTP request
	// (GET /ready, a 404) before returning.
	Ready bool
}

// Server is a running tinysse.
type Server struct {
	Addr      string
	Engine    *engine.Engine
	Transport *transport.Server
	Runtime   *lua.Runtime       // nil without a script
	Log       *testserver.Buffer // the logs, with Capture
	Out       *testserver.Buffer // what the script printed
}

// URL is "http://" + Addr + target.
func (s *Server) URL(target string) string { return "http://" + s.Addr + target }

// Start runs cfg until the test ends: the transport is shut down first,
// then the script is closed.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	s := &Server{Log: &testserver.Buffer{}, Out: &testserver.Buffer{}}
	logger := slog.New(slog.DiscardHandler)
	if cfg.Capture {
		logger = slog.New(slog.NewTextHandler(s.Log, &slog.HandlerOptions{Level: slog.LevelDebug}))
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("server log:\n%s\nscript output:\n%s", s.Log, s.Out)
			}
		})
	}
	s.Runtime = cfg.Runtime
	if lc := cfg.Script; lc != nil {
		if lc.Stdout == nil {
			lc.Stdout = s.Out
		}
		if lc.Logger == nil {
			lc.Logger = logger
		}
		rt, err := lua.Load(*lc)
		if err != nil {
			t.Fatalf("lua.Load: %v", err)
		}
		s.Runtime = rt
	}
	if s.Runtime != nil {
		if err := s.Runtime.Start(); err != nil {
			t.Fatalf("Start: %v", err)
		}
		t.Cleanup(s.Runtime.Close) // runs last: after the server is shut down
		cfg.Engine.Hooks = s.Runtime.Hooks()
		if cfg.WrapHooks != nil {
			cfg.Engine.Hooks = cfg.WrapHooks(cfg.Engine.Hooks)
		}
	}
	if cfg.Engine.Logger == nil {
		cfg.Engine.Logger = logger
	}
	eng, err := engine.New(cfg.Engine)
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	s.Engine = eng
	if cfg.Transport.Logger == nil {
		cfg.Transport.Logger = logger
	}
	if cfg.Setup != nil {
		cfg.Setup(s, &cfg.Transport)
	}
	if s.Transport, err = transport.New(cfg.Transport, eng); err != nil {
		t.Fatalf("transport.New: %v", err)
	}
	s.Addr = testserver.Serve(t, s.Transport)
	if cfg.Ready {
		// Shutdown before fasthttp's Serve has registered the listener
		// would leave Serve running, so wait until the server answers.
		resp, err := testserver.Client.Get(s.URL("/ready"))
		if err != nil {
			t.Fatalf("server not answering: %v", err)
		}
		resp.Body.Close()
	}
	return s
}
