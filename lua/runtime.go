package lua

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	glua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
)

// ErrTimeout is wrapped by the error of a hook stopped by the script timeout.
var ErrTimeout = errors.New("lua: hook timed out")

// hookNames are the global functions the server calls when defined.
var hookNames = []string{"startup", "tick", "publish", "subscribe", "catchup", "message", "unsubscribe", "timeout"}

// Config configures a Runtime. The zero value of every field is its
// documented default.
type Config struct {
	// Script is the script's path; it names the chunk in error messages.
	Script string
	// Source is the script's text; nil reads Script.
	Source []byte
	// Data is handed to startup as cli.script_data.
	Data string
	// Tick is the interval of the tick hook. Default 500ms.
	Tick time.Duration
	// Unsafe opens os, io and Lua's module loading, and lets sqlite and
	// template reach any file.
	Unsafe bool
	// DataDir is the only directory whose files sqlite (sqlite.open,
	// ATTACH, VACUUM INTO) and template (a library's directory) may reach
	// without Unsafe (datadir.go). Default: the working directory.
	DataDir string
	// VMs is the number of Lua states. Default 1.
	VMs int
	// Timeout stops a hook that runs longer. Default 5s; negative: none.
	Timeout time.Duration
	// MaxMemory stops a running hook once the Go heap has grown by this
	// many bytes since it began (memory.go). Default 256 MiB; negative:
	// none.
	MaxMemory int64
	// CLI is the options table given to startup (cli.vm and cli.vms are
	// added per VM).
	CLI map[string]any
	// Stdout receives print. Default os.Stdout.
	Stdout io.Writer
	// Logger receives hook errors and the log package. Default slog.Default().
	Logger *slog.Logger
	// Leader reports whether this node leads its cluster (the `cluster`
	// package's leader()). Nil: a single node, always the leader.
	Leader func() bool
	// Unbatched runs message as one call per delivery (a VM lock and a new
	// pub table each time) instead of one batch per shard pass. It exists
	// as the naive baseline of the benchmarks; do not use it otherwise.
	Unbatched bool
}

// Runtime is a compiled script and its VMs.
type Runtime struct {
	cfg   Config
	proto *glua.FunctionProto
	vms   []*vm // immutable after Start
	defs  map[string]bool

	clock    atomic.Int64 // watchdog ticks since Start, from 1
	watchMu  sync.Mutex
	watching map[*thread]struct{} // guarded by watchMu
	stop     chan struct{}
	done     sync.WaitGroup // the tick loop
	// The watchdog stops only after the tick loop has ended, so that a
	// tick looping when Close is called is still cut off at the timeout.
	watchStop chan struct{}
	watchDone sync.WaitGroup
	anyVM     atomic.Uint32 // round robin for publish
	// A publish that finds every VM busy waits on vmFree (under freeMu)
	// for whichever frees first; vmWaiters counts such publishes so that
	// an unlock with none waiting costs one atomic load.
	freeMu    sync.Mutex
	vmFree    *sync.Cond
	vmWaiters atomic.Int32
	errLog    atomic.Int64    // unix seconds of the last logged message-hook error
	errs      errorCounts     // see HookErrors
	chunkCtx  context.Context // set by Check only: bounds the main chunk
	// dataDir is Config.DataDir absolute, dataDirReal the same with its
	// links resolved; both "" with Unsafe. Immutable after Load.
	dataDir, dataDirReal string

	sharedOnce sync.Once
	dict       *sharedDict
}

// shared returns the dictionary every VM's `shared` package uses.
func (rt *Runtime) shared() *sharedDict {
	rt.sharedOnce.Do(func() { rt.dict = &sharedDict{m: make(map[string]sharedEntry)} })
	return rt.dict
}

// Load compiles the script. A syntax error names the file and line.
func Load(cfg Config) (*Runtime, error) {
	if cfg.Tick <= 0 {
		cfg.Tick = 500 * time.Millisecond
	}
	if cfg.VMs <= 0 {
		cfg.VMs = 1
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxMemory == 0 {
		cfg.MaxMemory = 256 << 20
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	src := cfg.Source
	if src == nil {
		b, err := os.ReadFile(cfg.Script)
		if err != nil {
			return nil, fmt.Errorf("lua: %w", err)
		}
		src = b
	}
	if cfg.Script == "" {
		cfg.Script = "script"
	}
	chunk, err := parse.Parse(bytes.NewReader(src), cfg.Script)
	if err != nil {
		return nil, fmt.Errorf("lua: syntax error: %s", syntaxError(err, cfg.Script, src))
	}
	proto, err := glua.Compile(chunk, cfg.Script)
	if err != nil {
		return nil, fmt.Errorf("lua: %s", compileError(err, cfg.Script))
	}
	rt := &Runtime{cfg: cfg, proto: proto, watching: make(map[*thread]struct{}), stop: make(chan struct{}), watchStop: make(chan struct{})}
	if !cfg.Unsafe {
		if rt.dataDir, rt.dataDirReal, err = dataDirectory(cfg); err != nil {
			return nil, err
		}
	}
	rt.vmFree = sync.NewCond(&rt.freeMu)
	return rt, nil
}

// Start builds every VM from the compiled script, runs startup(cli) on each
// (an error there is returned: the server must not start), and starts the
// tick loop and the watchdog. Call it before accepting clients.
func (rt *Runtime) Start() error {
	rt.clock.Store(1)
	if rt.cfg.Timeout > 0 || rt.cfg.MaxMemory > 0 {
		rt.watchDone.Add(1)
		go rt.watchdog()
	}
	for i := 0; i < rt.cfg.VMs; i++ {
		v, err := rt.newVM(i)
		if err != nil {
			rt.Close()
			return err
		}
		rt.vms = append(rt.vms, v)
	}
	rt.defs = make(map[string]bool)
	for name := range rt.vms[0].hooks {
		rt.defs[name] = true
	}
	for _, v := range rt.vms {
		if err := v.startup(); err != nil {
			rt.Close()
			return err
		}
	}
	if rt.defs["tick"] {
		rt.done.Add(1)
		go rt.tickLoop()
	}
	return nil
}

// Defined lists the hooks the script defines, sorted.
func (rt *Runtime) Defined() []string {
	var names []string
	for n := range rt.defs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Close stops the tick loop and the watchdog and closes the VMs. Hooks
// must no longer be called.
func (rt *Runtime) Close() {
	select {
	case <-rt.stop:
		return
	default:
		close(rt.stop)
	}
	rt.done.Wait()
	close(rt.watchStop)
	rt.watchDone.Wait()
	for _, v := range rt.vms {
		v.mu.Lock()
		for _, c := range v.closers {
			c()
		}
		v.main.Close()
		v.unlock()
	}
}

// startup runs startup(cli) on v.
func (v *vm) startup() error {
	fn := v.hooks["startup"]
	if fn == nil {
		return nil
	}
	v.mu.Lock()
	defer v.unlock()
	t := v.thread()
	defer v.release(t)
	cli := fromGo(t.L, v.rt.cfg.CLI, 0)
	if tbl, ok := cli.(*glua.LTable); ok {
		tbl.RawSetString("vm", glua.LNumber(v.idx))
		tbl.RawSetString("vms", glua.LNumber(len(v.rt.vms)))
		tbl.RawSetString("script_data", glua.LString(v.rt.cfg.Data))
	} else {
		cli = t.L.NewTable()
	}
	if _, err := v.call(t, "startup", fn, cli); err != nil {
		return fmt.Errorf("lua: startup on VM %d: %w", v.idx, err)
	}
	return nil
}

// tickLoop calls tick(count) on VM 0 every Tick; a slow tick delays the
// next rather than piling calls up.
func (rt *Runtime) tickLoop() {
	defer rt.done.Done()
	t := time.NewTicker(rt.cfg.Tick)
	defer t.Stop()
	v := rt.vms[0]
	for count := 1; ; count++ {
		select {
		case <-rt.stop:
			return
		case <-t.C:
		}
		v.mu.Lock()
		th := v.thread()
		if fn := v.hooks["tick"]; fn != nil {
			if _, err := v.call(th, "tick", fn, glua.LNumber(count)); err != nil {
				rt.errs.tick.Add(1)
				rt.cfg.Logger.Warn("lua hook failed", "hook", "tick", "err", err)
			}
		}
		v.release(th)
		v.unlock()
	}
}

// watchdog advances the clock and stops calls that overrun the timeout by
// cancelling their thread's context (gopher-lua checks it between
// instructions).
func (rt *Runtime) watchdog() {
	defer rt.watchDone.Done()
	// The clock counts units of real time. With a memory bound the unit is
	// short, to catch a doubling string in time, but the watchdog only
	// wakes that often while a hook runs: idle, it sleeps idlePeriod and
	// adds the units that passed.
	unit := min(max(rt.cfg.Timeout/10, 10*time.Millisecond), 250*time.Millisecond)
	idle := unit
	if rt.cfg.MaxMemory > 0 {
		unit, idle = memoryPeriod, idlePeriod
	}
	limit := int64(math.MaxInt64)
	if rt.cfg.Timeout > 0 {
		limit = int64(rt.cfg.Timeout / unit)
	}
	var heap heapReader
	last := time.Now()
	t := time.NewTimer(unit)
	defer t.Stop()
	for {
		select {
		case <-rt.watchStop:
			return
		case <-t.C:
		}
		units := max(int64(time.Since(last)/unit), 1)
		last = last.Add(time.Duration(units) * unit)
		now := rt.clock.Add(units)
		busy := false
		rt.watchMu.Lock()
		for th := range rt.watching {
			s := th.started.Load()
			busy = busy || s != 0
			if s != 0 && now-s > limit {
				th.timedOut.Store(true)
				th.cancel()
			}
		}
		if rt.cfg.MaxMemory > 0 && busy {
			rt.checkMemory(&heap)
		}
		rt.watchMu.Unlock()
		if busy {
			t.Reset(unit)
		} else {
			t.Reset(idle)
		}
	}
}

func (rt *Runtime) watch(t *thread) {
	rt.watchMu.Lock()
	rt.watching[t] = struct{}{}
	rt.watchMu.Unlock()
}

func (rt *Runtime) unwatch(t *thread) {
	rt.watchMu.Lock()
	delete(rt.watching, t)
	rt.watchMu.Unlock()
}

// syntaxError is gopher-lua's parse error, with a position also when
// the script ends too early: gopher-lua says "FILE at EOF:" with no line,
// so the end of the last line that is not blank is named, in the form
// of its other errors ("FILE line:L(column:C) near EOF: ...").
//
// An unterminated string is reported by gopher-lua once it has read the
// line break that ends it, so at column 0 of the next line: the line the
// string is on is named instead, at its end.
func syntaxError(err error, file string, src []byte) string {
	var pe *parse.Error
	if errors.As(err, &pe) && pe.Message == "unterminated string" && pe.Pos.Column == 0 && pe.Pos.Line > 1 {
		lines := bytes.SplitAfter(src, []byte("\n"))
		if l := pe.Pos.Line - 1; l <= len(lines) {
			col := len(bytes.TrimRight(lines[l-1], "\r\n"))
			return fmt.Sprintf("%s line:%d(column:%d) near '%s': %s", file, l, col, pe.Token, pe.Message)
		}
	}
	msg := strings.TrimSpace(err.Error())
	rest, ok := strings.CutPrefix(msg, file+" at EOF:")
	if !ok {
		return msg
	}
	last := bytes.TrimRight(src, " \t\r\n")
	line := 1 + bytes.Count(last, []byte("\n"))
	col := 1 + len(last) - (bytes.LastIndexByte(last, '\n') + 1)
	why := "the script ends inside a statement or block (is an end missing?)"
	if r := strings.TrimSpace(rest); r != "syntax error" {
		why = r + ": " + why
	}
	return fmt.Sprintf("%s line:%d(column:%d) near EOF: %s", file, line, col, why)
}

// gotoLine finds the goto a compile error is about ("<goto x> at line 3
// jumps into the scope of local 'y'", "no visible label 'x' for <goto>
// at line 3"): gopher-lua's own line for these is the end of the block.
var gotoLine = regexp.MustCompile(`<goto[^>]*> at line (\d+)`)

// compileError is gopher-lua's compile error (a goto without its label,
// break outside a loop, ... outside a vararg function) in the
// "FILE:LINE: message" form of the other errors of a script, instead of
// its "compile error near line(L) FILE: message".
func compileError(err error, file string) string {
	var ce *glua.CompileError
	if !errors.As(err, &ce) {
		return file + ": " + err.Error()
	}
	line := strconv.Itoa(ce.Line)
	if m := gotoLine.FindStringSubmatch(ce.Message); m != nil {
		line = m[1]
	}
	return fmt.Sprintf("%s:%s: %s", file, line, ce.Message)
}

// hookError is the error of a call of hook ("" for the main chunk): the
// hook's name, the script's message (which carries file and line) and,
// when the message lacks it, where the error was raised. gopher-lua
// names every Lua frame of its traceback "in main chunk", hooks
// included, so only the frame's position is kept.
func hookError(hook string, err error) error {
	var ae *glua.ApiError
	if !errors.As(err, &ae) {
		return err
	}
	msg := ae.Object.String()
	if at := framePosition(firstFrame(ae.StackTrace)); at != "" && !strings.Contains(msg, at) {
		msg += " (at " + at + ")"
	}
	if hook != "" {
		msg = hook + " hook: " + msg
	}
	return errors.New(msg)
}

// framePosition is the "file:line" of a traceback line such as
// "test.lua:3: in main chunk"; "" when it has none.
func framePosition(frame string) string {
	pos, _, ok := strings.Cut(frame, ": in ")
	if !ok || !strings.Contains(pos, ":") {
		return ""
	}
	return pos
}

func firstFrame(trace string) string {
	for _, line := range strings.Split(trace, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && line != "stack traceback:" && !strings.HasPrefix(line, "[G]") {
			return line
		}
	}
	return ""
}
