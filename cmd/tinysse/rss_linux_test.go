package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// procStatusKB reads one field (VmRSS, VmHWM) of /proc/PID/status, in KiB.
func procStatusKB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", field, rest, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// rssCases are hostile calls of built-ins, each in a publish hook of its
// own: prelude runs in the main chunk (what it builds is in the
// baseline), call in the hook. Each must be stopped (a 500) or refused
// before it allocates much.
var rssCases = []struct{ name, prelude, call string }{
	{"gsub output", ``, `local s = string.rep("x", 8e6) s:gsub("x", "yyyyyyyyyy")`},
	{"gsub loop", ``, `local s = string.rep("x", 4e6) while true do local r = s:gsub("x", "yy") end`},
	{"rep", ``, `string.rep("x", 1e9)`},
	{"rep loop", ``, `local t = {} for i = 1, 200 do t[i] = string.rep(tostring(i), 8e6) end`},
	{"format", `X = string.rep("x", 16e6)`, `string.format(string.rep("%s", 20), X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X)`},
	{"find", `A = string.rep("a", 3000)`, `A:find(".-.-.-.-.-b")`},
	{"match", `A = string.rep("a", 3000)`, `A:match("(a*)(a*)(a*)(a*)b")`},
	{"gmatch collect", `X = string.rep("x", 16e6)`, `local t = {} for c in X:gmatch("(x)") do t[#t + 1] = c end`},
	{"concat", `X = string.rep("x", 16e6)`, `local t = {} for i = 1, 200 do t[i] = X end table.concat(t)`},
	{"sort", `BIG = {} for i = 1, 1e6 do BIG[i] = (i * 7919) % 1000003 end`, `table.sort(BIG, function(a, b) return a > b end)`},
	{"json encode", `json = require "json"`, `local t = {1} for i = 1, 40 do t = {t, t} end json.encode(t)`},
	{"json decode", `json = require "json"`, `json.decode("[" .. string.rep("[1,2,3],", 2e6) .. "0]")`},
	{"template output", `template = require "template"`, `template.renderstring("{% for i in range(10000) %}{% for j in range(10000) %}{{ x }}{% endfor %}{% endfor %}", {x = string.rep("y", 1000)})`},
	{"template *", `template = require "template"`, `template.renderstring("{{ 'x' * 1000000000 }}")`},
	{"template * nested", `template = require "template"`, `template.renderstring("{% set n = 1000000000 %}{% set s = ('ab' * (n // 2)) %}{{ s|length }}")`},
	{"template ~ doubling", `template = require "template"`, `template.renderstring("{% set a = x ~ x %}{% set b = a ~ a %}{% set c = b ~ b %}{% set d = c ~ c %}{% set e = d ~ d %}{% set f = e ~ e %}{{ f|length }}", {x = string.rep("x", 8e6)})`},
	{"template + list", `template = require "template"`, `template.renderstring("{% set l = range(10000)|list %}{% set l = l + l + l + l + l + l + l + l %}{% set l = l + l + l + l + l + l + l + l %}{% set l = l + l + l + l + l + l + l + l %}{{ l|length }}")`},
	{"template center", `template = require "template"`, `template.renderstring("{{ 'x'|center(1000000000) }}")`},
	{"template indent", `template = require "template"`, `template.renderstring("{{ x|indent(100000) }}", {x = string.rep("\n", 1e4)})`},
	{"template replace", `template = require "template"`, `template.renderstring("{{ x|replace('a', y) }}", {x = string.rep("a", 1e4), y = string.rep("b", 1e5)})`},
	{"template join", `template = require "template"`, `template.renderstring("{{ range(10000)|join(y) }}", {y = string.rep("b", 1e5)})`},
	{"template format", `template = require "template"`, `template.renderstring("{{ '%1000000000s'|format('x') }}")`},
	{"template ljust", `template = require "template"`, `template.renderstring("{{ 'x'.ljust(1000000000) }}")`},
	{"template str.format", `template = require "template"`, `template.renderstring("{{ '{:>1000000000}'.format('x') }}")`},
	{"template expandtabs", `template = require "template"`, `template.renderstring("{{ x.expandtabs(100000) }}", {x = string.rep("\t", 1e4)})`},
	{"template batch", `template = require "template"`, `template.renderstring("{{ [1]|batch(30000000, 'x')|list|length }}")`},
	{"template escape chain", `template = require "template"`, `template.renderstring("{{ x|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|length }}", {x = string.rep("&", 2e6)})`},
	{"sqlite zeroblob", `sqlite = require "sqlite" DB = sqlite.open(":memory:")`, `DB:query("select zeroblob(1000000000)")`},
	{"sqlite columns", `sqlite = require "sqlite" DB = sqlite.open(":memory:")`, `DB:query("select zeroblob(6e7) a, zeroblob(6e7) b, zeroblob(6e7) c, zeroblob(6e7) d, zeroblob(6e7) e, zeroblob(6e7) f")`},
	{"sqlite rows", `sqlite = require "sqlite" DB = sqlite.open(":memory:")`, `DB:query("with recursive c(x) as (select 1 union all select x + 1 from c limit 100) select zeroblob(4e7) from c")`},
	{"sqlite in-memory database", `sqlite = require "sqlite" DB = sqlite.open(":memory:") DB:exec("create table t (b)")`, `for i = 1, 100 do DB:exec("insert into t values (zeroblob(1e7))") end`},
}

// TestScriptMemoryBoundsRSS: with --script-memory 64MiB, the peak RSS of
// the built binary while a publish hook makes one hostile call of a
// built-in (each case above) stays under its RSS before the call plus
// 4 × 64 MiB, and the call is answered 500. Measured from /proc: the peak
// (VmHWM) is reset just before the call (clear_refs 5), so that it is the
// call's. Before, gsub, format, concat, json and template built what they
// were asked (RSS to gigabytes), and SQLite's allocations were outside
// every limit.
func TestScriptMemoryBoundsRSS(t *testing.T) {
	bin := buildBinary(t)
	const limit = 64 << 20
	for _, tc := range rssCases {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.prelude + "\nfunction publish(pub)\n  if pub.msg.data == \"go\" then\n" + tc.call + "\n  end\n  return pub\nend\n"
			addr := freeAddr(t)
			var logs syncBuffer
			p := startProcess(t, addr, io.Discard, &logs, bin, "--listen", addr, "--script", writeScript(t, src),
				"--script-memory", "64MiB", "--script-timeout", "2s", "--data-dir", t.TempDir())
			pid := p.Cmd.Process.Pid
			client := &http.Client{Timeout: 30 * time.Second}
			post := func(data string) (int, string) {
				resp, err := client.Post("http://"+addr+"/sse", "application/json", strings.NewReader(`{"data":"`+data+`"}`))
				if err != nil {
					t.Fatalf("publish %s: %v", data, err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			if status, body := post("warm"); status != http.StatusAccepted {
				t.Fatalf("warm-up: %d %s", status, body)
			}
			base := procStatusKB(t, pid, "VmRSS")
			reset := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
			if reset != nil {
				t.Logf("cannot reset the peak (%v): it includes start-up", reset)
			}
			start := time.Now()
			status, body := post("go")
			took := time.Since(start)
			peak := procStatusKB(t, pid, "VmHWM")
			t.Logf("%s: %d %s after %v; RSS before %d MiB, peak %d MiB (+%d MiB)", tc.name, status, body,
				took.Round(time.Millisecond), base>>10, peak>>10, (peak-base)>>10)
			if status != http.StatusInternalServerError {
				t.Errorf("status %d %s, want 500", status, body)
			}
			if grew := (peak - base) << 10; grew > 4*limit {
				t.Errorf("peak RSS grew by %d MiB during the call, want under %d MiB", grew>>20, 4*limit>>20)
			}
			if status, body := post("after"); status != http.StatusAccepted {
				t.Errorf("the next publish: %d %s", status, body)
			}
		})
	}
}
