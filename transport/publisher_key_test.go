package transport

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/tinysse/tinysse/engine"
)

// statusError is an error that says its own status, as cluster mode's do.
type statusError struct{ status int }

func (e statusError) Error() string   { return "backend says " + http.StatusText(e.status) }
func (e statusError) StatusCode() int { return e.status }

// With Config.Publish (cluster mode), the Idempotency-Key header reaches
// the backend, a bad one is refused before anything is published, and
// the backend's errors answer 503 or the status they carry.
func TestPublishSeamKeyAndStatus(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var keys []string
	var fail error
	backend := func(m *engine.Message, key string) (engine.PublishResult, error) {
		mu.Lock()
		defer mu.Unlock()
		keys = append(keys, key)
		return engine.PublishResult{Subscribers: 7}, fail
	}
	addr, _, srv := startServer(t, engine.Config{}, Config{Publish: backend})
	send := func(key string) answer {
		t.Helper()
		h := []string{"Content-Type", "application/json"}
		if key != "" {
			h = append(h, "Idempotency-Key", key)
		}
		return do(t, http.MethodPost, "http://"+addr+"/sse", `{"data":"x"}`, h...)
	}

	for _, key := range []string{"", "abc-123", `"quoted"`, strings.Repeat("k", 128)} {
		if a := send(key); a.Status != http.StatusAccepted || a.Body != `{"queued":0,"subscribers":7}` {
			t.Errorf("key %q: %d %s, want 202 with the backend's result", key, a.Status, a.Body)
		}
	}
	for _, key := range []string{"with space", "tab\tin", strings.Repeat("k", 129), "caf\xc3\xa9", `""`} {
		a := send(key)
		if a.Status != http.StatusBadRequest || !strings.Contains(a.Body, `"error":"Idempotency-Key`) {
			t.Errorf("key %q: %d %s, want 400 naming Idempotency-Key", key, a.Status, a.Body)
		}
	}
	mu.Lock()
	if want := []string{"", "abc-123", "quoted", strings.Repeat("k", 128)}; strings.Join(keys, ",") != strings.Join(want, ",") {
		t.Errorf("the backend got keys %q, want %q (refused ones never reach it)", keys, want)
	}
	mu.Unlock()

	for _, c := range []struct {
		err    error
		status int
	}{
		{errors.New("unreachable"), http.StatusServiceUnavailable},
		{statusError{http.StatusGatewayTimeout}, http.StatusGatewayTimeout},
		{statusError{http.StatusRequestEntityTooLarge}, http.StatusRequestEntityTooLarge},
		{statusError{http.StatusUnprocessableEntity}, http.StatusUnprocessableEntity},
	} {
		mu.Lock()
		fail = c.err
		mu.Unlock()
		a := send("k")
		if a.Status != c.status || a.Header.Get("Content-Type") != "application/json" || a.Body != `{"error":"`+c.err.Error()+`"}` {
			t.Errorf("backend error %v: %d %s, want %d with it as a JSON error", c.err, a.Status, a.Body, c.status)
		}
	}
	st := srv.Stats()
	if st.PublishRejected[RejectUnavailable] != 2 || st.PublishRejected[RejectTooLarge] != 1 || st.PublishRejected[RejectBadRequest] != 6 {
		t.Errorf("refusals counted %v, want 2 unavailable (503, 504), 1 too large, 6 bad requests (5 keys, 422)", st.PublishRejected)
	}
}

// Without Config.Publish the header is not read: a single node has no
// store that could keep a key.
func TestIdempotencyKeyIgnoredWithoutBackend(t *testing.T) {
	t.Parallel()
	addr, _, _ := startServer(t, engine.Config{}, Config{})
	a := do(t, http.MethodPost, "http://"+addr+"/sse", `{"data":"x"}`, "Content-Type", "application/json", "Idempotency-Key", "with space")
	if a.Status != http.StatusAccepted {
		t.Errorf("%d %s, want 202", a.Status, a.Body)
	}
}
