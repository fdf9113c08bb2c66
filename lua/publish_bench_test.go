package lua_test

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/lua"
)

// publishHooks are the publish hooks BenchmarkPublishHook runs: one that
// does nothing, one that does what a publish hook typically does (escapes
// the body with gsub, builds a table, encodes it as JSON), and the table
// and JSON part alone and a few string functions alone (whose code did not
// change as much as gsub's).
var publishHooks = []struct{ name, src string }{
	{"return", `function publish(pub) return pub end`},
	{"typical", `local json = require "json"
local escapes = {["<"] = "&lt;", [">"] = "&gt;", ["&"] = "&amp;"}
function publish(pub)
  local text = pub.msg.data:gsub("[<>&]", escapes)
  local doc = {user = pub.req.headers["x-user"] or "anon", text = text, size = #text, tags = {"news", "sport", "x"}}
  pub.msg.data = json.encode(doc)
  pub.msg.event = "post"
  return pub
end`},
	{"json", `local json = require "json"
function publish(pub)
  local doc = {user = pub.req.headers["x-user"] or "anon", text = pub.msg.data, size = #pub.msg.data, tags = {"news", "sport", "x"}}
  pub.msg.data = json.encode(doc)
  return pub
end`},
	{"strings", `function publish(pub)
  local d = pub.msg.data
  local first = d:match("^(%w+)")
  pub.msg.event = string.format("%s-%d-%s", first:lower(), #d, d:sub(1, 5):upper())
  pub.msg.id = tostring(d:find("world", 1, true))
  return pub
end`},
}

// BenchmarkPublishHook measures one call of a publish hook through the
// engine seam (rt.Hooks().Publish), as the transport makes it, with a 1 KB
// body. cpu-ns/op is the process's CPU time per call (the GC's included):
// on a shared machine ns/op also counts the time the process waited for a
// CPU. Run the same files on main for the baseline (BENCHMARKS.md).
func BenchmarkPublishHook(b *testing.B) {
	body := strings.Repeat("Hello <b>world</b> & friends; ", 34)[:1000]
	req := &engine.Request{Method: "POST", Path: "/sse", Headers: map[string]string{"x-user": "ann", "content-type": "application/json"}}
	for _, h := range publishHooks {
		b.Run(h.name, func(b *testing.B) {
			rt, err := lua.Load(lua.Config{Script: "bench.lua", Source: []byte(h.src), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			if err := rt.Start(); err != nil {
				b.Fatal(err)
			}
			defer rt.Close()
			hooks := rt.Hooks()
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			cpu := processCPU()
			for b.Loop() {
				m := &engine.Message{Data: body, HasData: true}
				if ok, err := hooks.Publish(req, m); !ok || err != nil {
					b.Fatalf("publish hook: %v %v", ok, err)
				}
			}
			if cpu > 0 {
				b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
			}
		})
	}
}
