package lua

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dataDirFixture is a data directory and, beside it, a directory the
// script must not reach: outside/secret.db (a database with a table
// "secret"), outside/page.html, and inside the data directory symbolic
// links that lead out (a file, a directory, a dangling link, a WAL file
// of a database that is itself inside).
type dataDirFixture struct {
	base, data, outside string
}

func newDataDirFixture(t *testing.T) dataDirFixture {
	t.Helper()
	base := t.TempDir()
	f := dataDirFixture{base: base, data: filepath.Join(base, "data"), outside: filepath.Join(base, "outside")}
	for _, d := range []string{f.data, f.outside, filepath.Join(f.data, "sub"), filepath.Join(f.data, "tpl")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustRunInStartupCfg(t, `local sqlite = require "sqlite"`, fmt.Sprintf(`
local db = sqlite.open(%q)
db:exec("create table secret (x)")
db:exec("insert into secret values ('the secret')")
db:close()`, filepath.Join(f.outside, "secret.db")), Config{Unsafe: true})
	for name, text := range map[string]string{
		filepath.Join(f.outside, "page.html"):   "outside {{ x }}",
		filepath.Join(f.data, "tpl", "in.html"): "inside {{ x }}",
	} {
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"link.db":        filepath.Join(f.outside, "secret.db"),
		"linkdir":        f.outside,
		"dangling.db":    filepath.Join(f.outside, "new.db"),
		"side.db-wal":    filepath.Join(f.outside, "side-wal"),
		"tpl/out.html":   filepath.Join(f.outside, "page.html"),
		"inlink.db":      filepath.Join("sub", "target.db"),
		"sub/up.db":      filepath.Join("..", "..", "outside", "secret.db"),
		"tplinside.html": filepath.Join("tpl", "in.html"),
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(f.data, name)); err != nil {
			t.Skipf("no symbolic links here: %v", err)
		}
	}
	return f
}

// outsideFiles lists what is in the outside directory.
func (f dataDirFixture) outsideFiles(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(f.outside)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestDataDirConfinesSQLite: without --unsafe-script, every way a script
// could make SQLite open a file outside --data-dir is refused with a Lua
// error that says why, and creates nothing there: sqlite.open of an
// absolute path, a path with .., a symbolic link (to a file, through a
// directory, dangling, beside the database as its WAL file), a file: URI;
// ATTACH of the same, of a name built at run time (concatenation, a bound
// parameter), in a trigger, through sqlite_attach(); VACUUM INTO a path
// outside, literal or built at run time; PRAGMAs that set host-wide
// state; load_extension. Files inside, links that stay inside, ":memory:",
// a plain VACUUM and reading a PRAGMA still work. Before, every one of
// these reached the file.
func TestDataDirConfinesSQLite(t *testing.T) {
	f := newDataDirFixture(t)
	in := func(name string) string { return f.data + string(filepath.Separator) + filepath.FromSlash(name) } // not cleaned
	out := func(name string) string { return filepath.Join(f.outside, name) }
	open := fmt.Sprintf("local db = sqlite.open(%q)\n", in("main.db"))
	for _, tc := range []struct {
		name, code, want string
	}{
		{"open absolute", fmt.Sprintf("sqlite.open(%q)", out("new.db")), "outside --data-dir"},
		{"open dotdot", fmt.Sprintf("sqlite.open(%q)", in("../outside/new.db")), "may not contain .."},
		{"open dotdot inside", fmt.Sprintf("sqlite.open(%q)", in("sub/../main.db")), "may not contain .."},
		{"open link to a file", fmt.Sprintf("sqlite.open(%q)", in("link.db")), "symbolic link that leads out"},
		{"open relative link", fmt.Sprintf("sqlite.open(%q)", in("sub/up.db")), "symbolic link that leads out"},
		{"open through a linked directory", fmt.Sprintf("sqlite.open(%q)", in("linkdir/new.db")), "escapes"},
		{"open dangling link", fmt.Sprintf("sqlite.open(%q)", in("dangling.db")), "symbolic link that leads out"},
		{"open with a linked WAL file", fmt.Sprintf("sqlite.open(%q)", in("side.db")), "side.db-wal"},
		{"open URI", fmt.Sprintf("sqlite.open(%q)", "file:"+out("new.db")), "URI file names need --unsafe-script"},
		{"open URI upper case", fmt.Sprintf("sqlite.open(%q)", "FILE:"+out("new.db")), "URI file names need --unsafe-script"},
		{"open URI with vfs", fmt.Sprintf("sqlite.open(%q)", "file:"+in("x.db")+"?vfs=unix-none"), "URI file names"},
		{"open with a query", fmt.Sprintf("sqlite.open(%q)", in("x.db")+"?vfs=unix-none"), "may not contain '?'"},
		{"attach absolute", open + fmt.Sprintf("db:exec(\"attach '%s' as x\")", out("new.db")), "ATTACH or VACUUM INTO"},
		{"attach existing", open + fmt.Sprintf("db:exec(\"attach '%s' as x\") print(db:query('select * from x.secret')[1].x)", out("secret.db")), "outside --data-dir"},
		{"attach dotdot", open + fmt.Sprintf("db:exec(\"attach '%s' as x\")", in("../outside/new.db")), "may not contain .."},
		{"attach link", open + fmt.Sprintf("db:exec(\"attach '%s' as x\")", in("link.db")), "symbolic link that leads out"},
		{"attach concatenated", open + fmt.Sprintf("db:exec(\"attach '%s' || 'new.db' as x\")", f.outside+"/"), "string literal"},
		{"attach parameter", open + fmt.Sprintf("db:exec('attach ? as x', {%q})", out("new.db")), "string literal"},
		{"attach subquery", open + fmt.Sprintf("db:exec(\"create table p (v)\") db:exec('insert into p values (?)', {%q}) db:exec('attach (select v from p) as x')", out("new.db")), "string literal"},
		{"attach empty name", open + "db:exec(\"attach '' as x\")", "string literal"},
		{"attach URI", open + fmt.Sprintf("db:exec(\"attach 'file:%s' as x\")", out("new.db")), "URI file names"},
		{"attach URI memdb", open + "db:exec(\"attach 'file:x?vfs=memdb' as x\")", "URI file names"},
		{"attach in a trigger", open + fmt.Sprintf("db:exec(\"create table t (x)\") db:exec(\"create trigger tr after insert on t begin attach '%s' as x; end\")", out("new.db")), "syntax error"},
		{"sqlite_attach", open + fmt.Sprintf("db:query(\"select sqlite_attach('%s', 'x', null)\")", out("new.db")), "no such function"},
		{"vacuum into", open + fmt.Sprintf("db:exec(\"vacuum into '%s'\")", out("new.db")), "ATTACH or VACUUM INTO"},
		{"vacuum into concatenated", open + fmt.Sprintf("db:exec(\"vacuum into '%s' || 'new.db'\")", f.outside+"/"), "outside --data-dir"},
		{"vacuum into parameter", open + fmt.Sprintf("db:exec('vacuum into ?', {%q})", out("new.db")), "outside --data-dir"},
		{"vacuum into link", open + fmt.Sprintf("db:exec(\"vacuum into '%s'\")", in("dangling.db")), "symbolic link that leads out"},
		{"vacuum not alone", open + fmt.Sprintf("db:exec(\"vacuum; attach '%s' || '' as x\")", out("new.db")), "VACUUM must be alone"},
		{"pragma temp_store_directory", open + fmt.Sprintf("db:exec(\"pragma temp_store_directory = '%s'\")", f.outside), "PRAGMA temp_store_directory: setting it needs --unsafe-script"},
		{"pragma hard_heap_limit", open + "db:exec('pragma hard_heap_limit = 1')", "PRAGMA hard_heap_limit"},
		{"pragma soft_heap_limit", open + "db:exec('pragma main.soft_heap_limit = 0')", "PRAGMA soft_heap_limit"},
		{"pragma mmap_size", open + "db:exec('PRAGMA MMAP_SIZE = 1000000000')", "PRAGMA MMAP_SIZE"},
		{"load_extension", open + fmt.Sprintf("db:query(\"select load_extension('%s')\")", out("lib.so")), "cannot be loaded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runInStartup(t, `local sqlite = require "sqlite"`, tc.code, Config{DataDir: f.data})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "the secret") {
				t.Errorf("read the file outside: %v", err)
			}
			if got := f.outsideFiles(t); strings.Join(got, " ") != "page.html secret.db" {
				t.Errorf("the outside directory holds %q, want only page.html and secret.db", got)
			}
		})
	}

	// What stays inside works.
	got := mustRunInStartupCfg(t, `local sqlite = require "sqlite"`, fmt.Sprintf(`
local db = sqlite.open(%[1]q)
db:exec("create table t (x)")
db:exec("insert into t values (1)")
db:exec("attach %[2]s as a")
db:exec("attach ':memory:' as m")
db:exec("create table a.t (y)")
db:exec("vacuum")
db:exec("VACUUM main;")
db:exec("vacuum into %[3]s")
print(#db:query("select * from t"), db:query("pragma hard_heap_limit")[1].hard_heap_limit > 0)
sqlite.open(%[6]q):exec("create table u (x)")
local l = sqlite.open(%[4]q)
l:exec("insert into u values (1)")
print(#sqlite.open(%[5]q):query("select * from t"), #sqlite.open(":memory:"):query("select 1"), #sqlite.open(""):query("select 1"))
`, in("ok.db"), "'"+in("sub/a.db")+"'", "'"+in("copy.db")+"'", in("inlink.db"), in("copy.db"), in("sub/target.db")), Config{DataDir: f.data})
	if got != "1\ttrue\n1\t1\t1\n" {
		t.Errorf("inside: printed %q", got)
	}
	for _, name := range []string{"sub/a.db", "copy.db", "sub/target.db"} {
		if _, err := os.Stat(in(name)); err != nil {
			t.Errorf("%s was not made: %v", name, err)
		}
	}

	// With --unsafe-script, as in Tiny SSE, any path.
	got = mustRunInStartupCfg(t, `local sqlite = require "sqlite"`, fmt.Sprintf(`
local db = sqlite.open(%q)
db:exec("attach '%s' as s")
print(db:query("select x from s.secret")[1].x)
db:exec("vacuum into '%s'")
`, in("main.db"), out("secret.db"), out("copy.db")), Config{DataDir: f.data, Unsafe: true})
	if got != "the secret\n" {
		t.Errorf("--unsafe-script: printed %q", got)
	}
	if _, err := os.Stat(out("copy.db")); err != nil {
		t.Errorf("--unsafe-script: VACUUM INTO outside made nothing: %v", err)
	}
}

// TestDataDirRelative: relative paths start at the working directory, as
// SQLite takes them, and --data-dir may be relative too; its default is
// the working directory.
func TestDataDirRelative(t *testing.T) {
	f := newDataDirFixture(t)
	t.Chdir(f.base)
	got := mustRunInStartupCfg(t, `local sqlite = require "sqlite"`, `
local db = sqlite.open("data/rel.db")
db:exec("attach 'data/sub/rel.db' as r")
print(pcall(sqlite.open, "rel.db"))
print(pcall(db.exec, db, "attach 'outside/x.db' as o"))
`, Config{DataDir: "data"})
	lines := strings.Split(got, "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], `"rel.db": outside --data-dir`) || !strings.Contains(lines[0], "--data-dir "+f.data+")") ||
		!strings.Contains(lines[1], `"outside/x.db": outside --data-dir`) {
		t.Errorf("printed %q", got)
	}
	t.Chdir(f.data)
	got = mustRunInStartupCfg(t, `local sqlite = require "sqlite"`, `
sqlite.open("default.db")
print(pcall(sqlite.open, "../outside/x.db"))`, Config{})
	if !strings.Contains(got, "may not contain ..") {
		t.Errorf("default --data-dir: printed %q", got)
	}
	if _, err := os.Stat(filepath.Join(f.data, "default.db")); err != nil {
		t.Errorf("default --data-dir: %v", err)
	}
	if _, err := Load(Config{Source: []byte(""), DataDir: "nope"}); err == nil || !strings.Contains(err.Error(), "--data-dir") {
		t.Errorf("a --data-dir that does not exist: %v", err)
	}
}

// TestDataDirConfinesTemplates: a template library's directory must be
// inside --data-dir (not outside, not through .., not a link that leads
// out), and a template in it that is a link leading out is not read;
// with --unsafe-script any directory is allowed, as in Tiny SSE.
func TestDataDirConfinesTemplates(t *testing.T) {
	f := newDataDirFixture(t)
	for _, tc := range []struct{ dir, want string }{
		{f.outside, "outside --data-dir"},
		{f.data + "/../outside", "may not contain .."},
		{filepath.Join(f.data, "linkdir"), "escapes"},
		{filepath.Join(f.data, "link.db"), "escapes"},
		{filepath.Join(f.data, "tpl", "in.html"), "not a directory"},
	} {
		_, err := runInStartup(t, `local template = require "template"`,
			fmt.Sprintf("template.library{directory = %q}", tc.dir), Config{DataDir: f.data})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("directory %s: %v, want an error saying %q", tc.dir, err, tc.want)
		}
	}
	got := mustRunInStartupCfg(t, `local template = require "template"`, fmt.Sprintf(`
local lib = template.library{directory = %q}
print(lib:render("in.html", {x = 1}))
print(pcall(lib.render, lib, "out.html", {x = 1}))
local all = template.library{directory = %q}
print(all:render("tplinside.html", {x = 2}))
`, filepath.Join(f.data, "tpl"), f.data), Config{DataDir: f.data})
	if lines := strings.Split(got, "\n"); len(lines) != 4 || lines[0] != "inside 1" || !strings.HasPrefix(lines[1], "false\t") ||
		strings.Contains(lines[1], "outside 1") || lines[2] != "inside 2" {
		t.Errorf("printed %q", got)
	}
	got = mustRunInStartupCfg(t, `local template = require "template"`, fmt.Sprintf(`
print(template.library{directory = %q}:render("page.html", {x = 3}))`, f.outside), Config{DataDir: f.data, Unsafe: true})
	if got != "outside 3\n" {
		t.Errorf("--unsafe-script: printed %q", got)
	}
}

// mustRunInStartupCfg is runInStartup with cfg that fails the test on an
// error.
func mustRunInStartupCfg(t *testing.T, prelude, code string, cfg Config) string {
	t.Helper()
	out, err := runInStartup(t, prelude, code, cfg)
	if err != nil {
		t.Fatalf("startup: %v", err)
	}
	return out
}
