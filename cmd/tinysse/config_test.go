package main

import (
	"bytes"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigFile: a TOML file sets options by their long names; the
// command line wins over TINYSSE_*, which wins over the file, which wins
// over the defaults.
func TestConfigFile(t *testing.T) {
	cfg := writeFile(t, "tinysse.toml", `# a comment
listen = "127.0.0.1:2000"
keep-alive = "15s"
capacity = 64
max-body-size = "1MB"
cors-allow-credentials = false
auto-id = true
pub-path = "/pub"
lua-vms = "auto"
max-history-bytes = 1048576
log-level = "debug"
`)
	o, err := parseOptions([]string{"--config", cfg}, env(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.listen != "127.0.0.1:2000" || o.keepAlive != 15*time.Second || o.capacity != 64 || o.maxBodySize != 1<<20 ||
		!o.autoID || o.pubPath != "/pub" || o.luaVMs != 0 || o.maxHistoryBytes != 1<<20 || o.logLevel != slog.LevelDebug {
		t.Errorf("options from the file: %+v", o)
	}
	if o.subPath != "/sse" || o.timeout != 5*time.Minute {
		t.Errorf("defaults not in the file: sub-path %q timeout %v", o.subPath, o.timeout)
	}

	// Precedence: flag > variable > file > default.
	o, err = parseOptions([]string{"--config", cfg, "--capacity", "8"},
		env("TINYSSE_CAPACITY=16", "TINYSSE_KEEP_ALIVE=20s", "TINYSSE_TIMEOUT=1m"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.capacity != 8 || o.keepAlive != 20*time.Second || o.timeout != time.Minute || o.listen != "127.0.0.1:2000" {
		t.Errorf("precedence: capacity %d (flag 8), keep-alive %v (variable 20s), timeout %v (variable 1m), listen %q (file)",
			o.capacity, o.keepAlive, o.timeout, o.listen)
	}

	// TINYSSE_CONFIG names the file too; --config wins over it.
	o, err = parseOptions(nil, env("TINYSSE_CONFIG="+cfg), io.Discard)
	if err != nil || o.capacity != 64 {
		t.Errorf("TINYSSE_CONFIG: %v, capacity %d", err, o.capacity)
	}
	other := writeFile(t, "other.toml", "capacity = 32\n")
	o, err = parseOptions([]string{"--config", other}, env("TINYSSE_CONFIG="+cfg), io.Discard)
	if err != nil || o.capacity != 32 || o.listen != "127.0.0.1:1983" {
		t.Errorf("--config over TINYSSE_CONFIG: %v, capacity %d, listen %q", err, o.capacity, o.listen)
	}
	// A value in the file may still be checked against the others (the
	// same checks as on the command line).
	both := writeFile(t, "both.toml", "cors-allow-credentials = true\n")
	if _, err := parseOptions([]string{"--config", both}, env(), io.Discard); err == nil || !strings.Contains(err.Error(), "--cors-allow-credentials") {
		t.Errorf("credentials with a * origin from the file: %v", err)
	}
}

// TestConfigFileErrors: every mistake in the file stops the server with
// one line naming the file, the line and the key.
func TestConfigFileErrors(t *testing.T) {
	for _, c := range []struct{ content, want string }{
		{"listen = \"127.0.0.1:1\"\nlisen = \"x\"\n", `:2: unknown key "lisen"`},
		{"\n\n[nats]\nurl = \"x\"\n", `:3: nats: tables are not options`},
		{"[server]\nlisten = \"x\"\n", `:1: unknown key "server"`},
		{"nats.url = \"x\"\n", `:1: nats: tables are not options`},
		{"capacity = \"many\"\n", `invalid value for --capacity (from `},
		{"capacity = \"many\"\n", `bad.toml:1): "many" is not a whole number`},
		{"keep-alive = \"soon\"\n", `invalid value for --keep-alive (from `},
		{"keep-alive = 60\n", `invalid value for --keep-alive (from `},
		{"listen = 1983\n", `:1: listen: want a string, not a number`},
		{"auto-id = \"yes\"\n", `:1: auto-id: want true or false, not a string`},
		{"listen = true\n", `:1: listen: want a string, not a boolean`},
		{"capacity = 1.5\n", `:1: capacity: want a number, not a fraction`},
		{"public-topics = [\"a\", \"b\"]\n", `:1: public-topics: want a string, not a list`},
		{"timeout = 1979-05-27\n", `:1: timeout: want a string (DUR), not a date or time`},
		{"config = \"other.toml\"\n", `a config file cannot name another`},
		{"check = \"x.lua\"\n", `"check" is an action, not a setting`},
		{"help = true\n", `"help" is an action, not a setting`},
		{"listen = \"a\"\nlisten = \"b\"\n", `:2:1: `},
		{"listen = \n", `:1:`},
		{"capacity = 0\n", "invalid value for --capacity"},
	} {
		f := writeFile(t, "bad.toml", c.content)
		_, err := parseOptions([]string{"--config", f}, env(), io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error %v, want one line with %q", c.content, err, c.want)
			continue
		}
		if !strings.Contains(err.Error(), f) {
			t.Errorf("%q: error %v does not name the file", c.content, err)
		}
	}
	if _, err := parseOptions([]string{"--config", filepath.Join(t.TempDir(), "none.toml")}, env(), io.Discard); err == nil || !strings.HasPrefix(err.Error(), "--config: ") {
		t.Errorf("missing file: %v", err)
	}
	// A flag or variable over a bad value in the file still finds it bad:
	// the file is checked whole.
	f := writeFile(t, "typo.toml", "capacity = 8\nkeep-alve = \"1s\"\n")
	if _, err := parseOptions([]string{"--config", f, "--keep-alive", "1s"}, env(), io.Discard); err == nil || !strings.Contains(err.Error(), `unknown key "keep-alve"`) {
		t.Errorf("typo under a flag: %v", err)
	}
	// Through run: exit 2, one line on stderr, nothing served.
	var stderr bytes.Buffer
	if code := run([]string{"--config", f}, env(), io.Discard, &stderr, nil); code != 2 || !strings.Contains(stderr.String(), "typo.toml:2: unknown key") {
		t.Errorf("run: exit %d, %q", code, stderr.String())
	}
}

// TestConfigValueOrigin: a value that reads well but is out of its
// bounds (checked after every source is read) is named with where it came
// from, as one that does not read: the file and line, or the variable.
func TestConfigValueOrigin(t *testing.T) {
	f := writeFile(t, "range.toml", "listen = \"127.0.0.1:1\"\ncapacity = -1\nmax-subscribers = -3\n")
	_, err := parseOptions([]string{"--config", f}, env(), io.Discard)
	if want := "invalid value for --capacity (from " + f + ":2): -1 is not between"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("capacity from the file: %v, want %q", err, want)
	}
	_, err = parseOptions([]string{"--config", f, "--capacity", "8"}, env(), io.Discard)
	if want := "invalid value for --max-subscribers (from " + f + ":3): -3 is negative"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("max-subscribers from the file: %v, want %q", err, want)
	}
	_, err = parseOptions([]string{"--config", f, "--max-subscribers", "1"}, env("TINYSSE_CAPACITY=0"), io.Discard)
	if want := "invalid value for --capacity (from TINYSSE_CAPACITY): 0 is not between"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("capacity from the variable: %v, want %q", err, want)
	}
	// A flag's own value is named as before, without an origin.
	_, err = parseOptions([]string{"--capacity", "0"}, env(), io.Discard)
	if want := "invalid value for --capacity: 0 is not between"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("capacity from the flag: %v, want %q", err, want)
	}
	// A whole number that does not read says so, from a variable as from
	// the file (not strconv's words).
	_, err = parseOptions(nil, env("TINYSSE_CAPACITY=abc"), io.Discard)
	if want := `invalid value for --capacity (from TINYSSE_CAPACITY): "abc" is not a whole number`; err == nil || err.Error() != want {
		t.Errorf("capacity from the variable: %v, want %q", err, want)
	}
	_, err = parseOptions(nil, env("TINYSSE_AUTO_ID=yes"), io.Discard)
	if want := `invalid value for --auto-id (from TINYSSE_AUTO_ID): "yes" is not true or false`; err == nil || err.Error() != want {
		t.Errorf("auto-id from the variable: %v, want %q", err, want)
	}
}

// TestCheckConfigFile: --check FILE.toml reads the file as the config,
// checks the options and the files they name, then the script it names;
// exit 0 when all is fine, 1 otherwise.
func TestCheckConfigFile(t *testing.T) {
	script := writeScript(t, "function subscribe(sub) return sub end\n")
	good := writeFile(t, "good.toml", "capacity = 8\nscript = \""+script+"\"\n")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--check", good}, env(), &stdout, &stderr, nil); code != 0 ||
		!strings.Contains(stdout.String(), good+": ok") || !strings.Contains(stdout.String(), "hooks: subscribe") {
		t.Errorf("good: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	plain := writeFile(t, "plain.toml", "listen = \"127.0.0.1:0\"\n")
	stdout.Reset()
	if code := run([]string{"--check", plain}, env(), &stdout, io.Discard, nil); code != 0 || stdout.String() != plain+": ok\n" {
		t.Errorf("without a script: exit %d, %q", code, stdout.String())
	}
	broken := writeScript(t, "function subscribe(sub\n")
	for _, c := range []struct{ content, want string }{
		{"capacity = \"x\"\n", "invalid value for --capacity"},
		{"lisen = 1\n", `unknown key "lisen"`},
		{"script = \"" + broken + "\"\n", "syntax error"},
		{"script = \"/nonexistent/x.lua\"\n", "--check"},
		{"tls-cert = \"/nonexistent/c.pem\"\ntls-key = \"/nonexistent/k.pem\"\n", "--tls-cert/--tls-key"},
		{"jwt-public-key = \"/nonexistent/k.pem\"\n", "--jwt-public-key"},
	} {
		f := writeFile(t, "bad.toml", c.content)
		stderr.Reset()
		if code := run([]string{"--check", f}, env(), io.Discard, &stderr, nil); code != 1 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%q: exit %d, stderr %q, want 1 and %q", c.content, code, stderr.String(), c.want)
		}
	}
	// --check SCRIPT with --config checks both.
	stderr.Reset()
	bad := writeFile(t, "bad.toml", "lisen = 1\n")
	if code := run([]string{"--config", bad, "--check", script}, env(), io.Discard, &stderr, nil); code != 1 || !strings.Contains(stderr.String(), "lisen") {
		t.Errorf("--config with --check: exit %d, %q", code, stderr.String())
	}
}

// TestExampleConfig: examples/tinysse.toml is a valid config whose
// options are those it says, and a server starts from it.
func TestExampleConfig(t *testing.T) {
	example := filepath.Join("..", "..", "examples", "tinysse.toml")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--check", example}, env(), &stdout, &stderr, nil); code != 0 {
		t.Fatalf("--check %s: exit %d, %s", example, code, stderr.String())
	}
	o, err := parseOptions([]string{"--config", example}, env(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.listen != "127.0.0.1:1983" || o.capacity != 1024 || o.keepAlive != 30*time.Second || !o.autoID ||
		o.maxHistoryBytes != 64<<20 || o.apiPath != "/_tinysse/api/" || o.metricsPath != "/metrics" {
		t.Errorf("the example's options: %+v", o)
	}
	addr, _, stop := runServer(t, []string{"--config", example}) // --listen 127.0.0.1:0 wins
	defer stop()
	if r := get(t, "http://"+addr+"/_tinysse/api/topics"); r.status != 200 {
		t.Errorf("API of a server started from the example: %d %s", r.status, r.body)
	}
}
