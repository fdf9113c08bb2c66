package lua_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/lua"
)

// TestSleepDoesNotBlock: a hook waiting in sleep releases its VM, so other
// hooks on the same (only) VM run meanwhile.
func TestSleepDoesNotBlock(t *testing.T) {
	const src = `local sleep = require "sleep"
function subscribe(sub)
  if sub.req.query == "slow" then
    print("sleeping")
    sleep(1000)
  end
  return sub
end
function publish(pub)
  pub.msg.data = "published"
  return pub
end`
	ts := startServer(t, src, lua.Config{}, engine.Config{})
	start := time.Now()
	slow := ts.send(t, "/sse?slow")
	eventually(t, "subscribe sleeping", func() bool { return countLines(ts.out, "sleeping") == 1 })

	pubStart := time.Now()
	ts.mustPublish(t, `{"data":"x"}`)
	if took := time.Since(pubStart); took >= 600*time.Millisecond {
		t.Errorf("publish took %s while a subscribe hook slept 1s: the sleep blocked it", took)
	}
	fast := ts.mustSubscribe(t, "/sse?fast")
	if took := time.Since(pubStart); took >= 600*time.Millisecond {
		t.Errorf("publish and another subscribe took %s while a subscribe hook slept 1s", took)
	}

	slow.head(t, "/sse?slow")
	if slow.status != http.StatusOK {
		t.Fatalf("slow subscriber: %d %s", slow.status, slow.body)
	}
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Errorf("slow subscribe answered after %s, before its sleep ended", took)
	}
	if f := slow.next(t); len(f) != 1 || f[0] != ": ok" {
		t.Fatalf("slow subscriber's first frame %q", f)
	}
	ts.mustPublish(t, `{"data":"y"}`)
	for name, s := range map[string]*stream{"slow": slow, "fast": fast} {
		if got := s.nextData(t); got != "published" {
			t.Errorf("%s subscriber got %q", name, got)
		}
	}
}
