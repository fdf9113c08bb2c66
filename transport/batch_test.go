package transport

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinysse/tinysse/auth"
	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/testjwt"
)

// postBatch posts body with content type ctype and decodes a 202.
func postBatch(t *testing.T, addr, target, ctype, body string, headers ...string) (answer, publishReply) {
	t.Helper()
	a := do(t, http.MethodPost, "http://"+addr+target, body, append([]string{"Content-Type", ctype}, headers...)...)
	var r publishReply
	if a.Status == http.StatusAccepted {
		dec := json.NewDecoder(strings.NewReader(a.Body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("202 body %q: %v", a.Body, err)
		}
	}
	return a, r
}

// TestBatchPublish: a JSON array and NDJSON each publish all their
// messages in order with one 202; ?topic= applies to every message.
func TestBatchPublish(t *testing.T) {
	t.Parallel()
	addr, eng, _ := startServer(t, engine.Config{AutoID: true}, Config{})
	s := subscribe(t, addr, "/sse?topic=a")
	s.expectOK()
	other := subscribed(t, eng, subscribe(t, addr, "/sse?topic=b"), "a", 1)
	waitSubscribers(t, eng, "b", 1)

	a, r := postBatch(t, addr, "/sse", "application/json",
		` [{"data":"1","topic":"a"}, {"id":"x","event":"e","data":"2","topic":["a","b"]},{"data":"3","topic":"a"}] `)
	if a.Status != http.StatusAccepted {
		t.Fatalf("array: %d %s", a.Status, a.Body)
	}
	if r.Subscribers != 2 {
		t.Errorf("subscribers %d, want 2 (topics a and b, each once)", r.Subscribers)
	}
	s.expectLines("id: 1", "data: 1")
	s.expectLines("id: x", "event: e", "data: 2")
	s.expectLines("id: 3", "data: 3")
	other.expectLines("id: x", "event: e", "data: 2")

	a, _ = postBatch(t, addr, "/sse?topic=a", "application/x-ndjson; charset=utf-8",
		"{\"data\":\"4\"}\n\n  \n{\"data\":\"5\",\"comment\":[\"c\"]}\r\n{\"data\":\"6\"}")
	if a.Status != http.StatusAccepted {
		t.Fatalf("ndjson: %d %s", a.Status, a.Body)
	}
	s.expectLines("id: 4", "data: 4")
	s.expectLines("id: 5", "data: 5", ": c")
	s.expectLines("id: 6", "data: 6")
	if got := eng.Stats().Publishes; got != 6 {
		t.Errorf("Publishes %d, want 6", got)
	}
	// A single message is still a single publish.
	publishTo(t, addr, "/sse?topic=a", `{"data":"7"}`)
	s.expectLines("id: 7", "data: 7")
}

// TestBatchRefused: any refused message refuses the whole batch, with
// its index, and nothing of it is published; the server goes on serving.
func TestBatchRefused(t *testing.T) {
	t.Parallel()
	addr, eng, _ := startServer(t, engine.Config{MaxHistoryBytes: 4 << 10}, Config{MaxBatch: 3, MaxBodySize: 8 << 10})
	s := subscribed(t, eng, subscribe(t, addr, "/sse"), "", 1)
	big := strings.Repeat("z", 5000)
	cases := []struct {
		name, ctype, body string
		status            int
		want              string
	}{
		{"bad field", "application/json", `[{"data":"1"},{"data":"2"},{"data":3}]`, 400, `message 2: field \"data\" must be a string`},
		{"not an object", "application/json", `[{"data":"1"},7]`, 400, "message 1: "},
		{"duplicate key", "application/json", `[{"data":"1","data":"2"}]`, 400, `message 0: key \"data\" given twice`},
		{"bad id", "application/json", `[{"data":"1"},{"id":"a\u0000b","data":"2"}]`, 400, "message 1: "},
		{"bad topic", "application/json", `[{"data":"1"},{"data":"2","topic":"a\u0001"}]`, 400, "message 1: topic contains a control character"},
		{"syntax", "application/json", `[{"data":"1"},`, 400, "malformed JSON"},
		{"empty array", "application/json", `[]`, 400, "empty batch"},
		{"empty ndjson", "application/x-ndjson", "\n \n", 400, "empty batch"},
		{"ndjson bad line", "application/x-ndjson", "{\"data\":\"1\"}\n\n[1]\n", 400, "message 1 (line 3)"},
		// Found after decoding, an NDJSON message is still named by its line
		// too; invalid UTF-8 is named by its message.
		{"ndjson bad id names its line", "application/x-ndjson", "{\"data\":\"1\"}\n\n{\"id\":\"a\\u0000b\",\"data\":\"2\"}\n", 400, "message 1 (line 3): "},
		{"ndjson over the history budget names its line", "application/x-ndjson", "{\"data\":\"1\"}\r\n{\"data\":\"" + strings.Repeat("h", 4500) + "\"}", 413, "message 1 (line 2): message is larger"},
		{"invalid UTF-8 names its message", "application/json", "[{\"data\":\"1\"},{\"data\":\"\xff\"}]", 400, "message 1: not valid UTF-8"},
		{"ndjson invalid UTF-8 names its line", "application/x-ndjson", "{\"data\":\"1\"}\n\n{\"data\":\"\xff\"}", 400, "message 1 (line 3): "},
		{"invalid UTF-8 outside the messages", "application/json", "[{\"data\":\"1\"}\xff]", 400, "not valid UTF-8"},
		{"too many", "application/json", `[{"data":"1"},{"data":"2"},{"data":"3"},{"data":"4"}]`, 413, "--max-batch"},
		{"too many ndjson", "application/x-ndjson", "{\"data\":\"1\"}\n{\"data\":\"2\"}\n{\"data\":\"3\"}\n{\"data\":\"4\"}\n", 413, "--max-batch"},
		{"body too large", "application/json", `[{"data":"` + big + `"},{"data":"` + big + `"}]`, 413, "larger than"},
		{"over the history budget", "application/json", `[{"data":"1"},{"data":"` + strings.Repeat("h", 4500) + `"}]`, 413, "message 1: message is larger than the server keeps"},
	}
	for i, c := range cases {
		a, _ := postBatch(t, addr, "/sse", c.ctype, c.body)
		wantError(t, a, c.status)
		if !strings.Contains(a.Body, c.want) {
			t.Errorf("%s: body %s, want it to say %q", c.name, a.Body, c.want)
		}
		checkNothingPublished(t, addr, s, i)
	}
}

// hookLimit is a hook stopped by a script limit, as the Lua runtime
// reports one (lua.LimitError): Public is what the client may read.
type hookLimit struct{}

func (hookLimit) Error() string {
	return "publish hook timed out at hooks.lua:3: longer than --script-timeout 1s"
}
func (hookLimit) Public() string { return "publish hook timed out: longer than --script-timeout 1s" }
func (hookLimit) Unwrap() error  { return engine.ErrHookLimit }

// TestBatchHooksAndAuth: the publish hook sees every message of a batch
// (and may refuse one: nothing is published); the token must allow every
// message's topics.
func TestBatchHooksAndAuth(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	hooks := engine.Hooks{Publish: func(_ *engine.Request, m *engine.Message) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, m.Data)
		if m.Data == "refuse" {
			return false, nil
		}
		if m.Data == "fail" {
			return false, errors.New("hook error")
		}
		if m.Data == "slow" {
			return false, hookLimit{}
		}
		m.Data += "!"
		return true, nil
	}}
	a := newAuth(t, auth.Config{Keys: []auth.Key{secretKey(t, testSecret)}})
	addr, eng, _ := startServer(t, engine.Config{Hooks: hooks}, Config{Auth: a})
	tok := bearerHeader(testjwt.HS256(t, testSecret, testjwt.Claims(time.Hour, testjwt.Topics([]string{"news/*"}, []string{"news/*"}))))
	s := subscribed(t, eng, subscribe(t, addr, "/sse?topic=news/a", tok...), "news/a", 1)

	ans, _ := postBatch(t, addr, "/sse?topic=news/a", "application/json", `[{"data":"1"},{"data":"2"}]`, tok...)
	if ans.Status != http.StatusAccepted {
		t.Fatalf("%d %s", ans.Status, ans.Body)
	}
	s.expectLines("data: 1!")
	s.expectLines("data: 2!")

	marker := func(i int) {
		t.Helper()
		ans, _ := postBatch(t, addr, "/sse?topic=news/a", "application/json", fmt.Sprintf(`[{"data":"m%d"}]`, i), tok...)
		if ans.Status != http.StatusAccepted {
			t.Fatalf("marker: %d %s", ans.Status, ans.Body)
		}
		s.expectLines(fmt.Sprintf("data: m%d!", i))
	}
	const ndjson = "application/x-ndjson"
	for i, c := range []struct {
		body   string
		status int
		want   string
		ctype  string // "" is application/json
	}{
		{`[{"data":"a"},{"data":"refuse"},{"data":"c"}]`, 403, "message 1: message rejected by script", ""},
		{`[{"data":"a"},{"data":"b"},{"data":"fail"}]`, 500, "message 2: publish hook failed", ""},
		// A hook cut by a script limit names the limit, as for a single publish.
		{`[{"data":"slow"}]`, 500, `"message 0: publish hook timed out: longer than --script-timeout 1s"`, ""},
		{`[{"data":"a"},{"data":"b","topic":"sport/x"}]`, 403, "message 1: ", ""},
		// NDJSON refusals name the line as well.
		{"{\"data\":\"a\"}\n\n{\"data\":\"refuse\"}\n", 403, "message 1 (line 3): message rejected by script", ndjson},
		{"{\"data\":\"a\"}\n{\"data\":\"b\",\"topic\":\"sport/x\"}", 403, "message 1 (line 2): ", ndjson},
	} {
		ctype := c.ctype
		if ctype == "" {
			ctype = "application/json"
		}
		ans, _ := postBatch(t, addr, "/sse?topic=news/a", ctype, c.body, tok...)
		wantError(t, ans, c.status)
		if !strings.Contains(ans.Body, c.want) {
			t.Errorf("body %s, want %q", ans.Body, c.want)
		}
		marker(i)
	}
	// Without a token: 401 before anything is read.
	ans, _ = postBatch(t, addr, "/sse?topic=news/a", "application/json", `[{"data":"x"}]`)
	wantError(t, ans, http.StatusUnauthorized)
	marker(9)

	mu.Lock()
	defer mu.Unlock()
	// The hook saw each message of the accepted batches and of those its
	// own refusal or error stopped (up to the refused one); the batch the
	// token refused never reached it.
	want := "1 2 a refuse m0 a b fail m1 slow m2 m3 a refuse m4 m5 m9"
	if got := strings.Join(seen, " "); got != want {
		t.Errorf("hook saw %q, want %q", got, want)
	}
}

// TestBatchClusterModeWithoutBatch: with Config.Publish and no
// PublishBatch, a batch is refused (501), never published one by one.
func TestBatchClusterModeWithoutBatch(t *testing.T) {
	t.Parallel()
	var calls int
	var mu sync.Mutex
	addr, _, _ := startServer(t, engine.Config{}, Config{Publish: func(m *engine.Message, _ string) (engine.PublishResult, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		return engine.PublishResult{}, nil
	}})
	ans, _ := postBatch(t, addr, "/sse", "application/json", `[{"data":"1"},{"data":"2"}]`)
	wantError(t, ans, http.StatusNotImplemented)
	mu.Lock()
	defer mu.Unlock()
	if calls != 0 {
		t.Errorf("Publish called %d times for a refused batch", calls)
	}
}
