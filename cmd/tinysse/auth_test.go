package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/testjwt"
	"github.com/tinysse/tinysse/transport"
)

// writeFile writes content to name in a temporary directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAuthBadValues: access-control options that cannot work stop the
// server before it listens, with one line naming the option.
func TestAuthBadValues(t *testing.T) {
	private := writeFile(t, "private.pem", "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBx1\n-----END PRIVATE KEY-----\n")
	empty := writeFile(t, "empty", "\n")
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "http://" + closed.Addr().String() + "/jwks.json"
	closed.Close() // nothing listens there now
	for _, c := range []struct {
		args []string
		env  []string
		code int
		name string
	}{
		{[]string{"--anonymous"}, nil, 2, "--anonymous"},
		{[]string{"--public-topics", "a"}, nil, 2, "--anonymous"},
		{[]string{"--jwt-secret", "s", "--public-topics", "a"}, nil, 2, "--public-topics"},
		{[]string{"--jwt-secret", "s", "--anonymous", "--public-topics", "a*"}, nil, 2, "--public-topics"},
		{[]string{"--jwt-publish-secret", "s"}, nil, 2, "--jwt-publish-secret"},
		{[]string{"--admin-token", "t", "--dashboard-public"}, nil, 2, "--dashboard-public"},
		{[]string{"--dashboard-public", "--no-dashboard"}, nil, 2, "--dashboard-public"},
		{[]string{"--jwt-cookie", "a=b"}, nil, 2, "--jwt-cookie"},
		{[]string{"--jwt-leeway", "soon"}, nil, 2, "--jwt-leeway"},
		{nil, []string{"TINYSSE_JWT_LEEWAY=-1s"}, 2, "--jwt-leeway"},
		{[]string{"--jwt-secret", "@" + filepath.Join(t.TempDir(), "missing")}, nil, 2, "--jwt-secret"},
		{nil, []string{"TINYSSE_ADMIN_TOKEN=@" + empty}, 2, "--admin-token"},
		{[]string{"--jwt-public-key", filepath.Join(t.TempDir(), "missing.pem")}, nil, 1, "--jwt-public-key"},
		{[]string{"--jwt-public-key", private}, nil, 1, "--jwt-public-key"},
		{[]string{"--jwt-secret", "-----BEGIN PUBLIC KEY-----"}, nil, 1, "--jwt-secret"},
		{[]string{"--jwks", downURL}, nil, 1, "--jwks"},
		{[]string{"--jwks", empty}, nil, 1, "--jwks"},
	} {
		t.Run(strings.Join(append(c.env, c.args...), " "), func(t *testing.T) {
			var stderr bytes.Buffer
			ready := make(chan string, 1)
			if code := run(append([]string{"--listen", "127.0.0.1:0"}, c.args...), env(c.env...), io.Discard, &stderr, ready); code != c.code {
				t.Errorf("exit %d, want %d (%s)", code, c.code, stderr.String())
			}
			msg := stderr.String()
			if strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "tinysse: ") || !strings.Contains(msg, c.name) {
				t.Errorf("stderr %q, want one line naming %s", msg, c.name)
			}
			if len(ready) != 0 {
				t.Error("it listened")
			}
		})
	}
}

// TestAuthOptions: every access-control option has its TINYSSE_ variable;
// @FILE reads a secret from a file.
func TestAuthOptions(t *testing.T) {
	secret := writeFile(t, "secret", "from a file\n")
	o, err := parseOptions(nil, env(
		"TINYSSE_JWT_SECRET=@"+secret, "TINYSSE_JWT_PUBLIC_KEY=k.pem", "TINYSSE_JWKS=https://id.example/jwks.json",
		"TINYSSE_JWT_PUBLISH_SECRET=ps", "TINYSSE_JWT_PUBLISH_PUBLIC_KEY=pk.pem",
		"TINYSSE_JWT_AUDIENCE=feed", "TINYSSE_JWT_ISSUER=me", "TINYSSE_JWT_LEEWAY=5s", "TINYSSE_JWT_COOKIE=tok",
		"TINYSSE_ANONYMOUS=true", "TINYSSE_PUBLIC_TOPICS=lobby, news/*", "TINYSSE_ADMIN_TOKEN=adm", "TINYSSE_METRICS_TOKEN=met",
	), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a := o.auth
	if a.secret != "from a file" || a.publicKey != "k.pem" || a.jwks != "https://id.example/jwks.json" || a.publishSecret != "ps" ||
		a.publishKey != "pk.pem" || a.audience != "feed" || a.issuer != "me" || a.leeway != 5*time.Second || a.cookie != "tok" ||
		!a.anonymous || strings.Join(a.publicTopicList, "|") != "lobby|news/*" || a.adminToken != "adm" || a.metricsToken != "met" {
		t.Errorf("options from the environment: %+v", a)
	}
	o, err = parseOptions([]string{"--dashboard-public"}, env(), io.Discard)
	if err != nil || !o.auth.dashboardPublic || o.auth.leeway != 30*time.Second || o.auth.cookie != "tinysseAuthorization" {
		t.Errorf("defaults: %+v %v", o.auth, err)
	}
}

// TestRunAuth: the whole binary with a secret from a file, an admin
// token, a metrics token and anonymous public topics.
func TestRunAuth(t *testing.T) {
	const secret = "the secret"
	script := writeScript(t, `function subscribe(sub)
  if sub.req.claims and sub.req.claims.sub == "mallory" then return nil end
  return sub
end
function startup(cli) assert(cli.jwt == true and cli.jwt_leeway == 30000 and cli.jwt_secret == nil and cli.admin_token == nil) end`)
	addr, _, _ := runServer(t, []string{"--jwt-secret", "@" + writeFile(t, "s", secret+"\n"), "--admin-token", "adm1n",
		"--metrics-token", "scrape", "--anonymous", "--public-topics", "lobby", "--script", script})
	base := "http://" + addr
	do := func(method, path, body, token string) reply {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := (&http.Client{Timeout: wait}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return reply{resp.StatusCode, string(b)}
	}
	writer := testjwt.HS256(t, secret, testjwt.Claims(time.Hour, testjwt.Topics([]string{"news"}, []string{"news"})))
	mallory := testjwt.HS256(t, secret, map[string]any{"sub": "mallory", "tinysse": map[string]any{"subscribe": []string{"news"}}})

	news := openStreamWith(t, addr, "/sse?topic=news", writer)
	news.readUntil(t, ": ok\n\n")
	lobby := openStream(t, addr, "/sse?topic=lobby")
	lobby.readUntil(t, ": ok\n\n")
	for _, c := range []struct {
		method, path, body, token string
		want                      int
	}{
		{"POST", "/sse?topic=news", `{"data":"no token"}`, "", 401},
		{"POST", "/sse?topic=news", `{"data":"wrong secret"}`, testjwt.HS256(t, "other", testjwt.Claims(time.Hour, nil)), 401},
		{"POST", "/sse?topic=sport", `{"data":"not covered"}`, writer, 403},
		{"POST", "/sse?topic=news", `{"data":"hello"}`, writer, 202},
		{"POST", "/sse?topic=lobby", `{"data":"from the admin"}`, "adm1n", 202},
		{"GET", "/sse?topic=private", "", "", 401},
		{"GET", "/sse?topic=news", "", mallory, 403}, // the script refuses what the token allows
		{"GET", "/metrics", "", "", 401},
		{"GET", "/metrics", "", writer, 403},
		{"GET", "/_tinysse/", "", "", 200}, // the page; its data is the stats topic
	} {
		if r := do(c.method, c.path, c.body, c.token); r.status != c.want {
			t.Errorf("%s %s (token %.10q): %d %s, want %d", c.method, c.path, c.token, r.status, r.body, c.want)
		}
	}
	news.readUntil(t, "data: hello\n\n")
	lobby.readUntil(t, "data: from the admin\n\n")
	if r := do("GET", "/metrics", "", "scrape"); r.status != 200 || !strings.Contains(r.body, `tinysse_publish_rejected_total{reason="unauthorized"} 2`) {
		t.Errorf("/metrics with its token: %d, want the two 401s counted:\n%.2000s", r.status, r.body)
	}
	if r := do("GET", "/metrics", "", "adm1n"); r.status != 200 {
		t.Errorf("/metrics with the admin token: %d", r.status)
	}
	// The dashboard's feed: an internal topic, for the admin only.
	if r := do("GET", "/sse?topic=_tinysse.stats", "", writer); r.status != 403 {
		t.Errorf("stats topic with a user token: %d", r.status)
	}
	stats := openStreamWith(t, addr, "/sse?topic=_tinysse.stats", "adm1n")
	stats.readUntil(t, "event: stats\n")
}

// TestDashboardOffWhenExposed: on an address others can reach, with
// nothing protecting it, the dashboard is not served and the log says how
// to turn it on; an admin token or --dashboard-public turns it on. (Tests
// listen on 127.0.0.1 only: the exposed address is given, not bound.)
// TestShortSecretWarned: a JWT secret shorter than 32 bytes is taken, with
// a warning naming the flag and its length; 32 bytes or a key file are
// not warned about.
func TestShortSecretWarned(t *testing.T) {
	long := strings.Repeat("k", minSecret)
	for _, c := range []struct {
		args []string
		want []string // flags warned about
	}{
		{[]string{"--jwt-secret", "hunter2"}, []string{"--jwt-secret is 7 bytes"}},
		{[]string{"--jwt-secret", long}, nil},
		{[]string{"--jwt-secret", long, "--jwt-publish-secret", "short"}, []string{"--jwt-publish-secret is 5 bytes"}},
		{[]string{"--jwt-secret", "x", "--jwt-publish-secret", "y"}, []string{"--jwt-secret is 1 bytes", "--jwt-publish-secret is 1 bytes"}},
	} {
		o, err := parseOptions(c.args, env(), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		if _, err := newAuth(o, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		if n := strings.Count(logs.String(), "level=WARN"); n != len(c.want) {
			t.Errorf("%q: %d warnings, want %d: %s", c.args, n, len(c.want), logs.String())
		}
		for _, w := range c.want {
			if !strings.Contains(logs.String(), w) || !strings.Contains(logs.String(), "256 bits") {
				t.Errorf("%q: no %q in %s", c.args, w, logs.String())
			}
		}
	}
}

func TestDashboardOffWhenExposed(t *testing.T) {
	for addr, want := range map[string]bool{
		"0.0.0.0:1983": true, "[::]:1983": true, "192.0.2.7:80": true, "[2001:db8::1]:80": true,
		"127.0.0.1:1983": false, "127.3.4.5:80": false, "[::1]:1983": false,
	} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if exposed(a) != want {
			t.Errorf("exposed(%s) = %v", addr, !want)
		}
	}
	public := &net.TCPAddr{IP: net.IPv4zero, Port: 1983}
	for _, c := range []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"--admin-token", "t"}, true},
		{[]string{"--jwt-secret", "s"}, true},
		{[]string{"--dashboard-public"}, true},
		{[]string{"--no-dashboard"}, true}, // nothing to turn off, nothing to say
	} {
		o, err := parseOptions(c.args, env(), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		got := dashboardAllowed(o, public, slog.New(slog.NewTextHandler(&logs, nil)))
		if got != c.want {
			t.Errorf("%q: dashboard allowed %v, want %v", c.args, got, c.want)
		}
		if said := strings.Contains(logs.String(), "dashboard off") && strings.Contains(logs.String(), "--admin-token") &&
			strings.Contains(logs.String(), "--dashboard-public"); said == got {
			t.Errorf("%q: log %q", c.args, logs.String())
		}
		if !dashboardAllowed(o, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, slog.New(slog.NewTextHandler(io.Discard, nil))) {
			t.Errorf("%q: dashboard off on loopback", c.args)
		}
		// What the server then serves, over HTTP on 127.0.0.1.
		if c.args == nil || c.args[0] != "--no-dashboard" {
			status := serveOps(t, o, got, "/_tinysse/")
			if want := map[bool]int{true: 200, false: 404}[got]; status != want {
				t.Errorf("%q: GET /_tinysse/: %d, want %d", c.args, status, want)
			}
		}
	}
}

// serveOps serves the routes opsRoutes builds for o on 127.0.0.1 and
// returns the status of a GET of path.
func serveOps(t *testing.T, o *options, dashboard bool, path string) int {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	eng, err := engine.New(engine.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	var srv *transport.Server
	routes, _, err := opsRoutes(o, dashboard, eng, func() transport.Stats { return srv.Stats() }, nil, nil, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	srv, err = transport.New(transport.Config{Routes: routes, Logger: quiet}, eng)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	return get(t, "http://"+ln.Addr().String()+path).status
}
