package lua

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/tinysse/tinysse/engine"
)

// TestSyntaxErrorAtEOFNamesLine: a script that ends inside a block gets
// the line (and column) where it ends, not gopher-lua's bare "at EOF".
func TestSyntaxErrorAtEOFNamesLine(t *testing.T) {
	for _, c := range []struct{ name, src, want string }{
		{"open function", "function publish(pub)\n  return pub\n", "eof.lua line:2(column:13) near EOF"},
		{"trailing blank lines", "x = 1\nif x then\n  x = 2\n\n\n", "eof.lua line:3(column:8) near EOF"},
		{"half a statement", "x = ", "eof.lua line:1(column:4) near EOF"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(Config{Script: "eof.lua", Source: []byte(c.src)})
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "at EOF") {
				t.Fatalf("error %v, want one with %q", err, c.want)
			}
		})
	}
}

// TestUnterminatedStringNamesItsLine: gopher-lua notices an unterminated
// string on the line break after it and named the next line (column 0);
// the string's own line is named.
func TestUnterminatedStringNamesItsLine(t *testing.T) {
	for _, c := range []struct{ name, src, want string }{
		{"first line", "x = \"abc\ny = 1\n", "str.lua line:1(column:8) near 'abc': unterminated string"},
		{"later line", "x = 1\ny = 'abc\n\n", "str.lua line:2(column:8) near 'abc': unterminated string"},
		{"CRLF", "x = 1\r\ny = \"abc\r\nz = 2\r\n", "str.lua line:2(column:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(Config{Script: "str.lua", Source: []byte(c.src)})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one with %q", err, c.want)
			}
		})
	}
}

// TestCompileErrorNamesLine: errors gopher-lua finds when compiling
// rather than parsing read "FILE:LINE: message" like the others, not
// "compile error near line(L) FILE: ..."; a goto's is the goto's line.
func TestCompileErrorNamesLine(t *testing.T) {
	for _, c := range []struct{ name, src, want string }{
		{"goto without label", "local x = 1\ngoto nowhere\nx = 2\n", "lua: c.lua:2: no visible label 'nowhere' for <goto> at line 2"},
		{"break outside a loop", "local x = 1\nif x then\n  break\nend\n", "lua: c.lua:3: no loop to break"},
		{"vararg outside a vararg function", "function f()\n  return ...\nend\n", "lua: c.lua:2: cannot use '...' outside a vararg function"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(Config{Script: "c.lua", Source: []byte(c.src)})
			if err == nil || err.Error() != c.want {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

// TestHookErrorNamesHook: a hook's runtime error says which hook failed,
// and not gopher-lua's "in main chunk" (which its traceback says of
// every Lua function).
func TestHookErrorNamesHook(t *testing.T) {
	publish := func(src string) error {
		t.Helper()
		rt, err := Load(Config{Script: "hooks.lua", Source: []byte(src), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.Start(); err != nil {
			t.Fatal(err)
		}
		defer rt.Close()
		_, err = rt.Hooks().Publish(&engine.Request{}, &engine.Message{Data: "x", HasData: true})
		return err
	}
	err := publish("local function helper(t)\n  return t.x\nend\nfunction publish(pub)\n  return helper(nil)\nend\n")
	if err == nil || !strings.HasPrefix(err.Error(), "publish hook: hooks.lua:2: ") || strings.Contains(err.Error(), "main chunk") {
		t.Errorf("error %v, want it to start with the hook's name and the line, without \"main chunk\"", err)
	}
	// An error value that is no string carries no position: the frame's is added.
	err = publish("function publish(pub)\n  error({})\nend\n")
	if err == nil || !strings.HasPrefix(err.Error(), "publish hook: ") || !strings.HasSuffix(err.Error(), "(at hooks.lua:2)") {
		t.Errorf("error %v, want the hook's name and \"(at hooks.lua:2)\"", err)
	}
}
