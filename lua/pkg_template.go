package lua

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	gonjabuiltins "github.com/nikolalohinski/gonja/v2/builtins"
	gonjacs "github.com/nikolalohinski/gonja/v2/builtins/control_structures"
	gonjacfg "github.com/nikolalohinski/gonja/v2/config"
	gonjaexec "github.com/nikolalohinski/gonja/v2/exec"
	gonjaloaders "github.com/nikolalohinski/gonja/v2/loaders"
	gonjanodes "github.com/nikolalohinski/gonja/v2/nodes"
	gonjaparser "github.com/nikolalohinski/gonja/v2/parser"
	gonjatokens "github.com/nikolalohinski/gonja/v2/tokens"
	gonjautils "github.com/nikolalohinski/gonja/v2/utils"
	glua "github.com/yuin/gopher-lua"
)

func init() { builtins["template"] = openTemplate }

const (
	// maxTemplateOutput bounds what one render may write: rendering runs
	// in Go, where the script timeout cannot stop it.
	maxTemplateOutput = 16 << 20
	// maxTemplateFile bounds a template read from the directory.
	maxTemplateFile = 4 << 20
	// tplInlineName names the template of renderstring in messages.
	tplInlineName = "<string>"
	// tplEscapeFilter is the filter tplAutoescape puts on every {{ }}.
	tplEscapeFilter = "tinysse_autoescape"
	// tplMaxRange is the most items range() gives, as in Jinja2's
	// sandbox: a for loop over range(n) first lists every item.
	tplMaxRange = 10000
	// tplMaxMacroDepth bounds macros calling macros: each level is Go
	// stack, which the heap limit does not see.
	tplMaxMacroDepth = 100
)

// Autoescape modes of a library.
const (
	tplHTML = "html" // & < > " ' become entities, as Jinja2's autoescape
	tplJSON = "json" // every printed value is written as JSON
	tplNone = "none"
)

// tplLibrary is a template.library: named templates, from the templates
// table, add, or the directory, rendered with one set of options. It is
// used only with its VM locked.
type tplLibrary struct {
	mode      string
	cfg       *gonjacfg.Config
	env       *gonjaexec.Environment
	templates map[string]string
	dir       string                         // absolute; "" for none
	parsed    map[string]*gonjaexec.Template // cache; emptied by add, remove and clear

	// While a render runs: its budget, polled at the start of every loop
	// iteration and macro call (tplPoll), by every write and every guarded
	// operator, filter and method (tpl_guard.go); the depth of macro
	// calls; what the render built besides its output (made); the right
	// operand a guard hands to its operator; whether it was stopped for
	// memory.
	b          *budget
	macroDepth int
	made       int
	operand    *gonjaexec.Value
	overMemory bool
}

func newTplLibrary(mode string) *tplLibrary {
	filters := gonjaexec.NewFilterSet(map[string]gonjaexec.FilterFunction{}).Update(gonjabuiltins.Filters)
	_ = filters.Register(tplEscapeFilter, tplEscape(mode))
	cfg := gonjacfg.New()
	// html: gonja's own escaping stays on so that {% autoescape false %}
	// can turn it off and filters such as join know it is on. json: off,
	// or join would hand back HTML-escaped text marked safe.
	cfg.AutoEscape = mode == tplHTML
	lib := &tplLibrary{
		mode:      mode,
		cfg:       cfg,
		templates: make(map[string]string),
		parsed:    make(map[string]*gonjaexec.Template),
	}
	globals := gonjaexec.EmptyContext().Update(gonjabuiltins.GlobalFunctions).Update(gonjabuiltins.GlobalVariables)
	globals.Set("range", tplRange)
	lib.guardLipsum(globals)
	for _, name := range append(tplFilterNames, tplEscapeFilter) {
		if fn, ok := filters.Get(name); ok {
			_ = filters.Replace(name, lib.guardFilter(name, fn))
		}
	}
	_ = filters.Register(tplGuardFilter, lib.guard)
	_ = filters.Register(tplOperandFilter, lib.operandFilter)
	lib.env = &gonjaexec.Environment{
		Context:           globals,
		Filters:           filters,
		Tests:             gonjabuiltins.Tests,
		ControlStructures: lib.controlStructures(),
		Methods:           lib.guardMethods(),
	}
	return lib
}

// controlStructures are gonja's, with a poll (tplPoll) put at the start of
// every for loop's body and around every macro's body, so that a loop
// that writes nothing still stops at the hook's limits.
func (lib *tplLibrary) controlStructures() *gonjaexec.ControlStructureSet {
	set := gonjaexec.NewControlStructureSet(map[string]gonjaparser.ControlStructureParser{}).Update(gonjabuiltins.ControlStructures)
	_ = set.Register(tplGuardTag, lib.guardParser)
	if parse, ok := set.Get("for"); ok {
		_ = set.Replace("for", func(p, args *gonjaparser.Parser) (gonjanodes.ControlStructure, error) {
			cs, err := parse(p, args)
			if f, ok := cs.(*gonjacs.ForControlStructure); ok && err == nil && f.BodyWrapper != nil {
				f.BodyWrapper.Nodes = append([]gonjanodes.Node{lib.poll(f.BodyWrapper.Location, 0)}, f.BodyWrapper.Nodes...)
			}
			return cs, err
		})
	}
	if parse, ok := set.Get("macro"); ok {
		_ = set.Replace("macro", func(p, args *gonjaparser.Parser) (gonjanodes.ControlStructure, error) {
			cs, err := parse(p, args)
			if m, ok := cs.(*gonjacs.MacroControlStructure); ok && err == nil && m.Macro != nil && m.Wrapper != nil {
				w := m.Wrapper
				w.Nodes = append(append([]gonjanodes.Node{lib.poll(w.Location, 1)}, w.Nodes...), lib.poll(w.Location, -1))
			}
			return cs, err
		})
	}
	return set
}

func (lib *tplLibrary) poll(at *gonjatokens.Token, depth int) gonjanodes.Node {
	return &gonjanodes.ControlStructureBlock{Location: at, Name: "tinysse_poll", ControlStructure: &tplPoll{lib: lib, at: at, depth: depth}}
}

// tplPoll is a node of our own in a loop or macro body: it stops the
// render when its hook was stopped, and counts macro depth (+1 at the
// start of a macro's body, -1 at its end).
type tplPoll struct {
	lib   *tplLibrary
	at    *gonjatokens.Token
	depth int
}

func (t *tplPoll) Position() *gonjatokens.Token { return t.at }
func (t *tplPoll) String() string               { return "tinysse_poll" }

func (t *tplPoll) Execute(*gonjaexec.Renderer, *gonjanodes.ControlStructureBlock) error {
	lib := t.lib
	if lib.macroDepth += t.depth; lib.macroDepth > tplMaxMacroDepth {
		return fmt.Errorf("macros nested deeper than %d", tplMaxMacroDepth)
	}
	if lib.b != nil && lib.b.stopped() { // a loop iteration costs microseconds: look each time
		return errors.New(errStopped)
	}
	return nil
}

// tplRange is range([start,] stop[, step]) giving at most tplMaxRange
// items, as a list (gonja's feeds a channel from a goroutine that a loop
// left early never ends).
func tplRange(_ *gonjaexec.Evaluator, params *gonjaexec.VarArgs) ([]int, error) {
	start, stop, step := 0, 0, 1
	ints := make([]int, len(params.Args))
	for i, a := range params.Args {
		if !a.IsInteger() {
			return nil, gonjaexec.ErrInvalidCall(errors.New("expected signature is [start, ]stop[, step] where all arguments are integers"))
		}
		ints[i] = a.Integer()
	}
	switch len(ints) {
	case 1:
		stop = ints[0]
	case 2:
		start, stop = ints[0], ints[1]
	case 3:
		start, stop, step = ints[0], ints[1], ints[2]
	default:
		return nil, gonjaexec.ErrInvalidCall(errors.New("expected signature is [start, ]stop[, step] where all arguments are integers"))
	}
	if step == 0 {
		return nil, gonjaexec.ErrInvalidCall(errors.New("step cannot be 0"))
	}
	n := 0
	if step > 0 && stop > start {
		n = int((int64(stop) - int64(start) + int64(step) - 1) / int64(step))
	} else if step < 0 && stop < start {
		n = int((int64(start) - int64(stop) - int64(step) - 1) / -int64(step))
	}
	if n > tplMaxRange {
		return nil, gonjaexec.ErrInvalidCall(fmt.Errorf("range of %d items, more than %d", n, tplMaxRange))
	}
	out := make([]int, n)
	for i := range out {
		out[i] = start + i*step
	}
	return out, nil
}

// openTemplate: template.renderstring(src, ctx) (no autoescape, as
// Jinja2's default environment) and template.library{...} -> lib with
// render, renderstring, add, remove and clear.
func openTemplate(v *vm, L *glua.LState) glua.LValue {
	plain := newTplLibrary(tplNone)
	methods := L.CreateTable(0, 5)
	fn := func(t *glua.LTable, name string, f glua.LGFunction) { t.RawSetString(name, L.NewFunction(f)) }
	// render pushes lib's rendering of the template name (src: of that
	// source) with the context at stack index n.
	render := func(L *glua.LState, lib *tplLibrary, name string, src *string, n int) int {
		b := v.budget(L, "template")
		out, err := lib.render(&b, name, src, tplContext(L, n))
		b.fail("template", err, errTplMemory)
		L.Push(glua.LString(out))
		return 1
	}
	fn(methods, "render", func(L *glua.LState) int {
		lib := checkTplLibrary(L)
		return render(L, lib, L.CheckString(2), nil, 3)
	})
	fn(methods, "renderstring", func(L *glua.LState) int {
		lib := checkTplLibrary(L)
		src := L.CheckString(2)
		return render(L, lib, tplInlineName, &src, 3)
	})
	fn(methods, "add", func(L *glua.LState) int {
		lib := checkTplLibrary(L)
		lib.templates[L.CheckString(2)] = L.CheckString(3)
		clear(lib.parsed)
		return 0
	})
	fn(methods, "remove", func(L *glua.LState) int {
		lib := checkTplLibrary(L)
		delete(lib.templates, L.CheckString(2))
		clear(lib.parsed)
		return 0
	})
	fn(methods, "clear", func(L *glua.LState) int {
		lib := checkTplLibrary(L)
		clear(lib.templates)
		clear(lib.parsed)
		return 0
	})
	meta := sealedMeta(L, "template.library", methods)

	mod := L.CreateTable(0, 2)
	fn(mod, "renderstring", func(L *glua.LState) int {
		src := L.CheckString(1)
		return render(L, plain, tplInlineName, &src, 2)
	})
	fn(mod, "library", func(L *glua.LState) int {
		lib, err := tplLibraryFrom(v.rt, L.OptTable(1, L.NewTable()))
		if err != nil {
			L.RaiseError("template.library: %v", err)
		}
		return pushUserData(L, lib, meta)
	})
	return mod
}

// tplLibraryFrom reads the options of template.library. Without
// --unsafe-script the directory must be inside --data-dir.
func tplLibraryFrom(rt *Runtime, opts *glua.LTable) (*tplLibrary, error) {
	var err error
	set := func(e error) {
		if err == nil {
			err = e
		}
	}
	flags := map[string]bool{}
	mode, dir := tplHTML, ""
	var templates *glua.LTable
	opts.ForEach(func(k, val glua.LValue) {
		key, _ := k.(glua.LString)
		switch key {
		case "directory":
			s, ok := val.(glua.LString)
			if !ok {
				set(fmt.Errorf("directory must be a string, not %s", val.Type()))
			}
			dir = string(s)
		case "templates":
			t, ok := val.(*glua.LTable)
			if !ok {
				set(fmt.Errorf("templates must be a table of name = source, not %s", val.Type()))
			}
			templates = t
		case "autoescape":
			s, _ := val.(glua.LString)
			switch s {
			case tplHTML, tplJSON, tplNone:
				mode = string(s)
			default:
				set(fmt.Errorf("autoescape must be \"html\", \"json\" or \"none\", not %s", val.String()))
			}
		case "keep_trailing_newline", "trim_blocks", "lstrip_blocks":
			b, ok := val.(glua.LBool)
			if !ok {
				set(fmt.Errorf("%s must be a boolean, not %s", key, val.Type()))
			}
			flags[string(key)] = bool(b)
		default:
			set(fmt.Errorf("unknown option %s (options: directory, templates, autoescape, keep_trailing_newline, trim_blocks, lstrip_blocks)", k.String()))
		}
	})
	if err != nil {
		return nil, err
	}
	lib := newTplLibrary(mode)
	lib.cfg.KeepTrailingNewline = flags["keep_trailing_newline"]
	lib.cfg.TrimBlocks = flags["trim_blocks"]
	lib.cfg.LeftStripBlocks = flags["lstrip_blocks"]
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, err
		}
		if !rt.cfg.Unsafe {
			if abs, err = rt.dataPath(dir, true); err != nil {
				return nil, fmt.Errorf("directory %w", err)
			}
		}
		if fi, err := os.Stat(abs); err != nil {
			return nil, err
		} else if !fi.IsDir() {
			return nil, fmt.Errorf("%s is not a directory", dir)
		}
		lib.dir = abs
	}
	if templates != nil {
		templates.ForEach(func(k, val glua.LValue) {
			name, ok1 := k.(glua.LString)
			src, ok2 := val.(glua.LString)
			if !ok1 || !ok2 {
				set(fmt.Errorf("templates must map names to sources (strings), not %s to %s", k.Type(), val.Type()))
				return
			}
			lib.templates[string(name)] = string(src)
		})
	}
	return lib, err
}

func checkTplLibrary(L *glua.LState) *tplLibrary {
	if ud, ok := L.Get(1).(*glua.LUserData); ok {
		if lib, ok := ud.Value.(*tplLibrary); ok {
			return lib
		}
	}
	L.ArgError(1, "template library expected (call lib:render(...), not lib.render(...))")
	return nil
}

// tplContext converts the context table at n: strings, numbers (integral
// ones as integers, so 3 prints "3"), booleans, lists and tables of names.
func tplContext(L *glua.LState, n int) map[string]any {
	val := L.Get(n)
	if val == glua.LNil {
		return map[string]any{}
	}
	if _, ok := val.(*glua.LTable); !ok {
		L.ArgError(n, "context must be a table")
	}
	g, err := toGo(val)
	if err != nil {
		L.ArgError(n, err.Error())
	}
	m, ok := tplIntegers(g).(map[string]any)
	if !ok {
		L.ArgError(n, "context must be a table of names, not a list")
	}
	return m
}

// tplIntegers turns the integral float64s of a toGo value into ints.
func tplIntegers(v any) any {
	switch x := v.(type) {
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int(x)
		}
	case []any:
		for i, e := range x {
			x[i] = tplIntegers(e)
		}
	case map[string]any:
		for k, e := range x {
			x[k] = tplIntegers(e)
		}
	}
	return v
}

// render renders the template name (whose source is *inline when inline
// is not nil) with ctx.
func (lib *tplLibrary) render(b *budget, name string, inline *string, ctx map[string]any) (out string, err error) {
	lib.b, lib.macroDepth, lib.made, lib.operand, lib.overMemory = b, 0, 0, nil, false
	defer func() {
		lib.b, lib.operand = nil, nil
		if err != nil && lib.overMemory {
			err = fmt.Errorf("%s: %w", name, errTplMemory)
		}
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: %v", name, r)
		}
	}()
	tpl := lib.parsed[name]
	if tpl == nil || inline != nil {
		tpl, err = gonjaexec.NewTemplate(name, lib.cfg, tplLoader{lib: lib, inline: inline}, lib.env)
		if err != nil {
			// gonja's message quotes the whole source; keep its cause.
			if cause := errors.Unwrap(err); cause != nil {
				err = cause
			}
			return "", fmt.Errorf("%s: %w", name, err)
		}
		if inline == nil {
			lib.parsed[name] = tpl
		}
	}
	var w strings.Builder
	limit := min(maxTemplateOutput, b.max)
	if err := tpl.Execute(&tplLimitWriter{w: &w, b: b, left: limit, limit: limit}, gonjaexec.NewContext(ctx)); err != nil {
		b.poll() // stopped: the hook's error, not the template's
		return "", fmt.Errorf("%s: %w", name, err)
	}
	if lib.overMemory { // refused where gonja drops the error (a list's item)
		return "", errTplMemory
	}
	return w.String(), nil
}

// tplLoader gives gonja the library's templates. Names are global, as in
// Jinja2: {% extends "base.html" %} means the same template from anywhere.
type tplLoader struct {
	lib    *tplLibrary
	inline *string // source of tplInlineName, for renderstring
}

func (l tplLoader) Read(name string) (io.Reader, error) {
	src, err := l.source(name)
	if err != nil {
		return nil, err
	}
	if l.lib.mode != tplNone {
		src, err = tplAutoescape(src, l.lib.cfg)
		if err != nil {
			return nil, err
		}
	}
	if src, err = tplGuardSource(src, l.lib); err != nil {
		return nil, fmt.Errorf("template %q: %w", name, err)
	}
	return strings.NewReader(src), nil
}

func (l tplLoader) source(name string) (string, error) {
	if l.inline != nil && name == tplInlineName {
		return *l.inline, nil
	}
	if src, ok := l.lib.templates[name]; ok {
		return src, nil
	}
	if l.lib.dir == "" {
		return "", fmt.Errorf("template %q not found", name)
	}
	// os.OpenInRoot refuses names that leave the directory: "..",
	// absolute paths, symbolic links pointing outside.
	f, err := os.OpenInRoot(l.lib.dir, name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("template %q not found", name)
		}
		return "", fmt.Errorf("template %q: %w", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTemplateFile+1))
	if err != nil {
		return "", fmt.Errorf("template %q: %w", name, err)
	}
	if len(b) > maxTemplateFile {
		return "", fmt.Errorf("template %q is larger than %d bytes", name, maxTemplateFile)
	}
	return string(b), nil
}

func (l tplLoader) Resolve(name string) (string, error) { return name, nil }

func (l tplLoader) Inherit(string) (gonjaloaders.Loader, error) { return l, nil }

// tplAutoescape rewrites every {{ expr }} of src into
// {{ (expr )|tinysse_autoescape }}, and {{ a if c else b }} into
// {{ (a )|f if c else (b )|f }}, so that the library's mode decides how
// each printed value is escaped (gonja escapes only strings, and only as
// HTML). {{ super() }} and {{ self.name() }} print template output, escaped
// already: they get |safe instead. It uses gonja's own lexer, so string
// literals, comments and raw blocks are left alone.
func tplAutoescape(src string, cfg *gonjacfg.Config) (string, error) {
	// The lexer's own newline normalisation, so that token positions are
	// offsets in src.
	src = strings.ReplaceAll(src, "\r\n", "\n")
	src = strings.ReplaceAll(src, "\r", "\n")
	type edit struct {
		at   int
		text string
	}
	var edits []edit
	wrap := func(expr []*gonjatokens.Token, end int) {
		filter := tplEscapeFilter
		if tplPrintsBlock(expr) {
			filter = "safe"
		}
		edits = append(edits, edit{expr[0].Pos, "("}, edit{end, " )|" + filter + " "})
	}
	for s := gonjatokens.LexAll(src, cfg); !s.End(); {
		if s.Next().Type != gonjatokens.VariableBegin {
			continue
		}
		var expr []*gonjatokens.Token
		for !s.End() && s.Current().Type != gonjatokens.VariableEnd {
			expr = append(expr, s.Next())
		}
		if s.End() || len(expr) == 0 {
			break // the parser reports it
		}
		end := s.Current()
		if end.Pos > len(src) || !strings.HasPrefix(src[end.Pos:], end.Val) {
			return "", errors.New("cannot apply autoescape: unexpected token positions")
		}
		depth, ifAt, elseAt := 0, -1, -1
		for i, tok := range expr {
			switch tok.Type {
			case gonjatokens.LeftParenthesis, gonjatokens.LeftBracket, gonjatokens.LeftBrace:
				depth++
			case gonjatokens.RightParenthesis, gonjatokens.RightBracket, gonjatokens.RightBrace:
				depth--
			case gonjatokens.Name:
				if depth == 0 && tok.Val == "if" && ifAt < 0 {
					ifAt = i
				} else if depth == 0 && tok.Val == "else" && ifAt >= 0 && elseAt < 0 {
					elseAt = i
				}
			}
		}
		switch {
		case ifAt == 0:
			// nothing before "if": let the parser report it
		case ifAt > 0:
			wrap(expr[:ifAt], expr[ifAt].Pos)
			if elseAt > ifAt && elseAt+1 < len(expr) {
				wrap(expr[elseAt+1:], end.Pos)
			}
		default:
			wrap(expr, end.Pos)
		}
	}
	sort.SliceStable(edits, func(i, j int) bool { return edits[i].at > edits[j].at })
	for _, e := range edits {
		src = src[:e.at] + e.text + src[e.at:]
	}
	return src, nil
}

// tplPrintsBlock reports whether expr is super() or self.name().
func tplPrintsBlock(expr []*gonjatokens.Token) bool {
	is := func(tok *gonjatokens.Token, typ gonjatokens.Type, val string) bool {
		return tok.Type == typ && (val == "" || tok.Val == val)
	}
	switch len(expr) {
	case 3:
		return is(expr[0], gonjatokens.Name, "super") && is(expr[1], gonjatokens.LeftParenthesis, "") &&
			is(expr[2], gonjatokens.RightParenthesis, "")
	case 5:
		return is(expr[0], gonjatokens.Name, "self") && is(expr[1], gonjatokens.Dot, "") &&
			is(expr[2], gonjatokens.Name, "") && is(expr[3], gonjatokens.LeftParenthesis, "") &&
			is(expr[4], gonjatokens.RightParenthesis, "")
	}
	return false
}

// tplEscape is the filter tplAutoescape adds. Values marked safe (|safe,
// macros, caller()) pass unchanged. html: escaped as Jinja2 does (str(value),
// then & < > " '), unless {% autoescape false %} is in effect. json: written
// as JSON (a string with its quotes; nothing defined: null).
func tplEscape(mode string) gonjaexec.FilterFunction {
	return func(e *gonjaexec.Evaluator, in *gonjaexec.Value, _ *gonjaexec.VarArgs) *gonjaexec.Value {
		switch {
		case in.IsError() || in.Safe:
			return in
		case mode == tplJSON:
			return gonjaexec.AsSafeValue(tplJSONText(in))
		case e.Config.AutoEscape:
			return gonjaexec.AsSafeValue(gonjautils.Escape(in.String()))
		}
		return in
	}
}

// tplJSONText is the JSON of a printed value, without HTML escaping.
func tplJSONText(in *gonjaexec.Value) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(in.Interface()); err != nil {
		b.Reset()
		_ = enc.Encode(in.String())
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// tplLimitWriter fails once more than limit bytes are written, or once
// the hook is stopped.
type tplLimitWriter struct {
	w           io.Writer
	b           *budget
	left, limit int
}

func (l *tplLimitWriter) Write(p []byte) (int, error) {
	if l.b.stopped() {
		return 0, errors.New(errStopped)
	}
	if len(p) > l.left {
		return 0, fmt.Errorf("output larger than %d bytes", l.limit)
	}
	l.left -= len(p)
	return l.w.Write(p)
}
