package lua

import (
	"sort"
	"strings"

	glua "github.com/yuin/gopher-lua"
)

// The string and table built-ins that gopher-lua runs in one Go call of
// unbounded length or size, replaced by versions that take a budget
// (limits.go): find, match, gmatch and gsub on our Lua 5.1 matcher
// (pattern.go); format, rep, upper, lower and reverse, concat, sort;
// byte (at most maxUnpack values);
// load and loadstring; and coroutine.resume and wrap, which hand the
// resumer's context to the coroutine.

// maxChunk bounds the source load and loadstring compile: gopher-lua's
// parser cannot be interrupted and builds a syntax tree many times the
// size of its source.
const maxChunk = 1 << 20

// openLimitedLibs replaces the built-ins above in the VM's string, table,
// base and coroutine libraries. The string metatable's __index is the
// string table itself, so s:gsub(...) finds them too.
func (v *vm) openLimitedLibs() {
	L := v.main
	fn := func(t glua.LValue, name string, f glua.LGFunction) {
		if tbl, ok := t.(*glua.LTable); ok {
			tbl.RawSetString(name, L.NewFunction(f))
		}
	}
	str := L.GetGlobal("string")
	fn(str, "find", func(L *glua.LState) int { return v.strFind(L, true) })
	fn(str, "match", func(L *glua.LState) int { return v.strFind(L, false) })
	fn(str, "gmatch", v.strGmatch)
	fn(str, "gfind", v.strGmatch) // gopher-lua's 5.0 name for gmatch
	fn(str, "gsub", v.strGsub)
	fn(str, "rep", v.strRep)
	if tbl, ok := str.(*glua.LTable); ok {
		byteFn := tbl.RawGetString("byte").(*glua.LFunction).GFunction
		fn(str, "byte", func(L *glua.LState) int { return strByte(L, byteFn) })
		format := tbl.RawGetString("format").(*glua.LFunction).GFunction
		fn(str, "format", func(L *glua.LState) int { return v.strFormat(L, format) })
		for _, name := range []string{"upper", "lower", "reverse"} {
			orig := tbl.RawGetString(name).(*glua.LFunction).GFunction
			fn(str, name, func(L *glua.LState) int {
				b := v.budget(L, "string."+name)
				b.fit(len(L.CheckString(1)))
				return orig(L)
			})
		}
	}
	tab := L.GetGlobal("table")
	fn(tab, "concat", v.tableConcat)
	fn(tab, "sort", v.tableSort)
	for _, name := range []string{"load", "loadstring"} {
		orig, ok := L.GetGlobal(name).(*glua.LFunction)
		if !ok {
			continue
		}
		L.SetGlobal(name, L.NewFunction(func(L *glua.LState) int { return loadChunk(L, name, orig.GFunction) }))
	}
	co := L.GetGlobal("coroutine")
	if tbl, ok := co.(*glua.LTable); ok {
		resume := tbl.RawGetString("resume").(*glua.LFunction).GFunction
		wrap := tbl.RawGetString("wrap").(*glua.LFunction).GFunction
		fn(co, "resume", func(L *glua.LState) int {
			inheritContext(L, L.CheckThread(1))
			return resume(L)
		})
		fn(co, "wrap", func(L *glua.LState) int { return coWrap(L, wrap) })
	}
}

// strByte is string.byte(s, i, j) refusing more than maxUnpack values, as
// PUC Lua 5.1 does ("string slice too long": its C stack holds 8000).
// gopher-lua pushes every value in one Go call that no timeout can stop:
// 200,000 of them took over a second under -race, past a 300 ms
// --script-timeout (lua TestManyResultsBounded).
func strByte(L *glua.LState, orig glua.LGFunction) int {
	s := L.CheckString(1)
	i := L.OptInt(2, 1)
	j := L.OptInt(3, i)
	n := len(s)
	// The bounds as Lua 5.1's str_byte computes them.
	if i < 0 {
		i += n + 1
	}
	if j < 0 {
		j += n + 1
	}
	i, j = max(i, 1), min(j, n)
	if i <= j && j-i >= maxUnpack {
		L.RaiseError("string slice too long (%d values, at most %d)", j-i+1, maxUnpack)
	}
	return orig(L)
}

// inheritContext gives co the context of the hook resuming it. A
// coroutine keeps the context of the thread that created it (gopher-lua
// derives it once), so one made by an earlier hook, or by the main chunk
// (none), would otherwise run beyond the resuming hook's timeout.
func inheritContext(L, co *glua.LState) {
	if ctx := L.Context(); ctx != nil && co.Context() != ctx {
		co.SetContext(ctx)
	}
}

// coWrap is coroutine.wrap whose function hands the caller's context to
// the coroutine on each call.
func coWrap(L *glua.LState, wrap glua.LGFunction) int {
	wrap(L)
	aux, ok := L.Get(-1).(*glua.LFunction)
	if !ok || len(aux.Upvalues) == 0 {
		return 1
	}
	co, ok := aux.Upvalues[0].Value().(*glua.LState)
	if !ok {
		return 1
	}
	L.Pop(1)
	L.Push(L.NewFunction(func(L *glua.LState) int {
		inheritContext(L, co)
		base := L.GetTop()
		L.Insert(aux, 1)
		L.Call(base, glua.MultRet)
		return L.GetTop()
	}))
	return 1
}

// loadChunk is load or loadstring refusing a source over maxChunk. load's
// reader function is called here (as gopher-lua's load does), its pieces
// counted as they come.
func loadChunk(L *glua.LState, name string, orig glua.LGFunction) int {
	if name == "load" {
		fn := L.CheckFunction(1)
		chunkName := L.OptString(2, "?")
		top := L.GetTop()
		var src strings.Builder
		for {
			L.SetTop(top)
			L.Push(fn)
			L.Call(0, 1)
			piece := L.Get(-1)
			L.Pop(1)
			if piece == glua.LNil {
				break
			}
			if !glua.LVCanConvToString(piece) {
				L.Push(glua.LNil)
				L.Push(glua.LString("reader function must return a string"))
				return 2
			}
			s := piece.String()
			if s == "" {
				break
			}
			if src.Len()+len(s) > maxChunk {
				L.RaiseError("load: chunk larger than %d bytes", maxChunk)
			}
			src.WriteString(s)
		}
		f, err := L.Load(strings.NewReader(src.String()), chunkName)
		if err != nil {
			L.Push(glua.LNil)
			L.Push(glua.LString(err.Error()))
			return 2
		}
		L.Push(f)
		return 1
	}
	if len(L.CheckString(1)) > maxChunk {
		L.RaiseError("loadstring: chunk larger than %d bytes", maxChunk)
	}
	return orig(L)
}

// strFind is string.find (find) and string.match, as Lua 5.1's
// str_find_aux.
func (v *vm) strFind(L *glua.LState, find bool) int {
	what := "string.match"
	if find {
		what = "string.find"
	}
	s := L.CheckString(1)
	p := L.CheckString(2)
	init := startIndex(L.OptInt(3, 1), len(s))
	if find && (glua.LVAsBool(L.Get(4)) || !strings.ContainsAny(cString(p), patSpecials)) {
		i := strings.Index(s[init:], p)
		if i < 0 {
			L.Push(glua.LNil)
			return 1
		}
		L.Push(glua.LNumber(init + i + 1))
		L.Push(glua.LNumber(init + i + len(p)))
		return 2
	}
	b := v.budget(L, what)
	m := newMatcher(&b, s, p)
	anchor, start := m.pc(0) == '^', 0
	if anchor {
		start = 1
	}
	for s1 := init; ; s1++ {
		m.level = 0
		if e := m.match(s1, start); e >= 0 {
			if find {
				L.Push(glua.LNumber(s1 + 1))
				L.Push(glua.LNumber(e))
				return 2 + m.pushCaptures(L, s1, e, false)
			}
			return m.pushCaptures(L, s1, e, true)
		}
		if anchor || s1 >= len(s) {
			break
		}
	}
	L.Push(glua.LNil)
	return 1
}

// startIndex turns Lua's init argument into an offset in 0..n.
func startIndex(i, n int) int {
	if i < 0 {
		i += n + 1
	}
	return min(max(i-1, 0), n)
}

// cString is s as C sees it: up to its first NUL.
func cString(s string) string {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return s[:i]
	}
	return s
}

// strGmatch is string.gmatch: '^' is not an anchor there, as in Lua 5.1.
func (v *vm) strGmatch(L *glua.LState) int {
	s := L.CheckString(1)
	p := L.CheckString(2)
	pos := 0
	L.Push(L.NewFunction(func(L *glua.LState) int {
		b := v.budget(L, "string.gmatch")
		m := newMatcher(&b, s, p)
		for src := pos; src <= len(s); src++ {
			m.level = 0
			if e := m.match(src, 0); e >= 0 {
				pos = e
				if e == src {
					pos++ // an empty match: go on one further
				}
				return m.pushCaptures(L, src, e, true)
			}
		}
		pos = len(s) + 1
		return 0
	}))
	return 1
}

// strGsub is string.gsub, as Lua 5.1's str_gsub, building its result in
// one buffer (gopher-lua's copied the whole string per match) that may
// not outgrow the budget.
func (v *vm) strGsub(L *glua.LState) int {
	src := L.CheckString(1)
	p := L.CheckString(2)
	repl := L.Get(3)
	switch repl.Type() {
	case glua.LTNumber, glua.LTString, glua.LTTable, glua.LTFunction:
	default:
		L.ArgError(3, "string/function/table expected")
	}
	maxN := L.OptInt(4, len(src)+1)
	b := v.budget(L, "string.gsub")
	m := newMatcher(&b, src, p)
	anchor, start := m.pc(0) == '^', 0
	if anchor {
		start = 1
	}
	out := outBuffer{b: &b}
	add := out.add
	n, pos, copied := 0, 0, 0 // copied: src[copied:pos] is still to be written
scan:
	for n < maxN {
		m.level = 0
		e := m.match(pos, start)
		if e >= 0 {
			n++
			add(src[copied:pos])
			m.replace(L, repl, pos, e, add)
			copied = e
		}
		switch {
		case e > pos:
			pos = e
		case pos < len(src):
			pos++
		default:
			break scan // the subject is done
		}
		if anchor {
			break
		}
	}
	add(src[copied:])
	L.Push(glua.LString(out.String()))
	L.Push(glua.LNumber(n))
	return 2
}

// replace writes the replacement of the match from s to e (Lua 5.1's
// add_value and add_s).
func (m *matcher) replace(L *glua.LState, repl glua.LValue, s, e int, add func(string)) {
	var val glua.LValue
	switch r := repl.(type) {
	case glua.LString, glua.LNumber:
		rs := glua.LVAsString(r)
		from := 0
		for i := 0; i < len(rs); i++ {
			if rs[i] != '%' {
				continue
			}
			add(rs[from:i])
			i++
			var c byte // past the end: C's terminating NUL
			if i < len(rs) {
				c = rs[i]
			}
			switch {
			case !isDigit(c):
				add(string(c))
			case c == '0':
				add(m.src[s:e])
			default:
				add(glua.LVAsString(m.captured(int(c-'1'), s, e)))
			}
			from = i + 1
		}
		if from < len(rs) {
			add(rs[from:])
		}
		return
	case *glua.LFunction:
		L.Push(r)
		n := m.pushCaptures(L, s, e, true)
		L.Call(n, 1)
		val = L.Get(-1)
		L.Pop(1)
	case *glua.LTable:
		val = L.GetTable(r, m.captured(0, s, e))
	}
	switch x := val.(type) {
	case *glua.LNilType:
		add(m.src[s:e])
	case glua.LBool:
		if !x {
			add(m.src[s:e])
			return
		}
		L.RaiseError("invalid replacement value (a %s)", val.Type())
	case glua.LString, glua.LNumber:
		add(glua.LVAsString(x))
	default:
		L.RaiseError("invalid replacement value (a %s)", val.Type())
	}
}

// strRep is string.rep, refusing results over maxStringRep (an error the
// script may catch) or over the budget (the hook is stopped).
func (v *vm) strRep(L *glua.LState) int {
	s := L.CheckString(1)
	n := L.CheckInt(2)
	if n <= 0 || s == "" {
		L.Push(glua.LString(""))
		return 1
	}
	size := int64(len(s)) * int64(n)
	if size > maxStringRep {
		L.RaiseError("string.rep: result would exceed %d bytes", maxStringRep)
	}
	b := v.budget(L, "string.rep")
	b.fit(int(size))
	L.Push(glua.LString(strings.Repeat(s, n)))
	return 1
}

// strFormat is gopher-lua's string.format (Go's fmt with Lua values), once
// the most it can write is known to fit the budget: widths and precisions
// reach a million in fmt, and %q and %x write several bytes per byte.
func (v *vm) strFormat(L *glua.LState, format glua.LGFunction) int {
	f := L.CheckString(1)
	b := v.budget(L, "string.format")
	b.fit(formatBound(f, L))
	return format(L)
}

// formatBound is an upper bound of what fmt.Sprintf writes for the format
// f and the arguments from index 2 of L's stack.
func formatBound(f string, L *glua.LState) int {
	args := make([]int, 0, L.GetTop()-1)
	longest, all := 0, 0
	for i := 2; i <= L.GetTop(); i++ {
		n := len(L.ToStringMeta(L.Get(i)).String()) + 32
		args = append(args, n)
		longest = max(longest, n)
		all += n
	}
	const fmtMaxWidth = 1e6 // fmt refuses wider (BADWIDTH)
	total, next, indexed := len(f)+all, 0, false
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			continue
		}
		i++
		width := 0
		for ; i < len(f) && strings.IndexByte("+-# 0123456789.*[]", f[i]) >= 0; i++ {
			switch c := f[i]; {
			case isDigit(c):
				width = min(width*10+int(c-'0'), fmtMaxWidth)
			case c == '*' || c == '[':
				indexed = true
			case c == '.':
				total += width
				width = 0
			}
		}
		total += width + 64
		if i >= len(f) {
			break
		}
		mult := 1
		if strings.IndexByte("qxX", f[i]) >= 0 {
			mult = 6 // %q: \xff for a byte; % #x: 0xff and a space
		}
		arg := longest
		if !indexed && next < len(args) {
			arg = args[next]
		}
		next++
		total += mult * arg
		if total < 0 {
			return -1
		}
	}
	return total
}

// tableConcat is gopher-lua's table.concat (its bounds i and j are clamped
// to the list, as there), measuring the result before building it.
func (v *vm) tableConcat(L *glua.LState) int {
	tbl := L.CheckTable(1)
	sep := L.OptString(2, "")
	n := tbl.Len()
	i := L.OptInt(3, 1)
	j := L.OptInt(4, n)
	if L.GetTop() == 3 && (i > n || i < 1) {
		L.Push(glua.LString(""))
		return 1
	}
	i = max(min(i, n), 1)
	j = min(j, n)
	if i > j {
		L.Push(glua.LString(""))
		return 1
	}
	b := v.budget(L, "table.concat")
	size := 0
	for k := i; k <= j; k++ {
		b.step(1)
		val := tbl.RawGetInt(k)
		if !glua.LVCanConvToString(val) {
			L.RaiseError("invalid value (%s) at index %d in table for concat", val.Type().String(), k)
		}
		size += len(glua.LVAsString(val))
		if k != j {
			size += len(sep)
		}
		b.fit(size)
	}
	var out strings.Builder
	out.Grow(size)
	for k := i; k <= j; k++ {
		b.step(1)
		out.WriteString(glua.LVAsString(tbl.RawGetInt(k)))
		if k != j {
			out.WriteString(sep)
		}
	}
	L.Push(glua.LString(out.String()))
	return 1
}

// tableSort sorts t[1..#t] with < or the comparator, polling the budget
// between comparisons. The values are sorted in a copy and written back
// once sorted, so a sort stopped halfway leaves the table as it was.
func (v *vm) tableSort(L *glua.LState) int {
	tbl := L.CheckTable(1)
	var cmp *glua.LFunction
	if L.GetTop() != 1 {
		cmp = L.CheckFunction(2)
	}
	n := tbl.Len()
	b := v.budget(L, "table.sort")
	b.fit(n * 16) // the copy: one interface value per element
	vals := make([]glua.LValue, n)
	for i := range vals {
		b.step(1)
		vals[i] = tbl.RawGetInt(i + 1)
	}
	sort.Sort(&luaSorter{L: L, b: &b, cmp: cmp, vals: vals})
	for i, val := range vals {
		tbl.RawSetInt(i+1, val)
	}
	return 0
}

type luaSorter struct {
	L    *glua.LState
	b    *budget
	cmp  *glua.LFunction
	vals []glua.LValue
}

func (s *luaSorter) Len() int      { return len(s.vals) }
func (s *luaSorter) Swap(i, j int) { s.vals[i], s.vals[j] = s.vals[j], s.vals[i] }
func (s *luaSorter) Less(i, j int) bool {
	s.b.step(1)
	if s.cmp == nil {
		return s.L.LessThan(s.vals[i], s.vals[j])
	}
	s.L.Push(s.cmp)
	s.L.Push(s.vals[i])
	s.L.Push(s.vals[j])
	s.L.Call(2, 1)
	ret := s.L.Get(-1)
	s.L.Pop(1)
	return glua.LVAsBool(ret)
}
