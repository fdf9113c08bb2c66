package lua

import (
	"fmt"
	"regexp"
	"strings"
	"sync"

	"modernc.org/libc"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// What the sqlite package may do without --unsafe-script, and how much
// memory SQLite may take outside the Go heap.
//
// A database file, and every file a statement names, must be inside
// --data-dir. sqlite.open checks its path before opening (openable). SQL
// reaches files through ATTACH and VACUUM INTO (which attaches its
// target); SQLite presents each to the connection's authorizer with the
// file name when the statement is prepared, or for VACUUM INTO when it
// runs, after the name's expression was evaluated. ATTACH of a name
// computed at run time comes with no name: it is refused, as is a URI
// name ("file:...", which could choose another VFS). SQLite's plain VACUUM
// attaches "" the same way; it is let through only when a db:exec call is
// that one statement. PRAGMAs that set process-wide state (a directory for
// temporary files, the heap limits, memory mapping) are refused, and so is
// load_extension (which SQLite refuses as well: extension loading is off).
// ATTACH cannot appear in a trigger, and sqlite_attach is internal to
// SQLite (not callable from SQL); tests check both.

// sqlitePolicy is the authorizer of one handle's connection. Its fields
// belong to whoever holds that connection (sqliteHandle.conn): the calling
// goroutine, in which SQLite also calls authorize.
type sqlitePolicy struct {
	rt     *Runtime
	vacuum bool   // the statement is a lone VACUUM: its ATTACH of "" is allowed
	why    string // why the last statement was refused, for the Lua error
}

// sqliteLoneVacuum matches a db:exec that is one VACUUM of a schema.
var sqliteLoneVacuum = regexp.MustCompile("(?is)^\\s*vacuum(\\s+(\\w+|\"[^\"]*\"|\\[[^\\]]*\\]|`[^`]*`))?\\s*;?\\s*$")

// sqliteHostPragmas set state of the whole process.
var sqliteHostPragmas = map[string]bool{
	"temp_store_directory": true, "data_store_directory": true,
	"hard_heap_limit": true, "soft_heap_limit": true, "mmap_size": true,
}

// openable checks the path of sqlite.open.
func (p *sqlitePolicy) openable(path string) error {
	switch {
	case path == ":memory:" || path == "": // in memory; "" a private temporary file
		return nil
	case hasPrefixFold(path, "file:"):
		return fmt.Errorf("%q: URI file names need --unsafe-script", path)
	}
	_, err := p.rt.dataPath(path, false, sqliteSideFiles...)
	return err
}

func (p *sqlitePolicy) authorize(action sqlite.AuthorizerActionCode, arg1, arg2, _, _ string) sqlite.AuthorizerReturnCode {
	switch action {
	case sqlite.AuthAttach:
		switch {
		case arg1 == "" && p.vacuum, arg1 == ":memory:":
			return sqlite.AuthorizerOK
		case arg1 == "":
			p.why = "ATTACH needs its file name written as a string literal (':memory:' for one in memory), and VACUUM must be alone in its db:exec"
		case hasPrefixFold(arg1, "file:"):
			p.why = fmt.Sprintf("ATTACH or VACUUM INTO %q: URI file names need --unsafe-script", arg1)
		default:
			if _, err := p.rt.dataPath(arg1, false, sqliteSideFiles...); err != nil {
				p.why = "ATTACH or VACUUM INTO " + err.Error()
			} else {
				return sqlite.AuthorizerOK
			}
		}
		return sqlite.AuthorizerDeny
	case sqlite.AuthPragma:
		if arg2 != "" && sqliteHostPragmas[strings.ToLower(arg1)] {
			p.why = fmt.Sprintf("PRAGMA %s: setting it needs --unsafe-script", arg1)
			return sqlite.AuthorizerDeny
		}
	case sqlite.AuthFunction:
		if strings.EqualFold(arg2, "load_extension") {
			p.why = "load_extension: SQLite extensions cannot be loaded"
			return sqlite.AuthorizerDeny
		}
	}
	return sqlite.AuthorizerOK
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// SQLite allocates outside the Go heap, where the watchdog does not look:
// a zeroblob, a long string, an in-memory database, a page cache. Each
// string or blob is bounded per call (SQLITE_LIMIT_LENGTH, at
// --script-memory) and the rows a query returns are counted against
// --script-memory; SQLite's whole heap is bounded by its hard heap limit
// (an allocation past it fails: "out of memory"), which is process-wide:
// it is held at the largest --script-memory of the VMs that use sqlite
// (none if one of them has none), and the soft limit at half of it, so
// that page caches shrink first. SQLite enforces these limits only while
// it counts its heap (memstatus), which this build turns off by default
// and which can be turned on only before the first connection: init does.

// sqliteMemstatusErr is why SQLite could not count its heap; sqlite.open
// fails with it (its memory could not be bounded).
var sqliteMemstatusErr error

// sqliteCountHeap turns SQLite's heap counting on. Called once, by init.
func sqliteCountHeap() error {
	tls := libc.NewTLS()
	defer tls.Close()
	va := libc.NewVaList(int32(1))
	defer libc.Xfree(tls, va)
	if rc := sqlite3.Xsqlite3_config(tls, sqlite3.SQLITE_CONFIG_MEMSTATUS, va); rc != sqlite3.SQLITE_OK {
		return fmt.Errorf("sqlite: cannot bound SQLite's memory (sqlite3_config: %d)", rc)
	}
	return nil
}

// sqliteHeapLimits holds SQLite's heap limits for the VMs that opened
// the sqlite package. Taken under vm.mu (require, Runtime.Close): a leaf.
type sqliteHeapLimits struct {
	mu   sync.Mutex
	byVM map[*vm]int64 // guarded by mu: each VM's --script-memory (<= 0: none)
}

var sqliteHeap = sqliteHeapLimits{byVM: make(map[*vm]int64)}

func (s *sqliteHeapLimits) set(v *vm, limit int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byVM[v] = limit
	s.apply()
}

func (s *sqliteHeapLimits) remove(v *vm) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byVM, v)
	s.apply()
}

// apply sets SQLite's limits to the largest in byVM. mu must be held.
func (s *sqliteHeapLimits) apply() {
	var limit int64
	for _, l := range s.byVM {
		if l <= 0 {
			limit = 0
			break
		}
		limit = max(limit, l)
	}
	tls := libc.NewTLS()
	defer tls.Close()
	sqlite3.Xsqlite3_hard_heap_limit64(tls, limit)
	sqlite3.Xsqlite3_soft_heap_limit64(tls, limit/2)
}
