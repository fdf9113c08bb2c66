package engine

import (
	"errors"
	"testing"
)

func TestPatternMatch(t *testing.T) {
	cases := []struct {
		pat   string
		yes   []string
		no    []string
		exact bool
	}{
		{pat: "news", yes: []string{"news"}, no: []string{"", "news/a", "newsx", "new"}, exact: true},
		{pat: "", yes: []string{""}, no: []string{"a"}, exact: true},
		{pat: "_tinysse.stats", yes: []string{"_tinysse.stats"}, no: []string{"_tinysse.other"}, exact: true},
		{pat: "*", yes: []string{"", "a", "a/b", "a/b/c"}, no: []string{"_tinysse.stats"}},
		{pat: "**", yes: []string{"", "a", "a/b/c"}, no: []string{"_tinysse.stats"}},
		{pat: "news/*", yes: []string{"news/a", "news/"}, no: []string{"news", "news/a/b", "newsx", "newsx/a", "x/a"}},
		{pat: "news/**", yes: []string{"news/a", "news/a/b", "news/a/b/c"}, no: []string{"news", "newsx/a", "x/news/a"}},
		{pat: "*/scores", yes: []string{"a/scores", "b/scores"}, no: []string{"scores", "a/b/scores", "a/scoresx"}},
		{pat: "a/*/c/**", yes: []string{"a/b/c/d", "a/x/c/d/e"}, no: []string{"a/b/c", "a/b/d/e", "a/c/d"}},
		{pat: "*/x", yes: []string{"a/x"}, no: []string{"_tinysse.stats/x"}},
	}
	for _, c := range cases {
		p, err := ParsePattern(c.pat)
		if err != nil {
			t.Fatalf("%q: %v", c.pat, err)
		}
		if p.Exact() != c.exact || p.String() != c.pat {
			t.Errorf("%q: Exact %v String %q", c.pat, p.Exact(), p.String())
		}
		for _, topic := range c.yes {
			if !p.Match(topic) {
				t.Errorf("%q should match %q", c.pat, topic)
			}
		}
		for _, topic := range c.no {
			if p.Match(topic) {
				t.Errorf("%q should not match %q", c.pat, topic)
			}
		}
	}
	if !(Pattern{}).Match("") || (Pattern{}).Match("a") {
		t.Error("the zero Pattern is the default stream")
	}
}

func TestParsePatternRefuses(t *testing.T) {
	for _, s := range []string{"a*", "*a", "a/b*c", "**/a", "a/**/b", "a/***", "***"} {
		if _, err := ParsePattern(s); !errors.Is(err, ErrPattern) {
			t.Errorf("%q: got %v, want ErrPattern", s, err)
		}
	}
}

// TestPatternCovers checks Covers against its definition: p covers q when
// every topic of a universe rich enough to tell the patterns apart that q
// matches, p matches too.
func TestPatternCovers(t *testing.T) {
	pats := []string{"*", "**", "a", "b", "", "a/b", "a/c", "a/*", "b/*", "*/b", "*/*", "a/**", "*/**",
		"a/b/c", "a/*/c", "a/b/**", "a/*/**", "*/b/**", "_tinysse.stats", "a/b/c/d"}
	segs := []string{"a", "b", "c", "d", "x"}
	universe := []string{"", "_tinysse.stats", "_tinysse.x/a"}
	var grow func(prefix string, depth int)
	grow = func(prefix string, depth int) {
		if depth == 0 {
			return
		}
		for _, s := range segs {
			topic := s
			if prefix != "" {
				topic = prefix + "/" + s
			}
			universe = append(universe, topic)
			grow(topic, depth-1)
		}
	}
	grow("", 5)
	for _, ps := range pats {
		p := MustPattern(ps)
		for _, qs := range pats {
			q := MustPattern(qs)
			want := true
			for _, topic := range universe {
				if q.Match(topic) && !p.Match(topic) {
					want = false
					break
				}
			}
			if got := p.Covers(q); got != want {
				t.Errorf("%q.Covers(%q) = %v, want %v", ps, qs, got, want)
			}
		}
	}
}

func TestPatternMatchAllocs(t *testing.T) {
	p := MustPattern("a/*/c/**")
	if n := testing.AllocsPerRun(100, func() { p.Match("a/b/c/d/e") }); n != 0 {
		t.Errorf("Match allocates %v times", n)
	}
}

func FuzzPattern(f *testing.F) {
	for _, s := range [][2]string{{"a/*", "a/b"}, {"a/**", "a/b/c"}, {"*", "_tinysse.stats"}, {"**/a", "x"}, {"a/b", "a/b"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, ps, topic string) {
		p, err := ParsePattern(ps)
		if err != nil {
			return
		}
		m := p.Match(topic)
		if p.Exact() && m != (topic == ps) {
			t.Fatalf("exact %q vs %q: %v", ps, topic, m)
		}
		if exact, err := ParsePattern(topic); err == nil && exact.Exact() && p.Covers(exact) != m {
			t.Fatalf("%q: Covers(%q) %v, Match %v", ps, topic, p.Covers(exact), m)
		}
		if !p.Covers(p) {
			t.Fatalf("%q does not cover itself", ps)
		}
	})
}
