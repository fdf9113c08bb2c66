package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/lua"
	"github.com/tinysse/tinysse/ops"
	"github.com/tinysse/tinysse/transport"
)

// noEnv are the flags without a TINYSSE_* variable: actions, not settings
// (a TINYSSE_CHECK left in an environment must not turn a server into a
// checker).
var noEnv = map[string]bool{"help": true, "version": true, "check": true}

// addOpsFlags declares the operational options.
func addOpsFlags(fs *pflag.FlagSet, o *options) {
	fs.StringVar(&o.metricsPath, "metrics-path", "/metrics", "URL path of the Prometheus metrics (empty: none)")
	fs.IntVar(&o.metricsTopics, "metrics-topics", 10, "topics with series of their own in the metrics and dashboard (the rest are summed)")
	fs.StringVar(&o.healthPath, "health-path", "/healthz", "URL path answering 200 while serving, 503 while shutting down (empty: none)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "serve HTTPS with this PEM certificate (chain) file")
	fs.StringVar(&o.tlsKey, "tls-key", "", "... and this PEM private key file")
	fs.StringVar(&o.dashboardPath, "dashboard-path", "/_tinysse/", "URL path of the live dashboard")
	fs.BoolVar(&o.noDashboard, "no-dashboard", false, "do not serve the dashboard nor publish its stats")
	fs.StringVar(&o.apiPath, "api-path", "/_tinysse/api/", "URL path of the server API: topics, history, presence, disconnect, publish (empty: none; needs --admin-token or JWT keys on an address others can reach)")
	fs.StringVar(&o.check, "check", "", "load the Lua script FILE (or, for FILE.toml, the config file and the script it names), report errors and its hooks, and exit 0 (fine) or 1")
}

// checkOpsOptions refuses operational values that cannot work, naming the
// option. Paths must not hide the API or each other.
func checkOpsOptions(o *options) error {
	if o.logFormat != "text" && o.logFormat != "json" {
		return fmt.Errorf("invalid value for --log-format: %q is not text or json", o.logFormat)
	}
	if o.metricsTopics < 1 || o.metricsTopics > 1000 {
		return fmt.Errorf("invalid value for --metrics-topics: %d is not between 1 and 1000", o.metricsTopics)
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return errors.New("invalid value for --tls-cert/--tls-key: give both or neither")
	}
	if o.dashboardPath != "" && !strings.HasSuffix(o.dashboardPath, "/") {
		o.dashboardPath += "/"
	}
	if !o.noDashboard && o.dashboardPath == "" {
		return errors.New("invalid value for --dashboard-path: empty (use --no-dashboard to turn it off)")
	}
	type path struct{ name, val string }
	taken := []path{{"pub-path", o.pubPath}, {"sub-path", o.subPath}}
	mine := []path{{"metrics-path", o.metricsPath}, {"health-path", o.healthPath}}
	if !o.noDashboard {
		mine = append(mine, path{"dashboard-path", o.dashboardPath})
	}
	// hides says whether a request for b could be served by a: the same
	// path, or a is a prefix route (ending in /) above b.
	hides := func(a, b string) bool { return a == b || strings.HasSuffix(a, "/") && strings.HasPrefix(b, a) }
	for _, p := range mine {
		if p.val == "" {
			continue
		}
		if !strings.HasPrefix(p.val, "/") {
			return fmt.Errorf("invalid value for --%s: %q must start with /", p.name, p.val)
		}
		for _, q := range taken {
			if hides(p.val, q.val) || hides(q.val, p.val) {
				return fmt.Errorf("invalid value for --%s: %q clashes with --%s %q", p.name, p.val, q.name, q.val)
			}
		}
		taken = append(taken, p)
	}
	if o.apiPath == "" {
		return nil
	}
	if !strings.HasPrefix(o.apiPath, "/") {
		return fmt.Errorf("invalid value for --api-path: %q must start with /", o.apiPath)
	}
	if !strings.HasSuffix(o.apiPath, "/") {
		o.apiPath += "/"
	}
	// The API is matched before the other routes, so it may sit under
	// the dashboard's path (its default does); it must not hide any.
	for _, q := range taken {
		if hides(o.apiPath, q.val) || q.name != "dashboard-path" && hides(q.val, o.apiPath) {
			return fmt.Errorf("invalid value for --api-path: %q clashes with --%s %q", o.apiPath, q.name, q.val)
		}
	}
	return nil
}

// loadTLS reads the certificate and key named by --tls-cert and --tls-key;
// nil without them.
func loadTLS(o *options) (*tls.Config, error) {
	if o.tlsCert == "" {
		return nil, nil
	}
	pair, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
	if err != nil {
		return nil, err
	}
	// ALPN offers h2 and http/1.1: the transport serves HTTP/2 clients
	// with x/net's server and the others with fasthttp (it sets NextProtos
	// itself; they are named here to say so).
	return &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}, nil
}

// gopher-lua's parse errors read "FILE line:L(column:C) near 'x': why".
var luaSyntaxPos = regexp.MustCompile(`^lua: syntax error: (.*) line:(\d+)\(column:(\d+)\) (.*)$`)

// checkScript is `tinysse --check FILE`: compile the script, run its main
// chunk once in the sandbox the server would use (no socket, no startup
// hook, no tick), list its hooks. Exit 0 if it would load, 1 if not.
func checkScript(o *options, stdout, stderr io.Writer, log *slog.Logger) int {
	rt, err := lua.Load(lua.Config{
		Script:  o.check,
		Unsafe:  o.unsafeScript,
		DataDir: o.dataDir,
		Timeout: scriptTimeoutOf(o),
		Stdout:  stdout,
		Logger:  log,
		CLI:     map[string]any{},
	})
	var hooks []string
	if err == nil {
		hooks, err = rt.Check()
	}
	if err != nil {
		msg := strings.TrimSpace(err.Error())
		if m := luaSyntaxPos.FindStringSubmatch(strings.SplitN(msg, "\n", 2)[0]); m != nil {
			why := strings.Join(strings.Fields(m[4]), " ")
			why = strings.TrimSuffix(strings.TrimSuffix(why, " syntax error"), ":")
			msg = fmt.Sprintf("%s:%s:%s: syntax error %s", m[1], m[2], m[3], why)
		}
		fmt.Fprintf(stderr, "tinysse: --check: %s\n", msg)
		return 1
	}
	if len(hooks) == 0 {
		fmt.Fprintf(stdout, "%s: ok, defines no hooks\n", o.check)
	} else {
		fmt.Fprintf(stdout, "%s: ok, hooks: %s\n", o.check, strings.Join(hooks, ", "))
	}
	return 0
}

// scriptTimeoutOf maps --script-timeout 0 (never) to the runtime's "none".
func scriptTimeoutOf(o *options) time.Duration {
	if o.scriptTimeout == 0 {
		return -1
	}
	return o.scriptTimeout
}

// opsRoutes builds the metrics endpoint and the dashboard the options ask
// for; extra, if not nil, writes more series (cluster mode's). feed, when
// not nil, runs the dashboard's feed until stop is closed: start it once
// the transport exists (transportStats reads it). dashboard false leaves
// the dashboard out (dashboardAllowed said no).
func opsRoutes(o *options, dashboard bool, eng *engine.Engine, transportStats func() transport.Stats, hooks *ops.HookStats,
	script *lua.Runtime, extra func(io.Writer), log *slog.Logger) (routes []transport.Route, feed func(stop <-chan struct{}), err error) {
	dashboard = dashboard && !o.noDashboard
	if o.metricsPath == "" && !dashboard {
		return nil, nil, nil
	}
	cfg := ops.Config{Engine: eng, Transport: transportStats, Hooks: hooks, TopTopics: o.metricsTopics, Version: version, Extra: extra}
	if script != nil {
		cfg.HookErrors = script.HookErrors
	}
	m, err := ops.NewMetrics(cfg)
	if err != nil {
		return nil, nil, err
	}
	if o.metricsPath != "" {
		routes = append(routes, transport.Route{Path: o.metricsPath, Handler: m.Handler(), Token: o.auth.metricsToken})
	}
	if dashboard {
		// The page itself is open (a browser cannot send a header when it
		// navigates); what it shows comes from the internal stats topic and
		// goes out through the publish path, which the transport protects.
		d, err := ops.NewDashboard(ops.DashboardConfig{
			Path: o.dashboardPath, PubPath: o.pubPath, SubPath: o.subPath,
			Metrics: m, Version: version, Logger: log,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("--dashboard-path: %w", err)
		}
		routes = append(routes, transport.Route{Path: o.dashboardPath, Handler: d.Handler()})
		feed = d.Run
	}
	return routes, feed, nil
}

// checking says whether args ask for --check, so that a bad option is
// its "not fine" (exit 1) rather than a usage error.
func checking(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--check" || strings.HasPrefix(a, "--check=") {
			return true
		}
	}
	return false
}

// checkConfig is `tinysse --check FILE.toml`: the file has been read as
// the config and every option checked as the server checks them at start
// (parseOptions); here the files it names are read too (TLS certificate
// and key, JWT keys), then the script it names is checked as --check
// would. A JWKS URL is not fetched.
func checkConfig(o *options, stdout, stderr io.Writer, log *slog.Logger) int {
	if _, err := loadTLS(o); err != nil {
		fmt.Fprintf(stderr, "tinysse: --check: %s: --tls-cert/--tls-key: %v\n", o.check, err)
		return 1
	}
	a := &o.auth
	if _, err := keysOf("jwt-secret", a.secret, "jwt-public-key", a.publicKey); err != nil {
		fmt.Fprintf(stderr, "tinysse: --check: %s: %v\n", o.check, err)
		return 1
	}
	if _, err := keysOf("jwt-publish-secret", a.publishSecret, "jwt-publish-public-key", a.publishKey); err != nil {
		fmt.Fprintf(stderr, "tinysse: --check: %s: %v\n", o.check, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", o.check)
	if o.script == "" {
		return 0
	}
	o.check = o.script
	return checkScript(o, stdout, stderr, log)
}
