package lua_test

import (
	"io"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/lua"
)

// TestMemoryBounded: a hook that doubles a string until it is terabytes
// long (gopher-lua has no allocation limit) is stopped once the heap has
// grown by MaxMemory, answered as a failed hook, and the server goes on.
// Without the bound this test dies of out-of-memory in a few seconds.
func TestMemoryBounded(t *testing.T) {
	const src = `function publish(pub)
  if pub.msg.data == "grow" then
    local s = "x"
    for i = 1, 45 do s = s .. s end
    pub.msg.data = #s
  end
  return pub
end`
	ts := startServer(t, src, lua.Config{MaxMemory: 64 << 20, Timeout: 30e9}, engine.Config{})
	s := ts.mustSubscribe(t, "/sse")
	var peak uint64
	done := make(chan struct{})
	go func() { // samples the heap while the hook runs
		defer close(done)
		var ms runtime.MemStats
		for {
			select {
			case <-s.quit:
				return
			default:
			}
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			if peak > 4<<30 {
				return
			}
			// ReadMemStats stops the world: in a tight loop, under -race on a
			// loaded machine, it starved the hook past the client's timeout.
			time.Sleep(time.Millisecond)
		}
	}()
	// The hook is stopped by the memory bound, not a clock: under -race
	// on a loaded machine the doublings took 5.8s to reach it, past the
	// test client's usual 5s, so this one waits as long as the hook's
	// own timeout.
	slow := &http.Client{Timeout: 30 * time.Second}
	resp, err := slow.Post("http://"+ts.addr+"/sse", "application/json", strings.NewReader(`{"data":"grow"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	status, body := resp.StatusCode, string(b)
	if status != http.StatusInternalServerError {
		t.Fatalf("publish: %d %s, want 500", status, body)
	}
	if !strings.Contains(ts.log.String(), "too much memory") {
		t.Errorf("log %q does not say why the hook stopped", ts.log.String())
	}
	ts.mustPublish(t, `{"data":"after"}`)
	if got := s.nextData(t); got != "after" {
		t.Errorf("subscriber got %q", got)
	}
	s.close()
	<-done
	debug.FreeOSMemory()
	t.Logf("heap peak while the hook ran: %d MiB (allowance 64 MiB)", peak>>20)
	if peak > 1<<30 {
		t.Errorf("the heap reached %d MiB", peak>>20)
	}
}
