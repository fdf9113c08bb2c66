package lua

import (
	"strings"

	glua "github.com/yuin/gopher-lua"
)

// Lua 5.1 patterns, as lstrlib.c matches them: a backtracking matcher
// over the pattern's text, with no compilation step. It is our own so
// that it can stop: every step is counted against the hook's budget, which
// polls the hook's context, so a pattern that backtracks for hours on a
// hostile subject ends at --script-timeout like any loop in Lua.
//
// As in Lua 5.1, a pattern ends at its first NUL (use %z to match one);
// unlike 5.1, whose recursion is bounded only by the C stack, nesting
// deeper than maxMatchDepth (captures, ?, * and - waiting to backtrack) is
// an error "pattern too complex", as in Lua 5.2 and later.

const (
	maxCaptures   = 32 // LUA_MAXCAPTURES
	maxMatchDepth = 200
	capUnfinished = -1
	capPosition   = -2
	patSpecials   = "^$*+?.([%-"
)

type patCapture struct {
	init int // offset in the subject
	len  int // or capUnfinished, capPosition
}

// matcher is one match attempt's state (lstrlib's MatchState). Offsets
// are into src and pat; -1 means no match.
type matcher struct {
	src     string
	pat     string // cut at its first NUL
	level   int    // captures open or closed
	depth   int
	b       *budget
	capture [maxCaptures]patCapture
}

func newMatcher(b *budget, src, pat string) *matcher {
	if i := strings.IndexByte(pat, 0); i >= 0 {
		pat = pat[:i]
	}
	return &matcher{src: src, pat: pat, b: b}
}

func (m *matcher) fail(msg string) { m.b.L.RaiseError("%s", msg) }

// pc is the pattern's byte at p, 0 past its end (C's terminating NUL).
func (m *matcher) pc(p int) byte {
	if p < len(m.pat) {
		return m.pat[p]
	}
	return 0
}

// classEnd returns the offset after the single-character class at p.
func (m *matcher) classEnd(p int) int {
	c := m.pat[p]
	p++
	switch c {
	case '%':
		if p >= len(m.pat) {
			m.fail("malformed pattern (ends with '%')")
		}
		return p + 1
	case '[':
		if m.pc(p) == '^' {
			p++
		}
		for { // the first character is never the closing ']'
			if p >= len(m.pat) {
				m.fail("malformed pattern (missing ']')")
			}
			c := m.pat[p]
			p++
			if c == '%' && p < len(m.pat) {
				p++ // an escape such as %]
			}
			if m.pc(p) == ']' {
				return p + 1
			}
		}
	}
	return p
}

// classMatches reports whether c is in the class %cl (C locale).
func classMatches(c, cl byte) bool {
	var res bool
	switch cl | 0x20 {
	case 'a':
		res = isAlpha(c)
	case 'c':
		res = c < 0x20 || c == 0x7f
	case 'd':
		res = '0' <= c && c <= '9'
	case 'l':
		res = 'a' <= c && c <= 'z'
	case 'p':
		res = 0x21 <= c && c <= 0x2f || 0x3a <= c && c <= 0x40 || 0x5b <= c && c <= 0x60 || 0x7b <= c && c <= 0x7e
	case 's':
		res = c == ' ' || '\t' <= c && c <= '\r'
	case 'u':
		res = 'A' <= c && c <= 'Z'
	case 'w':
		res = isAlpha(c) || '0' <= c && c <= '9'
	case 'x':
		res = '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
	case 'z':
		res = c == 0
	default:
		return cl == c
	}
	if 'A' <= cl && cl <= 'Z' {
		return !res
	}
	return res
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// inSet reports whether c is in the set [...] from p ('[') to ec (']').
func (m *matcher) inSet(c byte, p, ec int) bool {
	sig := true
	if m.pat[p+1] == '^' {
		sig = false
		p++
	}
	m.b.step(ec - p)
	for p++; p < ec; p++ {
		switch {
		case m.pat[p] == '%':
			p++
			if classMatches(c, m.pat[p]) {
				return sig
			}
		case m.pat[p+1] == '-' && p+2 < ec:
			p += 2
			if m.pat[p-2] <= c && c <= m.pat[p] {
				return sig
			}
		case m.pat[p] == c:
			return sig
		}
	}
	return !sig
}

// single reports whether c matches the class from p to ep.
func (m *matcher) single(c byte, p, ep int) bool {
	switch m.pat[p] {
	case '.':
		return true
	case '%':
		return classMatches(c, m.pat[p+1])
	case '[':
		return m.inSet(c, p, ep-1)
	}
	return m.pat[p] == c
}

// match matches the pattern from p against the subject from s and
// returns the end of the match, or -1.
func (m *matcher) match(s, p int) int {
	if m.depth++; m.depth > maxMatchDepth {
		m.fail("pattern too complex")
	}
	r := m.doMatch(s, p)
	m.depth--
	return r
}

func (m *matcher) doMatch(s, p int) int {
	for {
		if p >= len(m.pat) {
			return s
		}
		m.b.step(1)
		switch m.pat[p] {
		case '(':
			if m.pc(p+1) == ')' {
				return m.startCapture(s, p+2, capPosition)
			}
			return m.startCapture(s, p+1, capUnfinished)
		case ')':
			return m.endCapture(s, p+1)
		case '%':
			switch c := m.pc(p + 1); {
			case c == 'b':
				if s = m.matchBalance(s, p+2); s < 0 {
					return -1
				}
				p += 4
				continue
			case c == 'f':
				p += 2
				if m.pc(p) != '[' {
					m.fail("missing '[' after '%f' in pattern")
				}
				ep := m.classEnd(p)
				var prev, cur byte
				if s > 0 {
					prev = m.src[s-1]
				}
				if s < len(m.src) {
					cur = m.src[s]
				}
				if m.inSet(prev, p, ep-1) || !m.inSet(cur, p, ep-1) {
					return -1
				}
				p = ep
				continue
			case isDigit(c):
				if s = m.matchCapture(s, c); s < 0 {
					return -1
				}
				p += 2
				continue
			}
		case '$':
			if p+1 == len(m.pat) {
				if s == len(m.src) {
					return s
				}
				return -1
			}
		}
		ep := m.classEnd(p)
		ok := s < len(m.src) && m.single(m.src[s], p, ep)
		switch m.pc(ep) {
		case '?':
			if ok {
				if r := m.match(s+1, ep+1); r >= 0 {
					return r
				}
			}
			p = ep + 1
		case '*':
			return m.maxExpand(s, p, ep)
		case '+':
			if !ok {
				return -1
			}
			return m.maxExpand(s+1, p, ep)
		case '-':
			return m.minExpand(s, p, ep)
		default:
			if !ok {
				return -1
			}
			s++
			p = ep
		}
	}
}

func (m *matcher) maxExpand(s, p, ep int) int {
	i := 0
	for s+i < len(m.src) && m.single(m.src[s+i], p, ep) {
		i++
		m.b.step(1)
	}
	for ; i >= 0; i-- { // try the longest repetition first
		if r := m.match(s+i, ep+1); r >= 0 {
			return r
		}
	}
	return -1
}

func (m *matcher) minExpand(s, p, ep int) int {
	for {
		if r := m.match(s, ep+1); r >= 0 {
			return r
		}
		if s < len(m.src) && m.single(m.src[s], p, ep) {
			s++
		} else {
			return -1
		}
	}
}

func (m *matcher) startCapture(s, p, what int) int {
	if m.level >= maxCaptures {
		m.fail("too many captures")
	}
	m.capture[m.level] = patCapture{init: s, len: what}
	m.level++
	r := m.match(s, p)
	if r < 0 {
		m.level--
	}
	return r
}

func (m *matcher) endCapture(s, p int) int {
	l := -1
	for i := m.level - 1; i >= 0; i-- {
		if m.capture[i].len == capUnfinished {
			l = i
			break
		}
	}
	if l < 0 {
		m.fail("invalid pattern capture")
	}
	m.capture[l].len = s - m.capture[l].init
	r := m.match(s, p)
	if r < 0 {
		m.capture[l].len = capUnfinished
	}
	return r
}

func (m *matcher) matchCapture(s int, c byte) int {
	l := int(c) - '1'
	if l < 0 || l >= m.level || m.capture[l].len == capUnfinished {
		m.fail("invalid capture index")
	}
	n := m.capture[l].len
	if n < 0 { // a position capture: never matches, as in C
		return -1
	}
	m.b.step(n)
	init := m.capture[l].init
	if len(m.src)-s >= n && m.src[init:init+n] == m.src[s:s+n] {
		return s + n
	}
	return -1
}

func (m *matcher) matchBalance(s, p int) int {
	if p+1 >= len(m.pat) {
		m.fail("unbalanced pattern")
	}
	if s >= len(m.src) || m.src[s] != m.pat[p] {
		return -1
	}
	open, closing := m.pat[p], m.pat[p+1]
	depth := 1
	for s++; s < len(m.src); s++ {
		m.b.step(1)
		switch m.src[s] {
		case closing:
			if depth--; depth == 0 {
				return s + 1
			}
		case open:
			depth++
		}
	}
	return -1
}

// captured returns capture i of the match from s to e: a string, or a
// position as a number. Capture 0 of a pattern without captures is the
// whole match.
func (m *matcher) captured(i, s, e int) glua.LValue {
	if i >= m.level {
		if i != 0 {
			m.fail("invalid capture index")
		}
		return glua.LString(m.src[s:e])
	}
	c := m.capture[i]
	switch c.len {
	case capUnfinished:
		m.fail("unfinished capture")
	case capPosition:
		return glua.LNumber(c.init + 1)
	}
	return glua.LString(m.src[c.init : c.init+c.len])
}

// pushCaptures pushes the captures of the match from s to e (the whole
// match when there are none and whole is set) and returns their count.
func (m *matcher) pushCaptures(L *glua.LState, s, e int, whole bool) int {
	n := m.level
	if n == 0 && whole {
		n = 1
	}
	for i := 0; i < n; i++ {
		L.Push(m.captured(i, s, e))
	}
	return n
}
