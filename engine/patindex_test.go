package engine

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// The trie finds exactly the patterns Pattern.Match accepts, each once.
func TestPatIndexMatchesLikeMatch(t *testing.T) {
	segs := []string{"a", "b", "c", ""}
	r := rand.New(rand.NewPCG(1, 2))
	randTopic := func() string {
		n := 1 + r.IntN(4)
		s := make([]string, n)
		for i := range s {
			s[i] = segs[r.IntN(len(segs))]
		}
		return strings.Join(s, "/")
	}
	var pats []Pattern
	seen := map[string]bool{}
	for len(pats) < 200 {
		n := 1 + r.IntN(4)
		s := make([]string, n)
		for i := range s {
			switch r.IntN(4) {
			case 0:
				s[i] = "*"
			default:
				s[i] = segs[r.IntN(3)]
			}
		}
		if r.IntN(3) == 0 {
			s[n-1] = "**"
		}
		src := strings.Join(s, "/")
		if r.IntN(50) == 0 {
			src = []string{"*", "**"}[r.IntN(2)]
		}
		p, err := ParseSubscription(src)
		if err != nil || !p.wild || seen[src] {
			continue
		}
		seen[src] = true
		pats = append(pats, p)
	}
	var x patIndex
	topics := map[string]*topic{}
	for _, p := range pats {
		tp := &topic{name: p.src, pattern: true}
		topics[p.src] = tp
		x.add(p, tp)
	}
	check := func() {
		t.Helper()
		for range 2000 {
			name := randTopic()
			var want []string
			for _, p := range pats {
				if p.Match(name) {
					want = append(want, p.src)
				}
			}
			var got []string
			for _, tp := range x.matches(nil, name) {
				got = append(got, tp.name)
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("topic %q: trie found %q, Match %q", name, got, want)
			}
		}
		if got := x.matches(nil, InternalPrefix+"stats"); len(got) != 0 {
			t.Fatalf("internal topic matched %v", got)
		}
	}
	check()
	// Removing half keeps the rest found; removing all leaves the trie empty.
	for i, p := range pats {
		if i%2 == 0 {
			x.remove(p)
		}
	}
	pats = slices.DeleteFunc(pats, func(p Pattern) bool {
		return slices.IndexFunc(pats, func(q Pattern) bool { return q.src == p.src })%2 == 0
	})
	check()
	for _, p := range pats {
		x.remove(p)
	}
	if !x.root.empty() || len(x.all) != 0 {
		t.Fatalf("index not empty after removing every pattern: %+v", x.root)
	}
}

func TestParseSubscription(t *testing.T) {
	for _, s := range []string{"a", "", "a/b", "a//b", "*", "**", "a/*", "a/**", "*/b", "a/*/c/**"} {
		if _, err := ParseSubscription(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	for _, s := range []string{"a/**/b", "a*", "a/b*", "**/a", "/*", "a//*", "a/*/", "*/", "a/**/"} {
		_, err := ParseSubscription(s)
		if err == nil || !strings.Contains(err.Error(), `"`+s+`"`) {
			t.Errorf("%q: err %v, want one naming it", s, err)
		}
	}
}

func TestPatternTopicsGoWithTheirSubscribers(t *testing.T) {
	e, err := New(Config{Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(t.Context())
	a := e.acquireSub("x/*")
	b := e.acquireSub("x/*")
	c := e.acquireSub("y/**")
	if a != b || !a.pattern || a == c {
		t.Fatalf("acquireSub: %p %p %p", a, b, c)
	}
	if e.Topics() != 0 {
		t.Errorf("pattern topics count as topics: %d", e.Topics())
	}
	e.release(a)
	if e.lookup("x/*") == nil {
		t.Fatal("pattern removed while held")
	}
	e.release(b)
	e.release(c)
	if e.lookup("x/*") != nil || e.lookup("y/**") != nil || len(e.pats.byName) != 0 || !e.pats.index.root.empty() {
		t.Fatalf("patterns left behind: %v", e.pats.byName)
	}
}

// TestPatternBackfillMergesManyTopics: more matching topics than the
// ring holds, some sharing messages: the ring gets exactly the newest
// Capacity distinct messages of all of them, in publish order.
func TestPatternBackfillMergesManyTopics(t *testing.T) {
	e, err := New(Config{Shards: 1, Capacity: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(t.Context())
	var all []*Message
	pub := func(topics ...string) {
		m := &Message{Data: "x", HasData: true, Topics: topics}
		if _, err := e.Publish(m); err != nil {
			t.Fatal(err)
		}
		all = append(all, m)
	}
	for i := range 30 {
		pub("t/" + strings.Repeat("x", i%7))
		if i%4 == 0 {
			pub("t/a", "t/b", "t/c") // one message at the head of three topics
		}
	}
	pub("t/y", "t/z")
	pat := e.acquireSub("t/*")
	defer e.release(pat)
	var got []*Message
	for s := pat.ring.Tail(); s < pat.ring.Head(); s++ {
		m, _, _ := pat.ring.Get(s)
		got = append(got, m)
	}
	if want := all[len(all)-8:]; !slices.Equal(got, want) {
		t.Fatalf("pattern ring holds %d messages, want the newest 8 in order", len(got))
	}
	if !pat.lossy {
		t.Errorf("older messages were left out: the ring must say so")
	}
}
