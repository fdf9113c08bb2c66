package lua_test

import (
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/lua"
)

// TestOneGlobalState: with one VM (the default) a table filled in
// subscribe is seen by catchup, message, tick and unsubscribe, across shards.
func TestOneGlobalState(t *testing.T) {
	ts := startServer(t, readFile(t, "state.lua"), lua.Config{Tick: 20 * time.Millisecond}, engine.Config{Shards: 2})
	a := ts.mustSubscribe(t, "/sse?a")
	if got := a.nextData(t); got != "catchup 1" {
		t.Errorf("catchup of a: %q", got)
	}
	b := ts.mustSubscribe(t, "/sse?b")
	if got := b.nextData(t); got != "catchup 2" {
		t.Errorf("catchup of b: %q", got)
	}
	ts.mustPublish(t, `{"data":"x"}`)
	for name, s := range map[string]*stream{"a": a, "b": b} {
		if got := s.nextData(t); got != "message 2" {
			t.Errorf("message to %s: %q", name, got)
		}
	}
	eventually(t, "tick sees both", func() bool { return countLines(ts.out, "tick\t2") > 0 })
	a.close()
	eventually(t, "unsubscribe sees b left", func() bool { return countLines(ts.out, "unsubscribe\ta\t1") == 1 })
	eventually(t, "tick sees one", func() bool { return countLines(ts.out, "tick\t1") > 0 })
	ts.mustPublish(t, `{"data":"y"}`)
	if got := b.nextData(t); got != "message 1" {
		t.Errorf("message to b after a left: %q", got)
	}
}
