package transport

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
)

// Config.Publish takes accepted publishes instead of the engine (cluster
// mode); its errors become 400 (a bad message), 503 (shutting down, or the
// backend unreachable), and nothing reaches the engine.
func TestPublishSeam(t *testing.T) {
	forEachProto(t, func(t *testing.T, p proto) {
		var (
			mu   sync.Mutex // the seam runs on fasthttp's goroutines
			got  []*engine.Message
			fail error
		)
		publish := func(m *engine.Message, _ string) (engine.PublishResult, error) {
			mu.Lock()
			defer mu.Unlock()
			if fail != nil {
				return engine.PublishResult{}, fail
			}
			got = append(got, m)
			return engine.PublishResult{Subscribers: 7, Queued: 2}, nil
		}
		hooks := engine.Hooks{Publish: func(_ *engine.Request, m *engine.Message) (bool, error) {
			m.Event = "hooked" // the hook runs before the seam
			return true, nil
		}}
		addr, eng, _ := p.startServer(t, engine.Config{Hooks: hooks}, Config{Publish: publish})
		s := subscribed(t, eng, p.subscribe(t, addr, "/sse?topic=t"), "t", 1)

		if r := p.publishTo(t, addr, "/sse?topic=t", `{"data":"x"}`); r.Subscribers != 7 || r.Queued != 2 {
			t.Errorf("202 answered %+v, want the seam's result", r)
		}
		mu.Lock()
		if len(got) != 1 || got[0].Data != "x" || got[0].Event != "hooked" || got[0].Topics[0] != "t" {
			t.Fatalf("seam got %+v", got)
		}
		mu.Unlock()
		for _, c := range []struct {
			err    error
			status int
		}{
			{fmt.Errorf("%w: too odd", engine.ErrInvalid), http.StatusBadRequest},
			{engine.ErrClosed, http.StatusServiceUnavailable},
			{errors.New("cluster: NATS JetStream unavailable: no servers"), http.StatusServiceUnavailable},
		} {
			mu.Lock()
			fail = c.err
			mu.Unlock()
			wantError(t, p.post(t, addr, "/sse?topic=t", "application/json", `{"data":"y"}`), c.status)
		}
		// The engine itself never saw a message: the subscriber has nothing.
		s.quiet(100 * time.Millisecond)
	})
}
