package lua

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// The expected outputs below are what Jinja2 3.1 renders for the same
// template and context.

func TestTemplateRenderString(t *testing.T) {
	out := mustRunInStartup(t, `local template = require "template"`, `
print(template.renderstring("Hello, {{ name }}!", {name = "World"}))
print(template.renderstring("{{ n }} {{ r }} {{ n + 1 }} {{ ok }}|{% for x in xs %}{{ loop.index }}{{ x }}{% endfor %}|{{ user.name }}|{{ html }}|{{ missing }}|",
  {n = 3, r = 1.5, ok = true, xs = {"a", "b"}, user = {name = "ann"}, html = "<b>"}))
print(template.renderstring("no context"))
`)
	want := "Hello, World!\n3 1.5 4 True|1a2b|ann|<b>||\nno context\n"
	if out != want {
		t.Errorf("printed %q, want %q", out, want)
	}
}

func TestTemplateExtends(t *testing.T) {
	out := mustRunInStartup(t, `local template = require "template"`, `
local lib = template.library{templates = {
  base = "B[{% block b %}<b>{{ x }}</b>{% endblock %}]",
  child = '{% extends "base" %}{% block b %}({{ super() }}|{{ self.t() }}){% endblock %}{% block t %}T{% endblock %}',
}}
print(lib:render("child", {x = "<&>\"'"}))
print(lib:render("child", {x = "again"}))
print(lib:renderstring('{% extends "base" %}{% block b %}inline {{ x }}{% endblock %}', {x = 1}))
`)
	want := "B[(<b>&lt;&amp;&gt;&#34;&#39;</b>|T)]\nB[(<b>again</b>|T)]\nB[inline 1]\n"
	if out != want {
		t.Errorf("printed %q, want %q", out, want)
	}
}

func TestTemplateDirectory(t *testing.T) {
	out := mustRunInStartup(t, `local template = require "template"`, `
local lib = template.library{
  directory = "testdata/templates",
  templates = {child = '{% extends "base.html" %}{% block body %}[{{ x }}]{% endblock %}'},
  trim_blocks = true,
}
print(lib:render("page.html", {title = "A&B", items = {"<x>", "y"}}))
print(lib:render("child", {x = "'"}))
for _, name in ipairs{"../pkg_template.go", "/etc/passwd", "partials/../../../go.mod", "nope.html"} do
  local ok, err = pcall(lib.render, lib, name)
  print(ok, err)
end
`)
	lines := strings.Split(out, "\n")
	want := []string{"<title>A&amp;B - Base</title>", "<li>&lt;x&gt;</li><li>y</li>", "<title>Base</title>", "[&#39;]"}
	if len(lines) < 8 || !reflect.DeepEqual(lines[:4], want) {
		t.Fatalf("printed %q, want first %q", out, want)
	}
	for _, line := range lines[4:8] {
		if !strings.HasPrefix(line, "false\t") || !strings.Contains(line, "template") {
			t.Errorf("escaping the directory: %q, want an error", line)
		}
	}
	if strings.Contains(out, "package lua") || strings.Contains(out, "root:") || strings.Contains(out, "module github.com") {
		t.Errorf("read a file outside the directory: %q", out)
	}
}

func TestTemplateAutoescapeHTML(t *testing.T) {
	out := mustRunInStartup(t, `local template = require "template"`, `
local lib = template.library{}  -- html by default
local ctx = {x = "<", y = ">", c = true, l = {"a<", 1}, n = 3, s = "<&>\"'"}
print(lib:renderstring("a  {{- x -}}  b|{{ x if c else y }}|{{ y if not c else x }}|{{ l }}|{{ n }}", ctx))
print(lib:renderstring("{{ s }}|{{ s|safe }}|{{ s|e }}|{% autoescape false %}{{ s }}{% endautoescape %}|{{ '}}' }}|{% raw %}{{ s }}{% endraw %}", ctx))
print(lib:renderstring("{% macro m(v) %}<i>{{ v }}</i>{% endmacro %}{{ m(s) }}|{{ l|join(s) }}", ctx))
`)
	want := "a&lt;b|&lt;|&lt;|[&#39;a&lt;&#39;, 1]|3\n" +
		"&lt;&amp;&gt;&#34;&#39;|<&>\"'|&lt;&amp;&gt;&#34;&#39;|<&>\"'|}}|{{ s }}\n" +
		"<i>&lt;&amp;&gt;&#34;&#39;</i>|a&lt;&lt;&amp;&gt;&#34;&#39;1\n"
	if out != want {
		t.Errorf("printed\n%q\nwant\n%q", out, want)
	}
}

func TestTemplateAutoescapeJSON(t *testing.T) {
	out := mustRunInStartup(t, `local template = require "template"`, `
local lib = template.library{autoescape = "json"}
print(lib:renderstring([[{"name": {{ name }}, "n": {{ n }}, "r": {{ r }}, "tags": {{ tags }}, "ok": {{ ok }},
 "missing": {{ missing }}, "user": {{ user }}, "raw": {{ raw|safe }}, "cat": {{ "a" ~ name }},
 "joined": {{ tags|join(",") }}, "pick": {{ n if ok else name }}}]], {
  name = 'say "hi" <b>', n = 3, r = 1.5, tags = {"a", "b"}, ok = true, user = {name = "x"}, raw = "[1]",
}))
`)
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	want := map[string]any{
		"name": `say "hi" <b>`, "n": 3.0, "r": 1.5, "tags": []any{"a", "b"}, "ok": true,
		"missing": nil, "user": map[string]any{"name": "x"}, "raw": []any{1.0}, "cat": `asay "hi" <b>`,
		"joined": "a,b", "pick": 3.0,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if !strings.Contains(out, `"name": "say \"hi\" <b>"`) {
		t.Errorf("strings should be JSON without HTML escapes: %s", out)
	}
}

func TestTemplateAutoescapeNone(t *testing.T) {
	out := mustRunInStartup(t, `local template = require "template"`, `
local lib = template.library{autoescape = "none", templates = {t = "{{ s }}|{{ l }}"}}
print(lib:render("t", {s = "<&>\"'", l = {"a<"}}))
`)
	if want := "<&>\"'|['a<']\n"; out != want {
		t.Errorf("printed %q, want %q", out, want)
	}
}

func TestTemplateWhitespace(t *testing.T) {
	const src = "<ul>\n  {% for u in users %}\n    <li>{{ u }}</li>\n  {% endfor %}\n</ul>\n"
	for _, tc := range []struct {
		opts, want string
	}{
		{"", "<ul>\n  \n    <li>a&amp;b</li>\n  \n    <li>c</li>\n  \n</ul>"},
		{"trim_blocks = true", "<ul>\n      <li>a&amp;b</li>\n      <li>c</li>\n  </ul>"},
		{"lstrip_blocks = true", "<ul>\n\n    <li>a&amp;b</li>\n\n    <li>c</li>\n\n</ul>"},
		{"keep_trailing_newline = true", "<ul>\n  \n    <li>a&amp;b</li>\n  \n    <li>c</li>\n  \n</ul>\n"},
		{"trim_blocks = true, lstrip_blocks = true, keep_trailing_newline = true", "<ul>\n    <li>a&amp;b</li>\n    <li>c</li>\n</ul>\n"},
	} {
		opts := "templates = {t = " + strconv.Quote(src) + "}"
		if tc.opts != "" {
			opts += ", " + tc.opts
		}
		out := mustRunInStartup(t, `local template = require "template"`, `
local lib = template.library{`+opts+`}
print(lib:render("t", {users = {"a&b", "c"}}))
`)
		if out != tc.want+"\n" {
			t.Errorf("{%s}: rendered %q, want %q", tc.opts, out, tc.want)
		}
	}
}

func TestTemplateAddRemoveClear(t *testing.T) {
	out := mustRunInStartup(t, `local template = require "template"`, `
local lib = template.library{templates = {base = "1[{% block b %}{% endblock %}]"}}
lib:add("child", '{% extends "base" %}{% block b %}{{ x }}{% endblock %}')
print(lib:render("child", {x = "a"}))
lib:add("base", "2[{% block b %}{% endblock %}]")
print(lib:render("child", {x = "b"}))
lib:remove("base")
print(pcall(lib.render, lib, "child"))
lib:add("base", "3[{% block b %}{% endblock %}]")
print(lib:render("child", {x = "c"}))
lib:clear()
print(pcall(lib.render, lib, "child"))
print(lib:renderstring("still {{ x }}", {x = "works"}))
`)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 6 || lines[0] != "1[a]" || lines[1] != "2[b]" || lines[3] != "3[c]" || lines[5] != "still works" {
		t.Fatalf("printed %q", out)
	}
	for _, i := range []int{2, 4} {
		if !strings.HasPrefix(lines[i], "false\t") || !strings.Contains(lines[i], "not found") {
			t.Errorf("line %d: %q, want a template not found", i+1, lines[i])
		}
	}
}

func TestTemplateErrors(t *testing.T) {
	for _, tc := range []struct{ code, want string }{
		{`template.renderstring("{% if %}")`, "template: <string>"},
		{`template.renderstring("{{ x | nosuchfilter }}")`, "nosuchfilter"},
		{`template.renderstring('{% extends "base" %}')`, "not found"},
		{`template.renderstring("{{ x }}", "ctx")`, "context must be a table"},
		{`template.library{}:render("nope")`, `template "nope" not found`},
		{`template.library{autoescape = "xml"}`, "autoescape must be"},
		{`template.library{trim_block = true}`, "unknown option trim_block"},
		{`template.library{directory = "testdata/nope"}`, "no such file"},
		{`template.library{templates = {t = 1}}`, "templates must map names to sources"},
		{`template.library{}.render("x")`, "template library expected"},
	} {
		_, err := runInStartup(t, `local template = require "template"`, tc.code, Config{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.code, err, tc.want)
		}
	}
	// A template error is a Lua error a script can catch.
	out := mustRunInStartup(t, `local template = require "template"`, `
local ok, err = pcall(template.renderstring, "{% for %}")
print(ok, type(err))
`)
	if out != "false\tstring\n" {
		t.Errorf("pcall printed %q", out)
	}
}
