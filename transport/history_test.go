package transport

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tinysse/tinysse/engine"
)

// TestPublishLargerThanHistory: a message that alone holds more than the
// engine's history budget (--max-history-bytes) is refused with 413 and a
// JSON error, counted as too_large; nothing is published, no topic is
// created, and the server goes on.
func TestPublishLargerThanHistory(t *testing.T) {
	t.Parallel()
	addr, eng, srv := startServer(t, engine.Config{MaxHistoryBytes: 32 << 10}, Config{})
	a := post(t, addr, "/sse?topic=big", "application/json", `{"data":"`+strings.Repeat("b", 30<<10)+`"}`)
	wantError(t, a, http.StatusRequestEntityTooLarge)
	if !strings.Contains(a.Body, "--max-history-bytes") {
		t.Errorf("413 body %q does not name the limit", a.Body)
	}
	if st := eng.Stats(); st.Publishes != 0 || eng.Topics() != 0 {
		t.Errorf("after the refusal: %d publishes, %d topics", st.Publishes, eng.Topics())
	}
	if n := srv.Stats().PublishRejected[RejectTooLarge]; n != 1 {
		t.Errorf("too_large refusals %d, want 1", n)
	}
	publishTo(t, addr, "/sse?topic=big", `{"data":"small"}`)
}
