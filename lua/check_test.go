package lua

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	cases := []struct {
		name, src string
		hooks     []string
		err       string // a substring of the error; "" means none
	}{
		{"hooks", "local n = 0\nfunction subscribe(sub) return sub end\nfunction message(pub, sub) return pub end\nfunction helper() end",
			[]string{"message", "subscribe"}, ""},
		{"none", "x = 1", []string{}, ""},
		{"startup not run", "function startup(cli) error('boom') end", []string{"startup"}, ""},
		{"builtins", "local json = require 'json'\nlocal s = json.encode({a = 1})\nfunction publish(p) return p end", []string{"publish"}, ""},
		{"syntax", "function publish(pub)\n  return pub\nedn\n", nil, "check.lua line:3"},
		{"runtime", "local x = nil\n\nx.y = 1\n", nil, "check.lua:3"},
		{"sandbox", "os.exit(1)", nil, "check.lua:1"},
		{"unknown package", "require 'nope'", nil, "nope"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rt, err := Load(Config{Script: "check.lua", Source: []byte(c.src)})
			var hooks []string
			if err == nil {
				hooks, err = rt.Check()
			}
			switch {
			case c.err == "" && err != nil:
				t.Fatalf("error %v", err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("error %v, want one containing %q", err, c.err)
			case c.err == "" && !slices.Equal(hooks, c.hooks):
				t.Fatalf("hooks %v, want %v", hooks, c.hooks)
			}
		})
	}
}

func TestCheckMainChunkTimeout(t *testing.T) {
	rt, err := Load(Config{Script: "loop.lua", Source: []byte("while true do end"), Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Check(); err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Fatalf("error %v, want the main chunk reported as still running", err)
	}
}
