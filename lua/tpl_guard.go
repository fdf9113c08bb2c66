package lua

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"

	gonjabuiltins "github.com/nikolalohinski/gonja/v2/builtins"
	gonjaexec "github.com/nikolalohinski/gonja/v2/exec"
	gonjanodes "github.com/nikolalohinski/gonja/v2/nodes"
	gonjaparser "github.com/nikolalohinski/gonja/v2/parser"
	gonjatokens "github.com/nikolalohinski/gonja/v2/tokens"
)

// What one render may build besides its output. gonja builds values in
// Go, out of the hook's sight: `'x' * 1000000000`, `x|center(1e9)`,
// `'{:>1000000000}'.format(x)` or a chain of `~` each make one huge
// string in one step. A library therefore
//
//   - rewrites every `a * b`, `a + b` and `a ~ b` of its templates, once
//     parsed, into `(a|tinysse_guard(b, op)) op (none|tinysse_operand)`:
//     the guard sees both operands (each evaluated once, as before),
//     refuses a result too large and hands b on to the operator
//     unchanged, so gonja's own operator gives the same result as before;
//   - wraps every filter, every method of strings and the lipsum global
//     in an estimate of what they will build from their arguments (width,
//     fill, separator, replacement, format string), checked before they
//     run, and counts what they built;
//   - polls the hook's limits in each of these, as in loops and macros.
//
// What is built is counted for the whole render (lib.made) against
// --script-memory: garbage included, so that a template building more in
// total than a hook may hold is stopped, as a Lua hook would be by the
// heap watchdog.
//
// The rewrite walks the parsed tree with reflection, through unexported
// fields of gonja's control structures (`{% set %}`, `{% with %}` and
// `{% include %}` keep their expressions there), and changes each binary
// expression in place through its pointer. Every template a library
// parses, its own and those gonja parses for extends, include and import,
// is read through tplLoader, which appends a {%+ tinysse_guard +%} tag
// (the + keeps trim_blocks and lstrip_blocks from acting on it); gonja
// parses that tag last, when the tree of its template is complete, and its
// parser does the rewrite before anything of the template runs. A source
// whose last token would not be that tag (it ends inside a comment or a
// raw block) is refused.

const (
	tplGuardTag      = "tinysse_guard"
	tplGuardFilter   = "tinysse_guard"
	tplOperandFilter = "tinysse_operand"
)

// errTplMemory: a render would build more than --script-memory.
var errTplMemory = errors.New("template builds more than --script-memory")

// tplGuardSource appends the guard tag to src, before a final line break
// (which gonja drops unless keep_trailing_newline), and checks that gonja
// lexes it as the last tag.
func tplGuardSource(src string, lib *tplLibrary) (string, error) {
	body, nl := src, ""
	for _, end := range []string{"\r\n", "\n", "\r"} {
		if strings.HasSuffix(src, end) {
			body, nl = src[:len(src)-len(end)], end
			break
		}
	}
	tag := lib.cfg.BlockStartString + "+ " + tplGuardTag + " +" + lib.cfg.BlockEndString
	out := body + tag + nl
	// The final line break goes after the tag when the tag before it
	// removes it anyway (a - in its end, or trim_blocks after a block or
	// comment): after our tag it would no longer be removed.
	cfg := lib.cfg
	for _, end := range []string{cfg.VariableEndString, cfg.BlockEndString, cfg.CommentEndString} {
		if nl != "" && (strings.HasSuffix(body, "-"+end) ||
			cfg.TrimBlocks && end != cfg.VariableEndString && strings.HasSuffix(body, end) && !strings.HasSuffix(body, "+"+end)) {
			out = src + tag
		}
	}
	var last []*gonjatokens.Token
	for s := gonjatokens.LexAll(out, lib.cfg); !s.End(); {
		tok := s.Next()
		if tok.Type == gonjatokens.Error {
			return out, nil // the parser reports it
		}
		if tok.Type == gonjatokens.Data && strings.TrimSpace(tok.Val) == "" && len(last) == 3 && last[2].Type == gonjatokens.BlockEnd {
			continue // the line break
		}
		last = append(last, tok)
		if len(last) > 3 {
			last = last[1:]
		}
	}
	if len(last) != 3 || last[0].Type != gonjatokens.BlockBegin || last[1].Type != gonjatokens.Name || last[1].Val != tplGuardTag {
		return "", errors.New("the template ends inside a comment, a raw block or a tag")
	}
	return out, nil
}

// guardParser is the parser of the guard tag: it rewrites the tree of the
// template being parsed, complete by now (the tag is its last).
func (lib *tplLibrary) guardParser(p *gonjaparser.Parser, args *gonjaparser.Parser) (gonjanodes.ControlStructure, error) {
	if !args.End() {
		return nil, args.Error(tplGuardTag+" takes no arguments", args.Current())
	}
	tplGuardTree(p.Template)
	return tplGuardNode{at: p.Current()}, nil
}

// tplGuardNode is the guard tag in the tree: it does nothing.
type tplGuardNode struct{ at *gonjatokens.Token }

func (n tplGuardNode) Position() *gonjatokens.Token { return n.at }
func (n tplGuardNode) String() string               { return tplGuardTag }
func (n tplGuardNode) Execute(*gonjaexec.Renderer, *gonjanodes.ControlStructureBlock) error {
	return nil
}

var (
	tplBinaryType = reflect.TypeFor[*gonjanodes.BinaryExpression]()
	tplNodePkgs   = []string{"github.com/nikolalohinski/gonja/v2/nodes", "github.com/nikolalohinski/gonja/v2/builtins/control_structures"}
)

// tplGuardTree rewrites every a * b, a + b, a ~ b reachable from root.
func tplGuardTree(root *gonjanodes.Template) {
	type key struct {
		p uintptr
		t reflect.Type
	}
	seen := make(map[key]bool)
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Pointer:
			if v.IsNil() || !tplNodeType(v.Type().Elem()) {
				return
			}
			k := key{v.Pointer(), v.Type()}
			if seen[k] {
				return
			}
			seen[k] = true
			walk(v.Elem())
			if v.Type() == tplBinaryType {
				// v may come through an unexported field, which
				// reflect lets us read but not set: the node itself
				// is changed through its pointer.
				tplGuardBinary((*gonjanodes.BinaryExpression)(v.UnsafePointer()))
			}
		case reflect.Struct:
			if tplNodeType(v.Type()) {
				for i := range v.NumField() {
					walk(v.Field(i))
				}
			}
		case reflect.Slice, reflect.Array:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		case reflect.Map:
			for it := v.MapRange(); it.Next(); {
				walk(it.Value())
			}
		}
	}
	walk(reflect.ValueOf(root))
}

func tplNodeType(t reflect.Type) bool {
	for _, p := range tplNodePkgs {
		if t.PkgPath() == p {
			return true
		}
	}
	return false
}

// tplGuardBinary rewrites a op b into (a|tinysse_guard(b, op)) op
// (none|tinysse_operand), once.
func tplGuardBinary(b *gonjanodes.BinaryExpression) {
	if b.Operator == nil || b.Operator.Token == nil {
		return
	}
	op := b.Operator.Token.Val
	if op != "*" && op != "+" && op != "~" {
		return
	}
	if f, ok := b.Left.(*gonjanodes.FilteredExpression); ok && len(f.Filters) == 1 && f.Filters[0].Name == tplGuardFilter {
		return
	}
	tok := b.Operator.Token
	b.Left = &gonjanodes.FilteredExpression{Expression: b.Left, Filters: []*gonjanodes.FilterCall{{
		Token: tok, Name: tplGuardFilter, Args: []gonjanodes.Expression{b.Right, &gonjanodes.String{Location: tok, Val: op}},
	}}}
	b.Right = &gonjanodes.FilteredExpression{Expression: &gonjanodes.None{Location: tok},
		Filters: []*gonjanodes.FilterCall{{Token: tok, Name: tplOperandFilter}}}
}

// guard is the tinysse_guard filter: a (in) passes unchanged if
// a op b is small enough; b is kept for tinysse_operand.
func (lib *tplLibrary) guard(_ *gonjaexec.Evaluator, in *gonjaexec.Value, params *gonjaexec.VarArgs) *gonjaexec.Value {
	if len(params.Args) != 2 {
		return gonjaexec.AsValue(errors.New(tplGuardFilter + ": internal filter"))
	}
	if in.IsError() {
		return in
	}
	b, op := params.Args[0], params.Args[1].String()
	var size int
	switch {
	case op == "*" && in.IsString() && !in.IsFloat() && !b.IsFloat():
		size = tplTimes(len(in.String()), max(b.Integer(), 0))
	case op == "+" && in.IsList() && b.IsList():
		size = tplShallow(in) + tplShallow(b)
	case op == "~" || op == "+" && (in.IsString() || b.IsString()):
		size = len(in.String()) + len(b.String())
	}
	if err := lib.spend(size); err != nil {
		return gonjaexec.AsValue(err)
	}
	lib.operand = b
	return in
}

// operand is the tinysse_operand filter: the b its guard kept.
func (lib *tplLibrary) operandFilter(*gonjaexec.Evaluator, *gonjaexec.Value, *gonjaexec.VarArgs) *gonjaexec.Value {
	b := lib.operand
	lib.operand = nil
	if b == nil {
		return gonjaexec.AsValue(errors.New(tplOperandFilter + ": internal filter"))
	}
	return b
}

// left is what the render may still build.
func (lib *tplLibrary) left() int {
	if lib.b == nil {
		return 0
	}
	return max(lib.b.max-lib.made, 0)
}

// allow refuses to build n bytes past --script-memory, and stops the
// render when the hook was stopped.
func (lib *tplLibrary) allow(n int) error {
	if lib.b == nil {
		return nil // not rendering through render: no budget to count against
	}
	if lib.b.stopped() {
		return errors.New(errStopped)
	}
	if n < 0 || n > lib.left() {
		lib.overMemory = true
		return errTplMemory
	}
	return nil
}

// spend counts n bytes built (allowed first).
func (lib *tplLibrary) spend(n int) error {
	if err := lib.allow(n); err != nil {
		return err
	}
	lib.made += n
	return nil
}

// tplMaxProduct bounds tplTimes: 1<<62 where int has 64 bits, 1<<30
// where it has 32 (linux/386).
const tplMaxProduct = math.MaxInt/2 + 1

// tplTimes is a × b, or -1 when it overflows.
func tplTimes(a, b int) int {
	if a == 0 || b == 0 {
		return 0
	}
	if a > tplMaxProduct/b {
		return -1
	}
	return a * b
}

// tplSize estimates the bytes of v: a string's length, 16 per number and
// per list or dict entry, recursively. It stops once past limit.
func tplSize(v *gonjaexec.Value, limit int) int {
	if v == nil {
		return 0
	}
	n := 0
	var walk func(r reflect.Value, depth int)
	walk = func(r reflect.Value, depth int) {
		if n > limit || depth > 64 || !r.IsValid() {
			return
		}
		switch r.Kind() {
		case reflect.String:
			n += r.Len()
		case reflect.Interface, reflect.Pointer:
			if !r.IsNil() {
				if r.CanInterface() {
					if x, ok := r.Interface().(*gonjaexec.Value); ok {
						walk(x.Val, depth+1)
						return
					}
				}
				walk(r.Elem(), depth+1)
			}
		case reflect.Slice, reflect.Array:
			if r.Type().Elem().Kind() == reflect.Uint8 {
				n += r.Len()
				return
			}
			for i := range r.Len() {
				n += 16
				walk(r.Index(i), depth+1)
				if n > limit {
					return
				}
			}
		case reflect.Map:
			for it := r.MapRange(); it.Next(); {
				n += 32
				walk(it.Key(), depth+1)
				walk(it.Value(), depth+1)
				if n > limit {
					return
				}
			}
		case reflect.Struct:
			n += 16 * r.NumField()
		default:
			n += 16
		}
	}
	walk(v.Val, 0)
	return n
}

// tplArg is argument i (or keyword name) of params, nil if absent.
func tplArg(params *gonjaexec.VarArgs, i int, name string) *gonjaexec.Value {
	if params == nil {
		return nil
	}
	if i >= 0 && i < len(params.Args) {
		return params.Args[i]
	}
	if v, ok := params.KwArgs[name]; ok {
		return v
	}
	return nil
}

func tplIntArg(params *gonjaexec.VarArgs, i int, name string, def int) int {
	if v := tplArg(params, i, name); v != nil && v.IsNumber() {
		return v.Integer()
	}
	return def
}

func tplStrLen(params *gonjaexec.VarArgs, i int, name string, def int) int {
	if v := tplArg(params, i, name); v != nil && !v.IsNil() {
		return len(v.String())
	}
	return def
}

// tplArgsSize is the size of every argument, and the value of each that is
// a number (a width or a count, for format).
func tplArgsSize(params *gonjaexec.VarArgs, limit int) int {
	if params == nil {
		return 0
	}
	n := 0
	add := func(v *gonjaexec.Value) {
		n += tplSize(v, limit)
		if v.IsNumber() {
			n += max(v.Integer(), 0)
		}
	}
	for _, v := range params.Args {
		add(v)
	}
	for _, v := range params.KwArgs {
		add(v)
	}
	return n
}

// tplLargestNumber is the largest run of digits in s (a width or a
// precision in a format string), as a number, capped.
func tplLargestNumber(s string) int {
	best, cur := 0, 0
	for _, r := range s {
		if r >= '0' && r <= '9' {
			if cur < min(1<<40, math.MaxInt/16) { // 32-bit int: no overflow either
				cur = cur*10 + int(r-'0')
			}
			best = max(best, cur)
		} else {
			cur = 0
		}
	}
	return best
}

// tplShallow is the size of v's own storage: a string's bytes, 32 per
// list or dict entry (the entries are shared, not copied), 16 else.
func tplShallow(v *gonjaexec.Value) int {
	switch {
	case v == nil:
		return 0
	case v.IsString():
		return len(v.String())
	case v.IsList() || v.IsDict():
		return 32 * v.Len()
	}
	return 16
}

// tplFreeFilters build nothing bigger than a number or one of their
// arguments: they are only polled.
var tplFreeFilters = map[string]bool{
	"abs": true, "attr": true, "count": true, "d": true, "default": true, "filesizeformat": true,
	"first": true, "float": true, "int": true, "last": true, "length": true, "max": true, "min": true,
	"random": true, "round": true, "safe": true, "sum": true, "wordcount": true,
}

// tplFilterEstimate is what filter name may build from in and params, at
// most: the input's size times what the filter can add per byte, plus
// what its width-like arguments ask for. Filters of lists count their
// entries, not what the entries hold (they share them).
func tplFilterEstimate(name string, in *gonjaexec.Value, params *gonjaexec.VarArgs, limit int) int {
	n := tplShallow(in)
	switch name {
	case "center":
		return n + max(tplIntArg(params, 0, "width", 80), 0)
	case "indent":
		w := tplIntArg(params, 0, "width", 4)
		if v := tplArg(params, 0, "width"); v != nil && v.IsString() {
			w = len(v.String())
		}
		return n + tplTimes(strings.Count(in.String(), "\n")+1, max(w, 0))
	case "wordwrap":
		return tplTimes(n, 2+tplStrLen(params, 2, "wrapstring", 1))
	case "replace":
		return n + tplTimes(n+1, tplStrLen(params, 1, "new", 0))
	case "join":
		return tplSize(in, limit) + tplTimes(in.Len()+1, tplStrLen(params, 0, "d", 0))
	case "format":
		return tplTimes(len(in.String())+1, 1+tplArgsSize(params, limit)+tplLargestNumber(in.String()))
	case "tojson":
		return tplTimes(8*tplSize(in, limit)+16, 1+max(tplIntArg(params, 0, "indent", 0), 0))
	case "batch", "slice":
		count := max(tplIntArg(params, 0, "linecount", tplIntArg(params, 0, "slices", 1)), 0)
		fill := 0
		if f := tplArg(params, 1, "fill_with"); f != nil {
			fill = tplShallow(f) + 32
		}
		return 2*n + tplTimes(count, 32+fill)
	case "urlize":
		return tplTimes(n, 16+tplArgsSize(params, limit))
	case "list":
		if in.IsString() {
			return tplTimes(n, 64) // a value per character
		}
		return 2 * n
	case "string", "pprint", "xmlattr", "urlencode", "escape", "e", "forceescape", tplEscapeFilter:
		// at most 6 bytes for one (&#39;, \u001f) and 3 per byte (%XX)
		if in.IsString() {
			return 6*n + 64
		}
		return 6*tplSize(in, limit) + 64
	}
	return 4*n + tplArgsSize(params, limit) + 64
}

// tplStrMethodEstimate is the same for a method of a string.
func tplStrMethodEstimate(name, self string, params *gonjaexec.VarArgs, limit int) int {
	n := len(self)
	switch name {
	case "center", "ljust", "rjust", "zfill":
		return n + tplTimes(max(tplIntArg(params, 0, "width", 0), 0), 4)
	case "expandtabs":
		return tplTimes(n+1, max(tplIntArg(params, 0, "tabsize", 8), 1))
	case "replace":
		return n + tplTimes(n+1, tplStrLen(params, 1, "new", 0))
	case "join":
		arg := tplArg(params, 0, "iterable")
		if arg == nil {
			return n
		}
		return tplSize(arg, limit) + tplTimes(arg.Len()+1, n)
	case "format", "format_map":
		return tplTimes(n+1, 1+tplArgsSize(params, limit)+tplLargestNumber(self))
	case "split", "rsplit", "splitlines", "partition", "rpartition":
		return tplTimes(n+1, 64)
	}
	return 4*n + 64
}

// tplFilterNames are gonja's filters (v2.9.1): FilterSet cannot list
// them, and each gets the guard (TestTemplateGuardsEveryFilter checks the
// list against the set).
var tplFilterNames = []string{
	"abs", "attr", "batch", "capitalize", "center", "default", "d", "dictsort", "e", "escape",
	"filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent", "int", "join",
	"items", "last", "length", "count", "list", "lower", "map", "max", "min", "pprint", "random",
	"rejectattr", "reject", "replace", "reverse", "round", "safe", "selectattr", "select", "slice",
	"sort", "string", "striptags", "sum", "title", "tojson", "trim", "truncate", "unique", "upper",
	"urlencode", "urlize", "wordcount", "wordwrap", "xmlattr",
}

// tplStrMethodNames are gonja's methods of strings (v2.9.1).
var tplStrMethodNames = []string{
	"capitalize", "capwords", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find",
	"format", "format_map", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "islower",
	"isnumeric", "isprintable", "isspace", "istitle", "isupper", "join", "ljust", "lower", "lstrip",
	"partition", "removeprefix", "removesuffix", "replace", "rfind", "rjust", "rpartition", "rsplit",
	"rstrip", "split", "splitlines", "startswith", "strip", "swapcase", "title", "upper", "zfill",
}

// guardFilter wraps the filter fn.
func (lib *tplLibrary) guardFilter(name string, fn gonjaexec.FilterFunction) gonjaexec.FilterFunction {
	return func(e *gonjaexec.Evaluator, in *gonjaexec.Value, params *gonjaexec.VarArgs) *gonjaexec.Value {
		if lib.b == nil {
			return fn(e, in, params)
		}
		if tplFreeFilters[name] {
			if err := lib.allow(0); err != nil {
				return gonjaexec.AsValue(err)
			}
			return fn(e, in, params)
		}
		if err := lib.allow(tplFilterEstimate(name, in, params, lib.left())); err != nil {
			return gonjaexec.AsValue(fmt.Errorf("%s: %w", name, err))
		}
		out := fn(e, in, params)
		if err := lib.spend(tplShallow(out)); err != nil {
			return gonjaexec.AsValue(fmt.Errorf("%s: %w", name, err))
		}
		return out
	}
}

// guardMethods are gonja's methods with those of strings guarded.
func (lib *tplLibrary) guardMethods() gonjaexec.Methods {
	m := gonjabuiltins.Methods
	guarded := make(map[string]gonjaexec.Method[string], len(tplStrMethodNames))
	for _, name := range tplStrMethodNames {
		fn, ok := m.Str.Get(name)
		if !ok {
			continue
		}
		guarded[name] = func(self string, selfValue *gonjaexec.Value, params *gonjaexec.VarArgs) (any, error) {
			if lib.b == nil {
				return fn(self, selfValue, params)
			}
			if err := lib.allow(tplStrMethodEstimate(name, self, params, lib.left())); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			out, err := fn(self, selfValue, params)
			if err == nil {
				err = lib.spend(tplShallow(gonjaexec.AsValue(out)))
			}
			return out, err
		}
	}
	m.Str = gonjaexec.NewMethodSet(guarded)
	return m
}

// guardLipsum wraps the lipsum global (n paragraphs of min to max words).
func (lib *tplLibrary) guardLipsum(globals *gonjaexec.Context) {
	orig, ok := gonjabuiltins.GlobalFunctions.Get("lipsum")
	fn, isFn := orig.(func(*gonjaexec.Evaluator, *gonjaexec.VarArgs) *gonjaexec.Value)
	if !ok || !isFn {
		return
	}
	globals.Set("lipsum", func(e *gonjaexec.Evaluator, params *gonjaexec.VarArgs) *gonjaexec.Value {
		if lib.b == nil {
			return fn(e, params)
		}
		est := tplTimes(max(tplIntArg(params, 0, "n", 5), 0), tplTimes(max(tplIntArg(params, 3, "max", 100), 0), 16))
		if err := lib.allow(est); err != nil {
			return gonjaexec.AsValue(fmt.Errorf("lipsum: %w", err))
		}
		out := fn(e, params)
		if err := lib.spend(tplShallow(out)); err != nil {
			return gonjaexec.AsValue(fmt.Errorf("lipsum: %w", err))
		}
		return out
	})
}
