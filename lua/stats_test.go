package lua_test

import (
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/lua"
)

func TestHookErrorsCounted(t *testing.T) {
	const src = `function message(pub, sub)
  if pub.msg.data == "bad" then error("bad message") end
  return pub
end
function timeout(sub) error("no retry for you") end
function unsubscribe(sub) error("cannot say goodbye") end
function tick(n) if n == 1 then error("first tick") end end`
	ts := startServer(t, src, lua.Config{Tick: 20 * time.Millisecond}, engine.Config{Timeout: 300 * time.Millisecond})
	s := ts.mustSubscribe(t, "/sse")
	ts.mustPublish(t, `{"data":"bad"}`)
	ts.mustPublish(t, `{"data":"bad"}`)
	ts.mustPublish(t, `{"data":"good"}`)
	if got := s.nextData(t); got != "good" {
		t.Fatalf("got %q, want only the good message", got)
	}
	s.waitClosed(t) // the timeout hook fails, then unsubscribe does
	eventually(t, "every error counted", func() bool {
		e := ts.rt.HookErrors()
		return e["message"] == 2 && e["timeout"] == 1 && e["unsubscribe"] == 1 && e["tick"] == 1
	})
	time.Sleep(50 * time.Millisecond) // later ticks succeed: the count stays
	if e := ts.rt.HookErrors(); e["tick"] != 1 || e["message"] != 2 {
		t.Errorf("errors %v", e)
	}
}
