package lua

import (
	"context"
	"log/slog"
	"strconv"
	"strings"

	glua "github.com/yuin/gopher-lua"
)

func init() { builtins["log"] = openLog }

// LevelTrace is the slog level of log.trace: below DEBUG, as in Tiny SSE's
// tracing levels.
const LevelTrace = slog.Level(-8)

// logLevels maps Tiny SSE's level names (the values of log.ERROR ...
// log.TRACE) to slog levels.
var logLevels = map[string]slog.Level{
	"ERROR": slog.LevelError,
	"WARN":  slog.LevelWarn,
	"INFO":  slog.LevelInfo,
	"DEBUG": slog.LevelDebug,
	"TRACE": LevelTrace,
}

// log, with Tiny SSE's names: log.log(level, msg) where level is one of
// log.ERROR, log.WARN, log.INFO, log.DEBUG, log.TRACE (the strings
// "ERROR" ... "TRACE"; lower case is accepted too); log.error, log.warn,
// log.info, log.debug, log.trace(msg); and the formatted variants
// log.logf(level, fmt, ...), log.errorf, log.warnf, log.infof, log.debugf,
// log.tracef(fmt, ...), formatted by the script's string.format. msg may be
// any value (it goes through tostring). Records go to Config.Logger with
// the attributes script (the script's path) and line (the calling line);
// a formatted message is not formatted when its level is disabled.
func openLog(v *vm, L *glua.LState) glua.LValue {
	logger := v.rt.cfg.Logger
	emit := func(L *glua.LState, level slog.Level, msg string) {
		attrs := []any{"script", v.rt.cfg.Script}
		if line := callerLine(L); line != 0 {
			attrs = append(attrs, "line", line)
		}
		logger.Log(context.Background(), level, msg, attrs...)
	}
	checkLevel := func(L *glua.LState, n int) slog.Level {
		name := L.CheckString(n)
		level, ok := logLevels[strings.ToUpper(name)]
		if !ok {
			L.ArgError(n, "log level must be one of log.ERROR, log.WARN, log.INFO, log.DEBUG, log.TRACE, not "+strconv.Quote(name))
		}
		return level
	}
	plain := func(L *glua.LState, level slog.Level, n int) int {
		if L.GetTop() < n {
			L.ArgError(n, "message expected")
		}
		if logger.Enabled(context.Background(), level) {
			emit(L, level, L.ToStringMeta(L.Get(n)).String())
		}
		return 0
	}
	formatted := func(L *glua.LState, level slog.Level, n int) int {
		L.CheckString(n)
		if !logger.Enabled(context.Background(), level) {
			return 0
		}
		format, ok := L.GetField(L.GetGlobal("string"), "format").(*glua.LFunction)
		if !ok {
			L.RaiseError("log: string.format is missing")
		}
		top := L.GetTop()
		L.Push(format)
		for i := n; i <= top; i++ {
			L.Push(L.Get(i))
		}
		L.Call(top-n+1, 1)
		msg := L.ToStringMeta(L.Get(-1)).String()
		L.Pop(1)
		emit(L, level, msg)
		return 0
	}

	t := L.CreateTable(0, 17)
	t.RawSetString("log", L.NewFunction(func(L *glua.LState) int { return plain(L, checkLevel(L, 1), 2) }))
	t.RawSetString("logf", L.NewFunction(func(L *glua.LState) int { return formatted(L, checkLevel(L, 1), 2) }))
	for name, level := range logLevels {
		t.RawSetString(name, glua.LString(name))
		lower := strings.ToLower(name)
		t.RawSetString(lower, L.NewFunction(func(L *glua.LState) int { return plain(L, level, 1) }))
		t.RawSetString(lower+"f", L.NewFunction(func(L *glua.LState) int { return formatted(L, level, 1) }))
	}
	return t
}

// callerLine is the line of the Lua code that called the current Go
// function, or 0.
func callerLine(L *glua.LState) int {
	where := strings.TrimSuffix(L.Where(1), ":") // "chunk:line:"
	i := strings.LastIndexByte(where, ':')
	if i < 0 {
		return 0
	}
	n, _ := strconv.Atoi(where[i+1:])
	return n
}
