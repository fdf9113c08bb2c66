package lua

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	gonjabuiltins "github.com/nikolalohinski/gonja/v2/builtins"
	gonjacfg "github.com/nikolalohinski/gonja/v2/config"
	gonjaexec "github.com/nikolalohinski/gonja/v2/exec"
	gonjaloaders "github.com/nikolalohinski/gonja/v2/loaders"
)

// tplGuardCorpus uses *, + and ~ in every place gonja keeps an expression,
// with the templates it includes, imports and extends.
var tplGuardCorpus = []string{
	"{{ 2 * 3 }}|{{ 'ab' * 3 }}|{{ 1.5 * 2 }}|{{ 2 * 1.5 }}|{{ 'a' + 'b' }}|{{ 1 + 2 }}|{{ [1] + [2] }}|{{ 'x' ~ 1 ~ none }}|{{ 3 * 'ab' }}",
	"{{ 'a' * 0 }}|{{ '' ~ '' }}|{{ 0 * 5 }}|{{ [] + [] }}|{{ 0.0 * 1 }}|{{ 'a' * -2 }}|{{ false + 0 }}",
	"{{ 2 * 3 * 4 }} {{ 2 ** 3 * 2 }} {{ 10 / 2 * 3 }} {{ 7 % 4 * 2 }} {{ -2 * 3 }} {{ not 0 * 1 }} {{ 1 + 2 * 3 ~ 4 }} {{ 9 // 2 * 2 }}",
	"{% set x = 2 * y %}{{ x }}{% set s = 'ab' ~ y %}{{ s }}{% set a, b = y * 2, y ~ y %}{{ a }}{{ b }}",
	"{% with a = y * 2, b = 'q' ~ y %}{{ a }}{{ b }}{% endwith %}",
	"{% for i in range(y * 2) if i * 2 > 2 %}{{ i * i }},{% else %}none{% endfor %}{% for i in [] %}{% else %}{{ y * 4 }}{% endfor %}",
	"{% if y * 2 == 6 %}yes{% elif y + 1 %}no{% else %}{{ y * 9 }}{% endif %}",
	"{% macro m(a, b = 2 * 3) %}{{ a * b }}{% endmacro %}{{ m(2) }}{{ m(2, 'x' ~ 1) }}{{ m(a = y * 2) }}",
	"{% set n %}{{ y * 5 }}{% endset %}{{ n }}",
	"{{ [y * 2, 'a' ~ 'b'] }}{{ {'k': y * 3} }}{{ (y * 2, y ~ 'z') }}",
	"{{ (y * 2) if y * 2 > 1 else (y + 1) }}{{ 'a' ~ 'b' if y * 0 else 'c' * 2 }}",
	"{{ (y * 2)|string ~ 'x' }}{{ y * 2 is even }}{{ y * 2 in [6] }}{{ 'x'|upper * 2 }}",
	"{% macro m2(x) %}[{{ caller(x * 2) }}{{ x }}]{% endmacro %}{% call(v) m2(3 * 2) %}{{ v ~ 'c' * 2 }}{% endcall %}",
	"{% include 'inc' %}|{% include 'i' ~ 'nc' %}|{% include ['no' * 2, 'inc'] %}",
	"{% import 'lib' as l %}{{ l.dbl(4) }}{% from 'lib' import dbl as d %}{{ d(5) }}{% from 'li' ~ 'b' import dbl %}{{ dbl('ab') }}",
	"{% extends 'base' %}{% block b %}{{ super() }}{{ y * 3 }}{% endblock %}",
	"a\n  {% if true %}\n  x{{ 1 * 2 }}\n  {% endif %}\nend\n",
	"{{ 'x' ~ y }}\n\n",
	"{{ y * 2 -}}\n",
	"{% if true -%}a{%- endif -%}\n",
	"{% if true %}a{% endif +%}\n",
	"{% if true %}a{% endif %}\r\n",
	"{# c -#}\n",
	"{{ y * 2 }}{{ '' }}\n",
	"{{ y * 2 }}\n",
	"  {{ y * 2 }}  ",
	"{# comment #}{{ y * 2 }}{# end #}\n",
	"{% raw %}{{ y * 2 }}{% endraw %}\n",
	"a{{ y * 2 }}\r\n",
	"{% set ns = namespace(c=0) %}{% for i in range(3) %}{% set ns.c = ns.c + i * 2 %}{% endfor %}{{ ns.c }}",
	"{{ '%s-%s'|format(y * 2, 'a' ~ 'b') }}|{{ 'x'.center(5) }}|{{ '{}:{}'.format(1, 2 * 2) }}|{{ ['a', 'b']|join('-' * 2) }}|{{ 'a b'|replace(' ', '_' ~ '_') }}",
	"{% filter upper %}{{ 'a' ~ 'b' }}{% endfilter %}{{ lipsum(1, false, 2, 3)|length > 0 }}",
	"{% do [1].append(2 * 2) %}{{ y * 2 }}",
	"{% for a in [1, 2] %}{% for b in [3] %}{{ loop.index * a * b }}{% endfor %}{% endfor %}",
	"{{ x }}",
	"{% if",
	"{{ 1 * }}",
}

// tplMapLoader serves a map of templates to plain gonja.
type tplMapLoader map[string]string

func (m tplMapLoader) Read(name string) (io.Reader, error) {
	src, ok := m[name]
	if !ok {
		return nil, fmt.Errorf("template %q not found", name)
	}
	return strings.NewReader(src), nil
}
func (m tplMapLoader) Resolve(name string) (string, error)         { return name, nil }
func (m tplMapLoader) Inherit(string) (gonjaloaders.Loader, error) { return m, nil }

// TestTemplateGuardKeepsResults: with every *, + and ~ guarded, a library
// renders what plain gonja renders (or fails where it fails), with every
// whitespace option, for each template of the corpus.
func TestTemplateGuardKeepsResults(t *testing.T) {
	extra := map[string]string{
		"inc":  "{{ y * 7 }}\n",
		"lib":  "{% macro dbl(v) %}{{ v * 2 }}{% endmacro %}",
		"base": "<{% block b %}{{ y * 2 }}{% endblock %}>\n",
	}
	ctx := map[string]any{"y": 3}
	for i, src := range tplGuardCorpus {
		for opts := range 8 {
			cfg := gonjacfg.New()
			cfg.AutoEscape = false
			cfg.TrimBlocks, cfg.LeftStripBlocks, cfg.KeepTrailingNewline = opts&1 != 0, opts&2 != 0, opts&4 != 0
			plain := tplMapLoader{"t": src}
			for k, v := range extra {
				plain[k] = v
			}
			env := &gonjaexec.Environment{
				Context:           gonjaexec.EmptyContext().Update(gonjabuiltins.GlobalFunctions).Update(gonjabuiltins.GlobalVariables),
				Filters:           gonjabuiltins.Filters,
				Tests:             gonjabuiltins.Tests,
				ControlStructures: gonjabuiltins.ControlStructures,
				Methods:           gonjabuiltins.Methods,
			}
			var want string
			var wantErr error
			func() {
				defer func() {
					if r := recover(); r != nil {
						wantErr = fmt.Errorf("panic: %v", r)
					}
				}()
				var tpl *gonjaexec.Template
				if tpl, wantErr = gonjaexec.NewTemplate("t", cfg, plain, env); wantErr == nil {
					want, wantErr = tpl.ExecuteToString(gonjaexec.NewContext(ctx))
				}
			}()

			lib := newTplLibrary(tplNone)
			lib.cfg.TrimBlocks, lib.cfg.LeftStripBlocks, lib.cfg.KeepTrailingNewline = cfg.TrimBlocks, cfg.LeftStripBlocks, cfg.KeepTrailingNewline
			for k, v := range plain {
				lib.templates[k] = v
			}
			b := budget{max: 1 << 30, left: pollEvery}
			got, err := lib.render(&b, "t", nil, map[string]any{"y": 3})
			if (err != nil) != (wantErr != nil) || got != want {
				t.Errorf("template %d %q, options %03b: guarded %q (%v), plain gonja %q (%v)", i, src, opts, got, err, want, wantErr)
			}
		}
	}
}

// TestTemplateGuardRefuses: an operator, filter, method or global that
// would build more than --script-memory is refused before it allocates,
// wherever it stands; the render fails with the memory error (the hook
// is then stopped for memory). Before, each allocated what it was asked:
// a gigabyte for most of these.
func TestTemplateGuardRefuses(t *testing.T) {
	const limit = 8 << 20
	lib := newTplLibrary(tplHTML)
	lib.templates["inc"] = "{{ 'x' * 1000000000 }}"
	lib.templates["lib"] = "{% macro big(n = 'x' * 1000000000) %}{{ n }}{% endmacro %}"
	lib.templates["base"] = "{% block b %}{% endblock %}"
	for _, src := range []string{
		"{{ 'x' * 1000000000 }}",
		"{{ 'x' * 9223372036854775807 }}",
		"{% set n = 1000000000 %}{% set s = 'ab' * (n // 2) %}{{ s|length }}",
		"{% with s = 'x' * 1000000000 %}{% endwith %}",
		"{% for c in 'x' * 1000000000 %}{% endfor %}",
		"{% if 'x' * 1000000000 %}{% endif %}",
		"{% macro m(a = 'x' * 1000000000) %}{% endmacro %}{{ m() }}",
		"{% set s %}{{ 'x' * 1000000000 }}{% endset %}",
		"{{ ['x' * 1000000000] }}",
		"{{ 1 if 'x' * 1000000000 else 2 }}",
		"{% include 'inc' %}",
		"{% include 'x' * 1000000000 %}",
		"{% import 'lib' as l %}{{ l.big() }}",
		"{% from 'lib' import big %}{{ big() }}",
		"{% extends 'base' %}{% block b %}{{ 'x' * 1000000000 }}{% endblock %}",
		"{% set a = x ~ x %}{% set b = a ~ a %}{% set c = b ~ b %}{% set d = c ~ c %}{{ d|length }}",
		"{% set a = x + x %}{% set b = a + a %}{% set c = b + b %}{% set d = c + c %}{{ d|length }}",
		"{% set l = range(10000)|list %}{% set l = l + l + l + l + l + l + l + l %}{% set l = l + l + l + l + l + l + l + l %}{% set l = l + l + l + l + l + l + l + l %}{{ l|length }}",
		"{{ 'x'|center(1000000000) }}",
		"{{ x|indent(100000) }}",
		"{{ x|replace('a', x) }}",
		"{{ range(10000)|join(x) }}",
		"{{ '%1000000000s'|format('x') }}",
		"{{ '%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s'|format(x) }}",
		"{{ x|wordwrap(1, true, x) }}",
		"{{ [1]|batch(100000000, 'x')|list|length }}",
		"{{ [1]|slice(100000000, 'x')|list|length }}",
		"{{ x|tojson(100000) }}",
		"{{ x|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|e|length }}",
		"{{ 'x'.ljust(1000000000) }}",
		"{{ 'x'.rjust(1000000000) }}",
		"{{ 'x'.center(1000000000) }}",
		"{{ 'x'.zfill(1000000000) }}",
		"{{ '{:>1000000000}'.format('x') }}",
		"{{ '{:{}}'.format('x', 1000000000) }}",
		"{{ x.expandtabs(100000) }}",
		"{{ 'aaaaaaaaaa'.replace('a', x, 10)|length }}",
		"{{ x.join(range(10000)) }}",
		"{{ lipsum(100000, false, 1000, 10000) }}",
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b := budget{max: limit, left: pollEvery}
		x := strings.Repeat("a\t\n&", 1<<18) // 1 MiB
		_, err := lib.render(&b, tplInlineName, &src, map[string]any{"x": x})
		runtime.ReadMemStats(&after)
		if !errors.Is(err, errTplMemory) {
			t.Errorf("%s: %v, want the memory error", src, err)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 4*limit {
			t.Errorf("%s: allocated %d MiB, want under %d MiB", src, grew>>20, 4*limit>>20)
		}
	}
}

// TestTemplateGuardsEveryFilter: the filters and methods guarded are
// gonja's, all of them that can build (a new gonja version must be looked
// at: its filters and methods are not listed by its sets).
func TestTemplateGuardsEveryFilter(t *testing.T) {
	for _, name := range tplFilterNames {
		if !gonjabuiltins.Filters.Exists(name) {
			t.Errorf("gonja has no filter %q", name)
		}
	}
	for _, name := range tplStrMethodNames {
		if !gonjabuiltins.Methods.Str.Exists(name) {
			t.Errorf("gonja has no string method %q", name)
		}
	}
	for _, name := range []string{"cycler", "dict", "joiner", "namespace", "range", "lipsum"} {
		if !gonjabuiltins.GlobalFunctions.Has(name) {
			t.Errorf("gonja has no global %q", name)
		}
	}
}
