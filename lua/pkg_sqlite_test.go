package lua

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	glua "github.com/yuin/gopher-lua"
)

// runInStartup runs code as the body of startup(cli) (after prelude, which
// runs at the script's top level) on a started runtime, and returns what
// it printed, or Start's error. cfg.Source, Script and Stdout are set here.
func runInStartup(t *testing.T, prelude, code string, cfg Config) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cfg.Source = []byte(prelude + "\nfunction startup(cli)\n" + code + "\nend\n")
	cfg.Script, cfg.Stdout = "test.lua", &out
	rt, err := Load(cfg)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	err = rt.Start()
	rt.Close()
	return out.String(), err
}

// mustRunInStartup is runInStartup that fails the test on an error.
func mustRunInStartup(t *testing.T, prelude, code string) string {
	t.Helper()
	out, err := runInStartup(t, prelude, code, Config{})
	if err != nil {
		t.Fatalf("startup: %v", err)
	}
	return out
}

func TestSQLiteExecAndQuery(t *testing.T) {
	out := mustRunInStartup(t, `local sqlite = require "sqlite"`, `
local db = sqlite.open(":memory:")
assert(db.null == sqlite.null and tostring(sqlite.null) == "sqlite.null")
db:exec [[create table t (id integer primary key, i integer, r real, s text, b blob, n text)]]
local changes, id = db:exec("insert into t (i, r, s, b, n) values (?, ?, ?, x'00ff', ?)", {42, 1.5, "x'y", sqlite.null})
print("insert", changes, id)
print("insert", db:exec("insert into t (i, r, s, n) values (?, ?, ?, ?)", {-7, 2, true, "not null"}))
local rows = db:query("select * from t where i = ?", {42})
assert(#rows == 1)
local r = rows[1]
print("row", r.id, r.i, r.r, r.s, #r.b, string.byte(r.b, 1, 2))
assert(r.n == sqlite.null and r.n == db.null, "NULL comes back as sqlite.null")
r = db:query("select * from t where id = ?", {2})[1]
print("row", r.i, r.r, r.s, r.n)
print("null bound", db:query("select ? is null as isnul, ? as v", {sqlite.null, 3})[1].isnul)
print("count", db:query("select count(*) as n from t")[1].n)
print("no params", #db:query("select 1 as one"))
print("updated", db:exec("update t set s = ? where i > ?", {"u", 0}))
db:close()
db:close()
`)
	want := `insert	1	1
insert	1	2
row	1	42	1.5	x'y	2	0	255
row	-7	2	1	not null
null bound	1
count	2
no params	1
updated	1	2
`
	if out != want {
		t.Errorf("printed\n%s\nwant\n%s", out, want)
	}
}

func TestSQLiteDateColumns(t *testing.T) {
	out := mustRunInStartup(t, `local sqlite = require "sqlite"`, `
local db = sqlite.open(":memory:")
db:exec("create table d (at datetime, t text)")
db:exec("insert into d values ('2024-01-02 03:04:05', '2024-01-02')")
local r = db:query("select at, t from d")[1]
print(r.at, r.t)
`)
	if out != "2024-01-02 03:04:05\t2024-01-02\n" {
		t.Errorf("printed %q", out)
	}
}

func TestSQLiteErrors(t *testing.T) {
	out := mustRunInStartup(t, `local sqlite = require "sqlite"`, `
local db = sqlite.open(":memory:")
local ok, err = pcall(db.query, db, "select * from nope")
print(ok, err)
ok, err = pcall(db.exec, db, "insert into")
print(ok, err)
ok, err = pcall(db.exec, db, "select ?", {{}})
print(ok, err)
ok, err = pcall(db.query, "select 1")
print(ok, err)
db:close()
ok, err = pcall(db.query, db, "select 1")
print(ok, err)
ok, err = pcall(sqlite.open, "/nonexistent/dir/x.db")
print(ok, err)
`)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	wants := []string{
		"no such table: nope",
		"incomplete input",
		"parameter 1 is a table",
		"sqlite db expected",
		"the db is closed",
		"outside --data-dir",
	}
	if len(lines) != len(wants) {
		t.Fatalf("printed %q", out)
	}
	for i, want := range wants {
		if !strings.HasPrefix(lines[i], "false\t") || !strings.Contains(lines[i], want) {
			t.Errorf("line %d: %q, want false and %q", i+1, lines[i], want)
		}
	}
}

func TestSQLiteMemoryDatabases(t *testing.T) {
	out := mustRunInStartup(t, `local sqlite = require "sqlite"`, `
local a = sqlite.open(":memory:")
a:exec("create table t (x)")
a:exec("insert into t values (1)")
-- the same handle is one database across calls
print(a:query("select count(*) as n from t")[1].n)
-- another handle is another database
local b = sqlite.open(":memory:")
print(pcall(b.query, b, "select * from t"))
`)
	if !strings.HasPrefix(out, "1\nfalse\t") || !strings.Contains(out, "no such table: t") {
		t.Errorf("printed %q", out)
	}
}

// lockedBuffer is a bytes.Buffer for print from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// callGlobal calls the global function name on VM i as a hook would:
// VM locked, on a pooled thread. It returns the result as a string.
func callGlobal(rt *Runtime, i int, name string, args ...glua.LValue) (string, error) {
	v := rt.vms[i]
	v.mu.Lock()
	defer v.unlock()
	th := v.thread()
	defer v.release(th)
	fn, ok := th.L.GetGlobal(name).(*glua.LFunction)
	if !ok {
		return "", fmt.Errorf("no function %s", name)
	}
	ret, err := v.call(th, name, fn, args...)
	return ret.String(), err
}

// startRuntime loads and starts src; Close runs at cleanup.
func startRuntime(t *testing.T, src string, cfg Config) *Runtime {
	t.Helper()
	cfg.Source, cfg.Script = []byte(src), "test.lua"
	rt, err := Load(cfg)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := rt.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(rt.Close)
	return rt
}

// TestSQLiteTwoVMs: two VMs write to one database file at once; every
// row arrives and no statement fails with "database is locked".
func TestSQLiteTwoVMs(t *testing.T) {
	const src = `local sqlite = require "sqlite"
local db
function startup(cli)
  db = sqlite.open(cli.script_data)
  db:exec("create table if not exists hits (vm integer, n integer)")
end
function work(n)
  for i = 1, n do
    db:exec("insert into hits (vm, n) values (?, ?)", {vm, i})
    assert(#db:query("select vm from hits where n = ? limit 1", {i}) == 1)
  end
  return "done"
end
function count()
  return db:query("select count(*) as n, count(distinct vm) as vms from hits")[1].n
end
function setvm(i) vm = i end`
	dir := t.TempDir()
	path := filepath.Join(dir, "hits.db")
	rt := startRuntime(t, src, Config{VMs: 2, Data: path, DataDir: dir, Timeout: -1, Stdout: &lockedBuffer{}})
	const n = 200
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		if _, err := callGlobal(rt, i, "setvm", glua.LNumber(i)); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = callGlobal(rt, i, "work", glua.LNumber(n))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("VM %d: %v", i, err)
		}
	}
	for i := range 2 {
		got, err := callGlobal(rt, i, "count")
		if err != nil || got != fmt.Sprint(2*n) {
			t.Errorf("VM %d counts %s rows (%v), want %d", i, got, err, 2*n)
		}
	}
}

// TestSQLiteWaitReleasesVM: a statement waiting for a lock leaves its VM
// free, so other calls on the same VM run meanwhile (here, the one that
// releases the lock).
func TestSQLiteWaitReleasesVM(t *testing.T) {
	const src = `local sqlite = require "sqlite"
local holder, waiter
function startup(cli)
  holder = sqlite.open(cli.script_data)
  holder:exec("create table t (x)")
  waiter = sqlite.open(cli.script_data)
end
function lock() holder:exec("begin immediate") end
function blocked()
  print("inserting")
  waiter:exec("insert into t values (1)")
  return "inserted"
end
function fast() return "fast" end
function unlock() holder:exec("commit") end`
	out := &lockedBuffer{}
	dir := t.TempDir()
	rt := startRuntime(t, src, Config{Data: filepath.Join(dir, "t.db"), DataDir: dir, Stdout: out})
	if _, err := callGlobal(rt, 0, "lock"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := callGlobal(rt, 0, "blocked")
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for out.String() != "inserting\n" {
		if time.Now().After(deadline) {
			t.Fatal("blocked() did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let it reach the lock
	if got, err := callGlobal(rt, 0, "fast"); got != "fast" || err != nil {
		t.Fatalf("fast() = %q, %v", got, err)
	}
	select {
	case err := <-done:
		t.Fatalf("insert finished while the table was locked: %v", err)
	default:
	}
	if _, err := callGlobal(rt, 0, "unlock"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("blocked(): %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("insert still waiting after commit")
	}
}

// TestSQLiteTimeout: the watchdog interrupts a query that runs past the
// script timeout.
func TestSQLiteTimeout(t *testing.T) {
	start := time.Now()
	_, err := runInStartup(t, `local sqlite = require "sqlite"`, `
local db = sqlite.open(":memory:")
db:query("with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c")
`, Config{Timeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Start: %v, want a timeout", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("stopped after %s", took)
	}
}

// TestSQLiteMemory: SQLite's memory, outside the Go heap, is bounded by
// --script-memory too: one string or blob (a zeroblob) over it is an
// error, an in-memory database cannot grow past it (SQLite's heap limit:
// "out of memory"), and a query whose rows add up to more stops the hook
// as for the heap. Before, each allocated what it was asked for.
func TestSQLiteMemory(t *testing.T) {
	const limit = 4 << 20
	out, err := runInStartup(t, `local sqlite = require "sqlite"`, `
local db = sqlite.open(":memory:")
print(pcall(db.query, db, "select zeroblob(8000000) as b"))
db:exec("create table t (b)")
local ok, err
for i = 1, 100 do
  ok, err = pcall(db.exec, db, "insert into t values (zeroblob(500000))")
  if not ok then break end
end
print(ok, err)
print(#db:query("select length(b) as n from t") < 10)
db:close()
db = sqlite.open(":memory:")
print(#db:query("select zeroblob(1000000) as b"))
`, Config{MaxMemory: limit})
	if err != nil {
		t.Fatalf("startup: %v", err)
	}
	lines := strings.Split(out, "\n")
	for i, want := range []string{"string or blob too big", "out of memory", "true", "1"} {
		if i >= len(lines) || !strings.Contains(lines[i], want) {
			t.Errorf("line %d of %q, want %q", i+1, out, want)
		}
	}
	_, err = runInStartup(t, `local sqlite = require "sqlite"`, `
local db = sqlite.open(":memory:")
db:query("with recursive c(x) as (select 1 union all select x + 1 from c limit 10) select zeroblob(1000000) from c")
`, Config{MaxMemory: limit})
	if !errors.Is(err, ErrMemory) || !strings.Contains(err.Error(), "--script-memory") {
		t.Errorf("rows over --script-memory: %v, want the memory limit", err)
	}
}
