package lua

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"time"

	glua "github.com/yuin/gopher-lua"
	"modernc.org/sqlite" // pure Go
	sqlite3 "modernc.org/sqlite/lib"
)

func init() {
	builtins["sqlite"] = openSQLite
	sqliteMemstatusErr = sqliteCountHeap()
}

// sqliteBusyTimeoutMS is how long a statement waits for a lock another
// connection holds (another VM's handle on the same file) before it fails
// with "database is locked".
const sqliteBusyTimeoutMS = 5000

// sqliteHandle is what a Lua db userdata holds. It is used only by the VM
// that opened it (its methods run with that VM locked); db is nil once
// closed. Its statements run on db's one connection, taken for each call
// (conn), which also serialises the calls of threads waiting in vm.wait.
type sqliteHandle struct {
	v      *vm
	db     *sql.DB
	policy *sqlitePolicy // the connection's authorizer; nil with --unsafe-script
	maxLen int           // SQLITE_LIMIT_LENGTH: the longest string or blob
}

// openSQLite: sqlite.open(path) -> db; sqlite.null. A db has exec, query,
// close and null (the same value as sqlite.null).
//
// Every handle is its own *sql.DB with one connection, so ":memory:" is one
// database for the handle's life, statements of one handle run in order and
// BEGIN/COMMIT through db:exec apply to the following statements. Files
// are opened in WAL mode with a busy timeout, so several VMs (or servers)
// can use one file at once. Without --unsafe-script every file (the
// database, ATTACH, VACUUM INTO) must be inside --data-dir (sqlitePolicy);
// with it, any path is allowed, as in Tiny SSE.
func openSQLite(v *vm, L *glua.LState) glua.LValue {
	null := L.NewUserData()
	null.Metatable = sealedMeta(L, "sqlite.null", nil)

	methods := L.CreateTable(0, 4)
	methods.RawSetString("null", null)
	// statement reads db:exec's and db:query's arguments (db, sql,
	// params) and runs do with them outside Lua (vm.wait) under the
	// hook's limits, raising its error.
	statement := func(L *glua.LState, do func(ctx context.Context, h *sqliteHandle, query string, args []any, max int) error) {
		h := checkSQLite(L, v)
		query := L.CheckString(2)
		args := sqliteArgs(L, 3, null)
		b := v.budget(L, "sqlite")
		ctx, cancel := sqliteContext(L, &b)
		defer cancel()
		var err error
		v.wait(func() { err = do(ctx, h, query, args, b.max) })
		b.fail("sqlite", err, errSQLiteMemory)
	}
	methods.RawSetString("exec", L.NewFunction(func(L *glua.LState) int {
		var res sql.Result
		statement(L, func(ctx context.Context, h *sqliteHandle, query string, args []any, _ int) (err error) {
			res, err = h.exec(ctx, query, args)
			return err
		})
		changes, _ := res.RowsAffected()
		lastID, _ := res.LastInsertId()
		L.Push(glua.LNumber(changes))
		L.Push(glua.LNumber(lastID))
		return 2
	}))
	methods.RawSetString("query", L.NewFunction(func(L *glua.LState) int {
		var cols []string
		var rows [][]any
		statement(L, func(ctx context.Context, h *sqliteHandle, query string, args []any, max int) (err error) {
			cols, rows, err = h.query(ctx, query, args, max)
			return err
		})
		list := L.CreateTable(len(rows), 0)
		for _, row := range rows {
			t := L.CreateTable(0, len(cols))
			for i, val := range row {
				t.RawSetString(cols[i], sqliteValue(val, null))
			}
			list.Append(t)
		}
		L.Push(list)
		return 1
	}))
	methods.RawSetString("close", L.NewFunction(func(L *glua.LState) int {
		ud := L.CheckUserData(1)
		h, ok := ud.Value.(*sqliteHandle)
		if !ok {
			L.ArgError(1, "sqlite db expected (call db:close(), not db.close())")
		}
		if h.db == nil {
			return 0
		}
		db := h.db
		h.db = nil
		var err error
		v.wait(func() { err = db.Close() })
		if err != nil {
			L.RaiseError("sqlite: %v", err)
		}
		return 0
	}))
	dbMeta := sealedMeta(L, "sqlite.db", methods)

	sqliteHeap.set(v, v.rt.cfg.MaxMemory)
	v.closers = append(v.closers, func() { sqliteHeap.remove(v) })

	mod := L.CreateTable(0, 2)
	mod.RawSetString("null", null)
	mod.RawSetString("open", L.NewFunction(func(L *glua.LState) int {
		path := L.CheckString(1)
		h := &sqliteHandle{v: v, maxLen: min(v.rt.callMax(), sqliteMaxLength)}
		if !v.rt.cfg.Unsafe {
			h.policy = &sqlitePolicy{rt: v.rt}
			if err := h.policy.openable(path); err != nil {
				L.RaiseError("sqlite: opening %v", err)
			}
		}
		var err error
		v.wait(func() { h.db, err = sqliteOpen(path, h.policy) })
		if err != nil {
			L.RaiseError("sqlite: opening %q: %v", path, err)
		}
		db := h.db
		// A handle the script drops without db:close() is closed when
		// the collector finds it unreachable (at the latest once its VM
		// is closed and gone).
		runtime.AddCleanup(h, func(db *sql.DB) { _ = db.Close() }, db)
		v.closers = append(v.closers, func() { _ = db.Close() }) // and with the runtime
		return pushUserData(L, h, dbMeta)
	}))
	return mod
}

// sqliteMaxLength is SQLite's own largest string or blob (SQLITE_MAX_LENGTH).
const sqliteMaxLength = 1_000_000_000

// sqliteOpen opens path with one connection and checks that it opens.
// Every connection the pool opens gets policy's authorizer (none if nil).
func sqliteOpen(path string, policy *sqlitePolicy) (*sql.DB, error) {
	if sqliteMemstatusErr != nil {
		return nil, sqliteMemstatusErr
	}
	if strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("a path may not contain '?'")
	}
	// "" is SQLite's private temporary database: nobody else opens it, so
	// it needs no busy timeout, and the driver reads a '?' at the start of
	// a name as part of the file's name (it made a file called
	// "?_pragma=busy_timeout(5000)" in the working directory).
	dsn := ""
	if path != "" {
		dsn = fmt.Sprintf("%s?_pragma=busy_timeout(%d)", path, sqliteBusyTimeoutMS)
	}
	if path != ":memory:" && path != "" {
		dsn += "&_pragma=journal_mode(WAL)"
	}
	d := &sqlite.Driver{}
	if policy != nil {
		d.RegisterConnectionHook(func(c sqlite.ExecQuerierContext, _ string) error {
			a, ok := c.(sqlite.AuthorizerRegisterer)
			if !ok {
				return errors.New("the driver cannot authorize statements")
			}
			return a.RegisterAuthorizer(policy.authorize)
		})
	}
	db := sql.OpenDB(sqliteConnector{d: d, dsn: dsn})
	// One connection: an in-memory database lives in its connection, so
	// a second one would be a second, empty database.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if err := db.Ping(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// sqliteConnector opens the connections of one handle with its own driver
// (and so its own connection hook).
type sqliteConnector struct {
	d   *sqlite.Driver
	dsn string
}

func (c sqliteConnector) Connect(context.Context) (driver.Conn, error) { return c.d.Open(c.dsn) }
func (c sqliteConnector) Driver() driver.Driver                        { return c.d }

// conn takes the handle's connection for one call of query: its length
// limit set, its policy told what runs. Close it after the call.
func (h *sqliteHandle) conn(ctx context.Context, query string) (*sql.Conn, error) {
	c, err := h.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := sqlite.Limit(c, sqlite3.SQLITE_LIMIT_LENGTH, h.maxLen); err != nil {
		_ = c.Close()
		return nil, err
	}
	if p := h.policy; p != nil {
		p.vacuum, p.why = sqliteLoneVacuum.MatchString(query), ""
	}
	return c, nil
}

// refused is err, or why the policy refused the statement (SQLite's own
// message only says "not authorized"). The call's connection must be held.
func (h *sqliteHandle) refused(err error) error {
	if err != nil && h.policy != nil && h.policy.why != "" {
		return errors.New(h.policy.why)
	}
	return err
}

func (h *sqliteHandle) exec(ctx context.Context, query string, args []any) (sql.Result, error) {
	c, err := h.conn(ctx, query)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	res, err := c.ExecContext(ctx, query, args...)
	return res, h.refused(err)
}

func (h *sqliteHandle) query(ctx context.Context, query string, args []any, max int) ([]string, [][]any, error) {
	c, err := h.conn(ctx, query)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	cols, rows, err := sqliteQuery(ctx, c, query, args, max)
	return cols, rows, h.refused(err)
}

// errSQLiteMemory: a query's rows add up to more than --script-memory.
var errSQLiteMemory = errors.New("rows larger than --script-memory")

// sqliteQuery runs query and reads every row, at most max bytes of
// values. Lua must not run meanwhile (it runs inside vm.wait), so values
// stay Go values here.
func sqliteQuery(ctx context.Context, c *sql.Conn, query string, args []any, max int) ([]string, [][]any, error) {
	rs, err := c.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, nil, err
	}
	defer rs.Close()
	cols, err := rs.Columns()
	if err != nil {
		return nil, nil, err
	}
	var rows [][]any
	size := 0
	for rs.Next() {
		row := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range row {
			ptrs[i] = &row[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			return nil, nil, err
		}
		for _, val := range row {
			size += 16
			switch x := val.(type) {
			case string:
				size += len(x)
			case []byte:
				size += len(x)
			}
		}
		if size > max {
			return nil, nil, errSQLiteMemory
		}
		rows = append(rows, row)
	}
	return cols, rows, rs.Err()
}

// checkSQLite returns the open handle db:method was called on.
func checkSQLite(L *glua.LState, v *vm) *sqliteHandle {
	ud, ok := L.Get(1).(*glua.LUserData)
	var h *sqliteHandle
	if ok {
		h, ok = ud.Value.(*sqliteHandle)
	}
	if !ok {
		L.ArgError(1, "sqlite db expected (call db:exec(...), not db.exec(...))")
	}
	if h.v != v {
		L.RaiseError("sqlite: a db can only be used by the VM that opened it")
	}
	if h.db == nil {
		L.RaiseError("sqlite: the db is closed")
	}
	return h
}

// sqliteArgs reads the optional list of parameters at n, bound in order to
// the statement's ? placeholders.
func sqliteArgs(L *glua.LState, n int, null glua.LValue) []any {
	switch p := L.Get(n).(type) {
	case *glua.LNilType:
		return nil
	case *glua.LTable:
		args := make([]any, p.Len())
		for i := range args {
			val := p.RawGetInt(i + 1)
			switch x := val.(type) {
			case glua.LString:
				args[i] = string(x)
			case glua.LNumber:
				f := float64(x)
				if f == math.Trunc(f) && math.Abs(f) < 1<<63 {
					args[i] = int64(f)
				} else {
					args[i] = f
				}
			case glua.LBool:
				args[i] = bool(x)
			case *glua.LNilType:
				args[i] = nil
			default:
				if val != null {
					L.ArgError(n, fmt.Sprintf("parameter %d is a %s: bind strings, numbers, booleans or sqlite.null", i+1, val.Type()))
				}
				args[i] = nil
			}
		}
		return args
	default:
		L.ArgError(n, "parameters must be a list")
		return nil
	}
}

// sqliteValue is the Lua value of a column value: integers and reals are
// numbers, TEXT and BLOB strings, NULL null. The driver hands columns
// declared DATE, DATETIME or TIMESTAMP over as times; they come back as
// SQLite's own text form.
func sqliteValue(val any, null glua.LValue) glua.LValue {
	switch x := val.(type) {
	case nil:
		return null
	case int64:
		return glua.LNumber(x)
	case float64:
		return glua.LNumber(x)
	case string:
		return glua.LString(x)
	case []byte:
		return glua.LString(x)
	case bool:
		return glua.LBool(x)
	case time.Time:
		layout := "2006-01-02 15:04:05"
		if x.Nanosecond() != 0 {
			layout += ".999999999"
		}
		if _, offset := x.Zone(); offset != 0 {
			layout += "-07:00"
		}
		return glua.LString(x.Format(layout))
	}
	return glua.LString(fmt.Sprint(val))
}

// sqliteContext is the calling thread's context, which the watchdog cancels
// when the hook overruns --script-timeout, ending at the hook's deadline
// as well (the watchdog may be late): a long statement is interrupted.
func sqliteContext(L *glua.LState, b *budget) (context.Context, context.CancelFunc) {
	ctx := L.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if b.deadline != 0 {
		return context.WithDeadline(ctx, time.Unix(0, b.deadline))
	}
	return context.WithCancel(ctx)
}
