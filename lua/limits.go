package lua

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/tinysse/tinysse/engine"
	glua "github.com/yuin/gopher-lua"
)

// A hook's limits (--script-timeout, --script-memory) are enforced in two
// places. Between Lua instructions, gopher-lua checks the thread's
// context, which the watchdog cancels (runtime.go, memory.go). Inside one
// call of a built-in, gopher-lua checks nothing: every built-in that can
// run long or build much (string patterns, format, table.concat and sort,
// json, template, sleep, http) takes a budget when it starts, calls step
// in its loops and fits before it grows its output. A call past the
// timeout ends at its next poll, within microseconds; a call whose output
// would pass --script-memory is refused before it allocates, and the hook
// is stopped as if the watchdog had seen the heap grow.

// pollEvery is how much work (pattern steps, values, iterations) a
// built-in does between two looks at its hook's context: about 10 µs.
const pollEvery = 1024

// budget is what one call of a built-in may spend. It lives on the
// caller's stack for the length of the call.
type budget struct {
	L    *glua.LState
	th   *thread         // the hook's thread; nil in the main chunk
	done <-chan struct{} // the context's Done; nil: never
	// deadline is when the hook reaches --script-timeout (zero: none). A
	// poll past it stops the hook itself, without waiting for the
	// watchdog goroutine to be scheduled: on a loaded machine that can
	// take a while, and the hook's own goroutine is the one running.
	deadline int64  // unix nanoseconds
	max      int    // bytes one call may build
	left     int    // work before the next poll
	what     string // the built-in, for error messages
	yielded  int64  // unix nanoseconds of the last yield (0: none yet)
}

// yieldEvery is how long a built-in runs before it lets other goroutines
// have its processor (runtime.Gosched): without it, Go takes the
// processor from a goroutine that never blocks only after 10 ms, and on a
// two-core machine a hostile hook's built-in made every request that
// needed that processor wait that long (the good publisher's p99 in
// TestHostileHookDoesNotStallOthers).
const yieldEvery = int64(time.Millisecond)

// budget starts the budget of one call of the built-in what, made on L
// (a hook's thread or a coroutine it resumed). v.mu must be held.
func (v *vm) budget(L *glua.LState, what string) budget {
	b := budget{L: L, th: v.running, max: v.rt.callMax(), left: pollEvery, what: what}
	if ctx := L.Context(); ctx != nil {
		b.done = ctx.Done()
	}
	if b.th != nil {
		b.deadline = b.th.deadline
	}
	return b
}

// callMax is the most one built-in call may build: --script-memory, or
// without it the largest int.
func (rt *Runtime) callMax() int {
	if rt.cfg.MaxMemory > 0 && rt.cfg.MaxMemory < math.MaxInt {
		return int(rt.cfg.MaxMemory)
	}
	return math.MaxInt
}

// step counts n units of work and looks at the context every pollEvery.
func (b *budget) step(n int) {
	b.left -= n
	if b.left < 0 {
		b.left = pollEvery
		b.poll()
	}
}

// poll raises an error in the calling hook if it has been stopped, or
// stops it if it has passed its deadline.
func (b *budget) poll() {
	if b.stopped() {
		b.L.RaiseError("%s: stopped (%s)", b.what, errStopped)
	}
}

// stopped reports whether the hook is stopped, stopping it first if it
// has passed its deadline. Template rendering uses it to return an error
// rather than raise one.
func (b *budget) stopped() bool {
	select {
	case <-b.done:
		return true
	default:
	}
	now := time.Now().UnixNano()
	if b.deadline != 0 && now > b.deadline {
		b.th.timedOut.Store(true)
		b.th.cancel()
		return true
	}
	if b.yielded == 0 {
		b.yielded = now
	} else if now-b.yielded > yieldEvery {
		runtime.Gosched()
		b.yielded = time.Now().UnixNano()
	}
	return false
}

// fail raises err, from the built-in pkg, in the calling hook: the hook's
// limit error when it was stopped meanwhile (or reached its deadline,
// which interrupted the call) or when err is overMem (the call would build
// more than --script-memory), else "pkg: err". A nil err raises nothing.
func (b *budget) fail(pkg string, err, overMem error) {
	if err == nil {
		return
	}
	b.poll()
	if errors.Is(err, overMem) {
		b.overMemory()
	}
	b.L.RaiseError("%s: %v", pkg, err)
}

// fit refuses an output of n bytes over the call's allowance: the hook is
// stopped as if the watchdog had seen its heap grow that much.
func (b *budget) fit(n int) {
	if n < 0 || n > b.max {
		b.overMemory()
	}
}

func (b *budget) overMemory() {
	if b.th != nil {
		b.th.overMem.Store(true)
		b.th.timedOut.Store(true)
		b.th.cancel()
	}
	b.L.RaiseError("%s: result larger than --script-memory (%d bytes)", b.what, b.max)
}

// errStopped is the text of the Lua error a built-in raises when the
// watchdog has stopped its hook; call replaces it with the reason.
const errStopped = "hook stopped by the watchdog"

// LimitError is the error of a hook stopped at --script-timeout or
// --script-memory. It wraps ErrTimeout or ErrMemory, and engine.ErrHookLimit
// so that the transport can name the limit to the client.
type LimitError struct {
	Hook  string // publish, subscribe, ...
	Limit string // "longer than --script-timeout 5s", "the heap grew by more than --script-memory 256 MiB"
	Where string // the script's file:line where it was stopped, "" if unknown
	err   error  // ErrTimeout or ErrMemory
}

func (e *LimitError) Error() string {
	s := e.Public()
	if e.Where != "" {
		s += " (at " + e.Where + ")"
	}
	return s
}

// Public is the error without the script's position, for the client:
// "publish hook timed out: longer than --script-timeout 5s".
func (e *LimitError) Public() string {
	what := "timed out"
	if e.err == ErrMemory {
		what = "used too much memory"
	}
	return fmt.Sprintf("%s hook %s: %s", e.Hook, what, e.Limit)
}

func (e *LimitError) Unwrap() []error { return []error{e.err, engine.ErrHookLimit} }

// limitError builds the error of t's call of hook, stopped by the
// watchdog or a built-in; raised is what gopher-lua returned.
func (v *vm) limitError(t *thread, hook string, raised error) error {
	e := &LimitError{Hook: hook, Where: where(raised), err: ErrTimeout,
		Limit: fmt.Sprintf("longer than --script-timeout %s", v.rt.cfg.Timeout)}
	if t.overMem.Load() {
		e.err = ErrMemory
		e.Limit = fmt.Sprintf("the heap grew by more than --script-memory %s", sizeText(v.rt.cfg.MaxMemory))
	}
	return e
}

// sizeText writes n bytes as MiB when whole, else as bytes.
func sizeText(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// positionRE finds "chunk:line:" at the start of a Lua error message or
// a stack trace line.
var positionRE = regexp.MustCompile(`^([^\s:][^:]*:\d+):`)

// where is the script position of a Lua error: the first "file:line" of
// its message or of its stack trace.
func where(err error) string {
	var ae *glua.ApiError
	if !errors.As(err, &ae) {
		return ""
	}
	if m := positionRE.FindStringSubmatch(ae.Object.String()); m != nil {
		return m[1]
	}
	for _, line := range strings.Split(ae.StackTrace, "\n") {
		if m := positionRE.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			return m[1]
		}
	}
	return ""
}

// outChunk is the size of outBuffer's pieces.
const outChunk = 1 << 20

// outBuffer builds a built-in's result in pieces of outChunk bytes,
// checked against the budget and polled as it grows: a growing
// strings.Builder copies its whole content at each growth, copies that
// cannot be interrupted and that took seconds at a few hundred MiB on a
// loaded machine. String copies the pieces once into the result.
type outBuffer struct {
	b      *budget
	chunks [][]byte
	n      int
}

func (o *outBuffer) add(s string) {
	if s == "" {
		return
	}
	o.b.fit(o.n + len(s))
	o.n += len(s)
	o.b.step(1 + len(s)>>10)
	for len(s) > 0 {
		if k := len(o.chunks); k == 0 || len(o.chunks[k-1]) == cap(o.chunks[k-1]) {
			o.chunks = append(o.chunks, make([]byte, 0, min(outChunk, max(len(s), o.n, 256))))
		}
		last := &o.chunks[len(o.chunks)-1]
		n := min(len(s), cap(*last)-len(*last))
		*last = append(*last, s[:n]...)
		s = s[n:]
	}
}

func (o *outBuffer) String() string {
	if len(o.chunks) == 1 {
		return string(o.chunks[0])
	}
	var b strings.Builder
	b.Grow(o.n)
	for _, c := range o.chunks {
		b.Write(c)
	}
	return b.String()
}
