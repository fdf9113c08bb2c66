package lua

import (
	"bufio"
	"encoding/hex"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	glua "github.com/yuin/gopher-lua"
)

var writeCases = flag.Bool("patterns.write-cases", false, "write testdata/patterns-cases.txt (then run testdata/patterns-gen.lua with lua5.1)")

// patternPieces are what the generated patterns are made of: every
// construct of Lua 5.1 patterns, and malformed ones.
var patternPieces = []string{
	"a", "b", "x", ".", "%a", "%d", "%s", "%w", "%p", "%A", "%S", "%.", "%%", "(", ")", "()",
	"[ab]", "[^a]", "[a-c]", "[%d.]", "[]]", "[^]a]", "[a-]", "[-a]", "[", "]", "^", "$",
	"*", "+", "-", "?", "%b()", "%bab", "%f[%w]", "%f[%W]", "%1", "%2", "%0", "%", "%z", "\x00", " ",
}

// patternCases are the cases of TestPatternsLua51, from a fixed seed.
func patternCases() [][3]string {
	r := rand.New(rand.NewPCG(51, 13))
	subjects := []string{"", "a", "ab", "aab", "hello world", "(a(b)c)", "a.b.c", "  x  ", "123abc", "a\x00b", "xaxbxcx", "((()))", "THE (quick) fox", "ba", "aaaa"}
	repls := []string{"", "-", "%0", "%1", "[%1]", "%%", "%x", "%", "%2", "<%0>"}
	var cases [][3]string
	for i := 0; i < 3000; i++ {
		var p strings.Builder
		for n := 1 + r.IntN(5); n > 0; n-- {
			p.WriteString(patternPieces[r.IntN(len(patternPieces))])
		}
		s := subjects[r.IntN(len(subjects))]
		if r.IntN(4) == 0 { // a subject made of the pattern's own characters
			s = strings.Repeat(p.String(), 1+r.IntN(2))
		}
		cases = append(cases, [3]string{s, p.String(), repls[r.IntN(len(repls))]})
	}
	return cases
}

// TestPatternsLua51: find, match, gmatch and gsub give what Lua 5.1 gives
// (testdata/patterns51.txt, written by lua5.1 from the same driver,
// testdata/patterns.lua) on 3,000 generated patterns, malformed ones
// included (the same error, without position).
func TestPatternsLua51(t *testing.T) {
	cases := patternCases()
	if *writeCases {
		var b strings.Builder
		for _, c := range cases {
			fmt.Fprintf(&b, "%x\t%x\t%x\n", c[0], c[1], c[2])
		}
		if err := os.WriteFile("testdata/patterns-cases.txt", []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Skip("cases written; run: cd testdata && lua5.1 patterns-gen.lua < patterns-cases.txt > patterns51.txt")
	}
	f, err := os.Open("testdata/patterns51.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	driver, err := os.ReadFile("testdata/patterns.lua")
	if err != nil {
		t.Fatal(err)
	}
	rt := startRuntime(t, string(driver), Config{})
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n, bad := 0, 0
	for sc.Scan() {
		cols := strings.SplitN(sc.Text(), "\t", 4)
		if len(cols) != 4 {
			t.Fatalf("line %q", sc.Text())
		}
		var args [3]glua.LValue
		for i := range args {
			b, err := hex.DecodeString(cols[i])
			if err != nil {
				t.Fatal(err)
			}
			args[i] = glua.LString(b)
		}
		got, err := callGlobal(rt, 0, "run", args[:]...)
		if err != nil {
			t.Fatal(err)
		}
		n++
		if got != cols[3] {
			bad++
			if bad <= 20 {
				t.Errorf("subject %q pattern %q repl %q:\n got %s\nwant %s", args[0], args[1], args[2], got, cols[3])
			}
		}
	}
	if n != len(cases) {
		t.Errorf("%d cases in patterns51.txt, want %d (regenerate it)", n, len(cases))
	}
	if bad > 0 {
		t.Errorf("%d of %d cases differ from Lua 5.1", bad, n)
	}
}
