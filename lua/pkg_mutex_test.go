package lua_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/lua"
)

func TestMutex(t *testing.T) {
	mustEval(t, `
local mutex = require "mutex"
local lock = mutex()
eq(type(lock), "userdata", "mutex() gives a lock")

-- every value fn returns, nils included, and the arguments after fn
eq(select("#", lock(function() return 1, nil, nil end)), 3, "count of values")
local a, b, c = lock(function(x, y) return y, x, "z" end, "x", "y")
eq(a .. b .. c, "yxz", "arguments and values")
eq(select("#", lock(function() end)), 0, "no values")

-- an error inside releases the lock and comes out as it was raised
local ok, err = pcall(lock, function() error("boom") end)
eq(ok, false, "error raised")
eq(err:match("boom$"), "boom", "message kept: " .. tostring(err))
local ok2, obj = pcall(lock, function() error({code = 7}) end)
eq(type(obj), "table", "an error value that is a table")
eq(obj.code, 7, "error table kept")
eq(lock(function() return "again" end), "again", "the lock is free after an error")

-- a recursive lock is an error, not a hang, and the lock is then free
local ok3, err3 = pcall(lock, function() return lock(function() end) end)
eq(ok3, false, "recursive lock")
eq(err3:find("already holds the lock", 1, true) ~= nil, true, "message: " .. tostring(err3))
eq(lock(function() return 1 end), 1, "free after the recursive attempt")

-- locks are independent
local other = mutex()
eq(lock(function() return other(function() return "nested" end) end), "nested", "two locks nest")

eq(pcall(lock, "not a function"), false, "lock needs a function")
`)
}

// TestMutexExcludesWaitingHooks: hooks that wait (sleep) inside the lock
// run one at a time, while hooks outside it go on.
func TestMutexExcludesWaitingHooks(t *testing.T) {
	const src = `local mutex = require "mutex"
local sleep = require "sleep"
local lock = mutex()
local count, inside = 0, 0
function subscribe(sub)
  local n = lock(function()
    inside = inside + 1
    if inside > 1 then print("overlap") end
    print("inside")
    local c = count
    sleep(300)
    count = c + 1
    inside = inside - 1
    return count
  end)
  print("count", n)
  return sub
end
function publish(pub)
  return pub
end`
	ts := startServer(t, src, lua.Config{}, engine.Config{})
	const n = 3
	var streams []*stream
	for range n {
		streams = append(streams, ts.send(t, "/sse"))
	}
	eventually(t, "a subscribe inside the lock", func() bool { return countLines(ts.out, "inside") >= 1 })
	start := time.Now()
	ts.mustPublish(t, `{"data":"x"}`)
	if took := time.Since(start); took > 450*time.Millisecond {
		t.Errorf("publish took %s while subscribers waited for the lock", took)
	}
	for _, s := range streams {
		s.head(t, "/sse")
		if s.status != http.StatusOK {
			t.Fatalf("subscribe: %d %s", s.status, s.body)
		}
	}
	if took := time.Since(start); took < (n-1)*300*time.Millisecond {
		t.Errorf("%d locked sections of 300ms done in %s: they overlapped", n, took)
	}
	if countLines(ts.out, "overlap") != 0 {
		t.Errorf("two hooks were inside the lock at once:\n%s", ts.out)
	}
	if countLines(ts.out, "count\t3") != 1 {
		t.Errorf("lost updates: printed\n%s", ts.out)
	}
}

// TestMutexWaitStopsAtTimeout: a hook holding a lock past the script
// timeout (asleep in it) is stopped at the timeout, which releases the
// lock: a hook waiting for it waits no longer than that, then runs.
func TestMutexWaitStopsAtTimeout(t *testing.T) {
	const src = `local mutex = require "mutex"
local sleep = require "sleep"
local lock = mutex()
function subscribe(sub)
  lock(function()
    print("locked " .. sub.req.query)
    if sub.req.query == "holder" then sleep(5000) end
  end)
  return sub
end`
	const timeout = 600 * time.Millisecond
	ts := startServer(t, src, lua.Config{Timeout: timeout}, engine.Config{})
	holder := ts.send(t, "/sse?holder")
	eventually(t, "holder inside the lock", func() bool { return countLines(ts.out, "locked holder") == 1 })
	// The waiter's own timeout runs while it waits: sent right after the
	// holder took the lock, it timed out too whenever the holder's stop
	// came a little late (-race on a loaded machine). Sent halfway through
	// the holder's time, it has half a timeout to spare.
	time.Sleep(timeout / 2)
	start := time.Now()
	waiter := ts.open(t, "/sse?waiter")
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the waiting hook answered after %s, want once the holder is stopped at the %v timeout", took, timeout)
	}
	if waiter.status != http.StatusOK {
		t.Errorf("waiter: %d %s, want 200 once the holder was stopped", waiter.status, waiter.body)
	}
	holder.head(t, "/sse?holder")
	if holder.status != http.StatusInternalServerError {
		t.Errorf("holder: %d %s, want 500 (stopped asleep in the lock)", holder.status, holder.body)
	}
	if countLines(ts.out, "locked waiter") != 1 {
		t.Errorf("the waiter did not run its locked section once")
	}
}
