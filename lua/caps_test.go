package lua

import (
	"strings"
	"testing"
)

// TestPatternTooComplex: a pattern whose matching nests deeper than 200
// (here 300 optional items, each waiting to backtrack) is a Lua error
// "pattern too complex" from every pattern function, which pcall catches,
// instead of recursion the Go stack and the heap limit do not see; 150
// levels still match.
func TestPatternTooComplex(t *testing.T) {
	out := mustRunInStartup(t, "", `
local s, deep, ok = string.rep("a", 300), string.rep("a?", 300), string.rep("a?", 150)
print(pcall(string.find, s, deep))
print(pcall(string.match, s, deep))
print(pcall(function() for x in s:gmatch(deep) do end end))
print(pcall(string.gsub, s, deep, ""))
print(string.find(s, ok))
`)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("printed %q", out)
	}
	for i, line := range lines[:4] {
		if !strings.HasPrefix(line, "false\t") || !strings.HasSuffix(line, "pattern too complex") {
			t.Errorf("call %d: %q, want false and pattern too complex", i+1, line)
		}
	}
	if lines[4] != "1\t150" {
		t.Errorf("150 levels: %q, want 1 150", lines[4])
	}
}

// TestTemplateCaps: range gives at most 10,000 items (range(10001) is an
// error, as in Jinja2's sandbox) and macros nest at most 100 deep (a
// macro calling itself 150 times is an error, 90 times renders): each
// level is Go stack, which the heap limit does not see.
func TestTemplateCaps(t *testing.T) {
	out := mustRunInStartup(t, `local template = require "template"`, `
print(template.renderstring("{{ range(10000)|length }} {{ range(5, 30005, 3)|length }}"))
print(pcall(template.renderstring, "{{ range(10001)|length }}"))
print(pcall(template.renderstring, "{% for i in range(0, 100000, 2) %}{% endfor %}"))
local rec = "{% macro r(n) %}{% if n > 0 %}{{ r(n - 1) }}{% else %}bottom{% endif %}{% endmacro %}"
print(template.renderstring(rec .. "{{ r(90) }}"))
print(pcall(template.renderstring, rec .. "{{ r(150) }}"))
`)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("printed %q", out)
	}
	if lines[0] != "10000 10000" {
		t.Errorf("range within the cap: %q", lines[0])
	}
	for _, i := range []int{1, 2} {
		if !strings.HasPrefix(lines[i], "false\t") || !strings.Contains(lines[i], "more than 10000") {
			t.Errorf("range over the cap: %q, want an error", lines[i])
		}
	}
	if lines[3] != "bottom" {
		t.Errorf("90 nested macros: %q, want bottom", lines[3])
	}
	if !strings.HasPrefix(lines[4], "false\t") || !strings.Contains(lines[4], "macros nested deeper than 100") {
		t.Errorf("150 nested macros: %q, want an error", lines[4])
	}
}

// TestLoadSourceBounded: load and loadstring refuse a source over 1 MiB
// before gopher-lua's parser (which cannot be stopped) sees it, also when
// load's reader hands it over in pieces; 1 MiB itself compiles.
func TestLoadSourceBounded(t *testing.T) {
	out := mustRunInStartup(t, "", `
local mib = 1024 * 1024
print(type(loadstring(string.rep(" ", mib))))
print(pcall(loadstring, string.rep(" ", mib + 1)))
local function reader(pieces)
  local n = 0
  return function()
    n = n + 1
    if n <= pieces then return string.rep(" ", 64 * 1024) end
  end
end
print(type(load(reader(16))))
print(pcall(load, reader(17)))
local calls = 0
local ok, err = pcall(load, function() calls = calls + 1 return string.rep(" ", 64 * 1024) end)
print(ok, err, calls)
`)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("printed %q", out)
	}
	if lines[0] != "function" || lines[2] != "function" {
		t.Errorf("1 MiB: %q and %q, want functions", lines[0], lines[2])
	}
	if !strings.HasPrefix(lines[1], "false\t") || !strings.Contains(lines[1], "loadstring: chunk larger than 1048576 bytes") {
		t.Errorf("loadstring of 1 MiB + 1: %q", lines[1])
	}
	for _, line := range lines[3:] {
		if !strings.HasPrefix(line, "false\t") || !strings.Contains(line, "load: chunk larger than 1048576 bytes") {
			t.Errorf("load over 1 MiB: %q", line)
		}
	}
	if !strings.HasSuffix(lines[4], "\t17") {
		t.Errorf("an endless reader was called %q times, want 17", lines[4])
	}
}
