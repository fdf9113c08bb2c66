package lua_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/tinysse/tinysse/lua"
)

// logRecords runs body with a JSON logger at level and returns its records.
func logRecords(t *testing.T, level slog.Level, body string) []map[string]any {
	t.Helper()
	buf := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: level}))
	if _, err := evalLuaWith(t, lua.Config{Logger: logger}, body); err != nil {
		t.Fatal(err)
	}
	var recs []map[string]any
	for _, line := range buf.Lines() {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	return recs
}

func TestLog(t *testing.T) {
	recs := logRecords(t, lua.LevelTrace, `
local log = require "log"
eq(log.ERROR .. log.WARN .. log.INFO .. log.DEBUG .. log.TRACE, "ERRORWARNINFODEBUGTRACE", "level names")
log.error("e")
log.warn("w")
log.info("i")
log.debug("d")
log.trace("t")
log.log(log.INFO, "via log")
log.log("warn", "lower-case level")
log.errorf("%s=%d", "n", 42)
log.warnf("%q", "quoted")
log.infof("%5.2f|%-3s|", 3.14159, "x")
log.debugf("no args")
log.tracef("%d%%", 100)
log.logf(log.DEBUG, "logf %s", "ok")
log.info({})
log.info(12)`)
	want := []struct {
		level, msg string
	}{
		{"ERROR", "e"}, {"WARN", "w"}, {"INFO", "i"}, {"DEBUG", "d"}, {"DEBUG-4", "t"},
		{"INFO", "via log"}, {"WARN", "lower-case level"},
		{"ERROR", "n=42"}, {"WARN", `"quoted"`}, {"INFO", " 3.14|x  |"}, {"DEBUG", "no args"},
		{"DEBUG-4", "100%"}, {"DEBUG", "logf ok"}, {"INFO", "table: "}, {"INFO", "12"},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d: %v", len(recs), len(want), recs)
	}
	for i, w := range want {
		r := recs[i]
		msg, _ := r["msg"].(string)
		if r["level"] != w.level || !strings.HasPrefix(msg, w.msg) || (w.msg != "table: " && msg != w.msg) {
			t.Errorf("record %d: level %v msg %q, want %s %q", i, r["level"], msg, w.level, w.msg)
		}
		if r["script"] != "test.lua" {
			t.Errorf("record %d: script %v", i, r["script"])
		}
	}
	// The prelude takes 7 lines, "function startup" 1, then the body's
	// blank line, require and the level names: log.error is on line 11.
	if line, _ := recs[0]["line"].(float64); line != 11 {
		t.Errorf("log.error's line attribute %v, want 11", recs[0]["line"])
	}
}

func TestLogLevelFilter(t *testing.T) {
	recs := logRecords(t, slog.LevelInfo, `
local log = require "log"
log.debug("dropped")
log.trace("dropped")
log.debugf("%d", "not a number: not formatted when the level is off")
log.info("kept")`)
	if len(recs) != 1 || recs[0]["msg"] != "kept" {
		t.Errorf("records %v, want only \"kept\"", recs)
	}
}

func TestLogErrors(t *testing.T) {
	out := mustEval(t, `
local log = require "log"
print(select(2, pcall(log.log, "LOUD", "x")))
print(select(2, pcall(log.infof, {})))
print(select(2, pcall(log.info)))
print(select(2, pcall(log.infof)))`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{"log level must be one of", "string expected, got table", "message expected", "bad argument #1"}
	if len(lines) != len(want) {
		t.Fatalf("printed %q", out)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("error %q, want it to contain %q", lines[i], w)
		}
	}
}
