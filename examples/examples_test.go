package examples_test

// End-to-end tests of the example scripts: the real tinysse binary, built
// once, runs each script as a child process on 127.0.0.1, driven by real
// HTTP clients (net/http for publishing, raw sockets for event streams).

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tinysse/tinysse/internal/testserver"
)

// bin is the tinysse binary built by TestMain.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tinysse-examples-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// TINYSSE_EXAMPLES_RACE: the server itself under the race detector.
	if bin, err = testserver.Build(dir, os.Getenv("TINYSSE_EXAMPLES_RACE") != ""); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// waitStep bounds every single wait of the tests.
const waitStep = 5 * time.Second

// server is one tinysse child process.
type server struct {
	*testserver.Process
	addr           string
	stdout, stderr *testserver.Buffer
}

// start runs `tinysse --listen ADDR --script examples/SCRIPT args...` from
// the repository root and waits until it listens. It is stopped with
// SIGTERM (then SIGKILL after 10 s) when the test ends.
func start(t *testing.T, script string, args ...string) *server {
	t.Helper()
	for attempt := 1; ; attempt++ {
		s, err := tryStart(t, script, args)
		if err == nil {
			return s
		}
		if attempt == 5 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("starting tinysse --script examples/%s: %v", script, err)
		}
		t.Logf("retrying on another port: %v", err)
	}
}

func tryStart(t *testing.T, script string, args []string) (*server, error) {
	s := &server{addr: testserver.FreeAddr(t), stdout: &testserver.Buffer{}, stderr: &testserver.Buffer{}}
	cmd := exec.Command(bin, append([]string{"--listen", s.addr, "--script", "examples/" + script}, args...)...)
	cmd.Dir = ".."
	cmd.Stdout, cmd.Stderr = s.stdout, s.stderr
	p, err := testserver.Run(t, cmd, s.addr)
	if err != nil {
		return nil, fmt.Errorf("%v; stderr:\n%s", err, s.stderr)
	}
	s.Process = p
	t.Cleanup(func() { s.stop(t) })
	return s, nil
}

// stop sends SIGTERM to the child and waits for it to exit (kills it after
// 10 s); a server that does not exit cleanly fails the test.
func (s *server) stop(t *testing.T) {
	s.Stop(t)
	if t.Failed() {
		t.Logf("tinysse stderr:\n%s", s.stderr)
		t.Logf("tinysse stdout:\n%s", s.stdout)
	}
}

// warnings returns the WARN and ERROR lines the server logged.
func (s *server) warnings() []string {
	var out []string
	for _, l := range strings.Split(s.stderr.String(), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			out = append(out, l)
		}
	}
	return out
}

// pairs turns "Name: value" header lines into name, value pairs.
func pairs(header []string) []string {
	var h []string
	for _, l := range header {
		name, value, _ := strings.Cut(l, ": ")
		h = append(h, name, value)
	}
	return h
}

// publish POSTs a JSON message to target (the pub path and query) with
// extra headers ("Name: value"); it returns the status and body.
func (s *server) publish(t *testing.T, target string, msg map[string]any, header ...string) (int, string) {
	t.Helper()
	body, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	a := testserver.Post(t, s.addr, target, "application/json", string(body), pairs(header)...)
	return a.Status, a.Body
}

// mustPublish publishes data to target and wants 202.
func (s *server) mustPublish(t *testing.T, target, data string, header ...string) {
	t.Helper()
	if code, body := s.publish(t, target, map[string]any{"data": data}, header...); code != http.StatusAccepted {
		t.Fatalf("POST %s: %d %s, want 202", target, code, body)
	}
}

// event is one SSE frame, as the Standard's parser read it.
type event struct {
	id, event, data string
	hasID, hasData  bool
	comments        []string
}

// stream is an SSE subscriber on a raw connection.
type stream struct {
	*testserver.Stream
	name string
}

// answer is a refused subscription: status, content type and body.
type answer struct {
	status      int
	contentType string
	body        string
}

// open sends GET target with extra headers ("Name: value" lines) and reads
// the response head. A 200 gives a stream whose ": ok" has been read;
// anything else gives the answer.
func (s *server) open(t *testing.T, target string, header ...string) (*stream, *answer) {
	t.Helper()
	st := testserver.Subscribe(t, s.addr, target, append([]string{"Accept", "text/event-stream"}, pairs(header)...)...)
	if st.Status != http.StatusOK {
		st.Close()
		return nil, &answer{st.Status, st.Header.Get("Content-Type"), st.Body}
	}
	if ct := st.Header.Get("Content-Type"); ct != "text/event-stream" {
		st.Close()
		t.Fatalf("GET %s: content type %q, want text/event-stream", target, ct)
	}
	st.ExpectOK()
	return &stream{st, target}, nil
}

// subscribe opens target and wants a stream.
func (s *server) subscribe(t *testing.T, target string, header ...string) *stream {
	t.Helper()
	st, a := s.open(t, target, header...)
	if a != nil {
		t.Fatalf("GET %s: %d %s, want a stream", target, a.status, a.body)
	}
	return st
}

// refused opens target and wants 403 with a JSON error.
func (s *server) refused(t *testing.T, target string, header ...string) {
	t.Helper()
	st, a := s.open(t, target, header...)
	if st != nil {
		t.Fatalf("GET %s: got a stream, want 403", target)
	}
	var e struct{ Error string }
	if a.status != http.StatusForbidden || !strings.HasPrefix(a.contentType, "application/json") ||
		json.Unmarshal([]byte(a.body), &e) != nil || e.Error == "" {
		t.Fatalf("GET %s: %d %q %s, want 403 with a JSON error", target, a.status, a.contentType, a.body)
	}
}

func (st *stream) close() { st.Close() }

// next reads one frame (up to a blank line) within waitStep.
func (st *stream) next(t *testing.T) event {
	t.Helper()
	b := st.On(t).MustNext()
	e := event{comments: b.Comments}
	for _, l := range b.Lines {
		e.hasID = e.hasID || l == "id" || strings.HasPrefix(l, "id:")
		if v, ok := strings.CutPrefix(l, "event:"); ok {
			e.event = strings.TrimPrefix(v, " ")
		}
	}
	if b.Event != nil {
		e.id, e.data, e.hasData = b.Event.LastEventID, b.Event.Data, true
	}
	return e
}

// nextEvent skips frames that are only comments (keep-alives) and returns
// the next message.
func (st *stream) nextEvent(t *testing.T) event {
	t.Helper()
	for {
		if e := st.next(t); e.hasData || e.hasID || e.event != "" {
			return e
		}
	}
}

// nextData returns the data of the next message.
func (st *stream) nextData(t *testing.T) string {
	t.Helper()
	return st.nextEvent(t).data
}

// eventually waits (bounded) until cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testserver.Eventually(t, waitStep, what, cond)
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// printed returns the values printed after prefix and a tab.
func printed(out, prefix string) []string {
	var vs []string
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, prefix+"\t"); ok {
			vs = append(vs, v)
		}
	}
	return vs
}

// TestTour runs the seed's tour script as printed.
func TestTour(t *testing.T) {
	s := start(t, "tour.lua")
	sub := s.subscribe(t, "/sse")
	s.mustPublish(t, "/sse", "Hello, World!")

	e := sub.nextEvent(t)
	if !e.hasID || !uuidRE.MatchString(e.id) {
		t.Errorf("id %q, want a uuid set by publish", e.id)
	}
	if e.event != "custom-event" || e.data != "Hello, Universe!" ||
		!slices.Equal(e.comments, []string{"This is a comment", "Another comment!"}) {
		t.Errorf("message %+v, want event custom-event, data Hello, Universe! and the two comments", e)
	}

	eventually(t, "message's prints", func() bool { return len(printed(s.stdout.String(), "Subscriber ID:")) == 1 })
	out := s.stdout.String()
	pubIDs, msgIDs, subIDs := printed(out, "Publish ID:"), printed(out, "Message ID:"), printed(out, "Subscriber ID:")
	if len(pubIDs) != 1 || !uuidRE.MatchString(pubIDs[0]) {
		t.Errorf("Publish ID lines %q, want one uuid", pubIDs)
	}
	if !slices.Equal(msgIDs, []string{e.id}) {
		t.Errorf("Message ID lines %q, want the id sent, %q", msgIDs, e.id)
	}
	if len(subIDs) != 1 || !uuidRE.MatchString(subIDs[0]) {
		t.Fatalf("Subscriber ID lines %q, want one uuid", subIDs)
	}

	// A publisher's own id is kept.
	if code, body := s.publish(t, "/sse", map[string]any{"id": "given", "data": "x"}); code != http.StatusAccepted {
		t.Fatalf("publish: %d %s", code, body)
	}
	if e := sub.nextEvent(t); e.id != "given" || e.data != "Hello, Universe!" {
		t.Errorf("message %+v, want id given and the data replaced", e)
	}

	sub.close()
	eventually(t, "Unsubscribed printed", func() bool { return len(printed(s.stdout.String(), "Unsubscribed:")) == 1 })
	if got := printed(s.stdout.String(), "Unsubscribed:"); got[0] != subIDs[0] {
		t.Errorf("Unsubscribed: %q, want the subscriber's id %q", got[0], subIDs[0])
	}
}

// TestChannels: a message reaches exactly the subscribers of its channels.
// Absence is shown without waiting: after the message that must not
// arrive, a marker published to every channel must be what comes next.
func TestChannels(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"one VM", nil},
		// message runs on the subscriber's VM, which is where subscribe
		// recorded it: the per-VM global table is still right.
		{"two VMs", []string{"--lua-vms", "2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, "channels.lua", tc.args...)
			a := s.subscribe(t, "/sse?chan=a")
			b := s.subscribe(t, "/sse?chan=b")
			ab := s.subscribe(t, "/sse?chan=a&chan=b")
			marker := 0
			expectMarker := func(subs ...*stream) {
				t.Helper()
				marker++
				want := fmt.Sprintf("marker %d", marker)
				s.mustPublish(t, "/sse?chan=a&chan=b", want)
				for _, st := range subs {
					if got := st.nextData(t); got != want {
						t.Fatalf("%s: got %q, want %q", st.name, got, want)
					}
				}
			}

			s.mustPublish(t, "/sse?chan=a", "to a")
			for _, st := range []*stream{a, ab} {
				if got := st.nextData(t); got != "to a" {
					t.Fatalf("%s: got %q, want \"to a\"", st.name, got)
				}
			}
			expectMarker(a, b, ab) // b did not get "to a"

			s.mustPublish(t, "/sse?chan=b", "to b")
			for _, st := range []*stream{b, ab} {
				if got := st.nextData(t); got != "to b" {
					t.Fatalf("%s: got %q, want \"to b\"", st.name, got)
				}
			}
			expectMarker(a, b, ab) // a did not get "to b"; ab got "to a&b" once

			s.mustPublish(t, "/sse", "to no channel")
			s.mustPublish(t, "/sse?chan=c", "to channel c")
			expectMarker(a, b, ab)

			// Names are decoded: "x y" written two ways.
			xy := s.subscribe(t, "/sse?chan=x%20y")
			s.mustPublish(t, "/sse?chan=x+y", "to x y")
			if got := xy.nextData(t); got != "to x y" {
				t.Fatalf("got %q, want \"to x y\"", got)
			}

			// a leaves: channel a still has ab.
			a.close()
			// Give unsubscribe a moment, so that the publish below meets
			// the table after it (the outcome is the same either way).
			time.Sleep(50 * time.Millisecond)
			s.mustPublish(t, "/sse?chan=a", "to a again")
			if got := ab.nextData(t); got != "to a again" {
				t.Fatalf("ab: got %q, want \"to a again\"", got)
			}
			expectMarker(b, ab)

			// ab leaves: channel a is empty and dropped; publishing goes on,
			// and a new subscriber of a starts it afresh.
			ab.close()
			time.Sleep(50 * time.Millisecond)
			s.mustPublish(t, "/sse?chan=a", "to empty a")
			expectMarker(b)
			a2 := s.subscribe(t, "/sse?chan=a")
			s.mustPublish(t, "/sse?chan=a", "to new a")
			if got := a2.nextData(t); got != "to new a" {
				t.Fatalf("new a: got %q, want \"to new a\"", got)
			}
			expectMarker(b, a2)

			if w := s.warnings(); len(w) > 0 {
				t.Errorf("server logged warnings:\n%s", strings.Join(w, "\n"))
			}
		})
	}
}

// announcement reads the next subscribe/unsubscribe event and returns its
// kind and the subscriber id its data holds as a JSON string.
func announcement(t *testing.T, st *stream) (kind, id string) {
	t.Helper()
	e := st.nextEvent(t)
	if e.event != "subscribe" && e.event != "unsubscribe" {
		t.Fatalf("%s: event %+v, want subscribe or unsubscribe", st.name, e)
	}
	if err := json.Unmarshal([]byte(e.data), &id); err != nil || !uuidRE.MatchString(id) {
		t.Fatalf("%s: data %q, want a JSON string holding a uuid", st.name, e.data)
	}
	return e.event, id
}

// TestPublishFromLua: subscribe and unsubscribe POST to the server itself.
func TestPublishFromLua(t *testing.T) {
	// --read-timeout 2s: the hooks' HTTP client may keep a spare
	// connection it never sends a request on, and the server's graceful
	// shutdown waits for such a connection until --read-timeout (10s by
	// default) runs out, which would race this test's 10s stop limit.
	s := start(t, "publish.lua", "--read-timeout", "2s")
	// The watcher's own "subscribe" was published before its stream
	// existed: it does not see it.
	watcher := s.subscribe(t, "/sse")

	// One at a time: the announcements come in order.
	var ids []string
	var subs []*stream
	for i := 0; i < 3; i++ {
		subs = append(subs, s.subscribe(t, "/sse"))
		kind, id := announcement(t, watcher)
		if kind != "subscribe" || slices.Contains(ids, id) {
			t.Fatalf("announcement %s %s, want a new subscribe", kind, id)
		}
		ids = append(ids, id)
	}
	// The first subscriber saw the later ones arrive, not itself.
	for _, want := range ids[1:] {
		if kind, id := announcement(t, subs[0]); kind != "subscribe" || id != want {
			t.Fatalf("first subscriber: %s %s, want subscribe %s", kind, id, want)
		}
	}
	// They leave in another order; each unsubscribe names the one that left.
	for _, i := range []int{1, 0, 2} {
		subs[i].close()
		if kind, id := announcement(t, watcher); kind != "unsubscribe" || id != ids[i] {
			t.Fatalf("after subscriber %d left: %s %s, want unsubscribe %s", i, kind, id, ids[i])
		}
	}

	// Many at once: every hook waits on a POST to this server while
	// others run; all finish and the ids pair up.
	const n = 10
	streams := make(chan *stream, n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			conn, err := net.DialTimeout("tcp", s.addr, waitStep)
			if err != nil {
				errs <- err
				return
			}
			_ = conn.SetDeadline(time.Now().Add(waitStep))
			_, err = fmt.Fprintf(conn, "GET /sse HTTP/1.1\r\nHost: %s\r\n\r\n", s.addr)
			var resp *http.Response
			if err == nil {
				if resp, err = http.ReadResponse(bufio.NewReader(conn), nil); err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			if err != nil {
				conn.Close()
				errs <- err
				return
			}
			// Only closed, never read: the bytes the head's reader took do
			// not matter.
			streams <- &stream{testserver.NewStream(t, conn, resp.StatusCode, resp.Header), "concurrent"}
		}()
	}
	var many []*stream
	for i := 0; i < n; i++ {
		select {
		case st := <-streams:
			t.Cleanup(st.close)
			many = append(many, st)
		case err := <-errs:
			t.Fatalf("concurrent subscriber: %v", err)
		case <-time.After(2 * waitStep):
			t.Fatalf("only %d of %d concurrent subscribers got a stream: deadlock?", i, n)
		}
	}
	subscribed := map[string]bool{}
	for i := 0; i < n; i++ {
		kind, id := announcement(t, watcher)
		if kind != "subscribe" || subscribed[id] {
			t.Fatalf("announcement %s %s, want a new subscribe", kind, id)
		}
		subscribed[id] = true
	}
	for _, st := range many {
		st.close()
	}
	for i := 0; i < n; i++ {
		kind, id := announcement(t, watcher)
		if kind != "unsubscribe" || !subscribed[id] {
			t.Fatalf("announcement %s %s, want the unsubscribe of one that subscribed", kind, id)
		}
		delete(subscribed, id)
	}
	if w := s.warnings(); len(w) > 0 {
		t.Errorf("server logged warnings:\n%s", strings.Join(w, "\n"))
	}
}

// occupancy returns the count the next occupancy event carries.
func occupancy(t *testing.T, st *stream) int {
	t.Helper()
	e := st.nextEvent(t)
	n, err := strconv.Atoi(e.data)
	if e.event != "occupancy" || err != nil {
		t.Fatalf("%s: %+v, want an occupancy event with a count", st.name, e)
	}
	return n
}

// occupancyUntil reads occupancy events until one says want; the counts
// before it must lie between from and want (they were published while the
// change was under way).
func occupancyUntil(t *testing.T, st *stream, from, want int) {
	t.Helper()
	lo, hi := min(from, want), max(from, want)
	for {
		n := occupancy(t, st)
		if n == want {
			return
		}
		if n < lo || n > hi {
			t.Fatalf("occupancy %d while going from %d to %d", n, from, want)
		}
	}
}

// checkOccupancy: 5 subscribers come (each learns the count, itself
// included, from catchup), 2 go, the count goes to 3 and stays there;
// a newcomer learns 4, and so does everyone.
func checkOccupancy(t *testing.T, s *server) {
	var subs []*stream
	for i := 1; i <= 5; i++ {
		st := s.subscribe(t, "/sse")
		if n := occupancy(t, st); n != i {
			t.Fatalf("catchup of subscriber %d: occupancy %d, want %d", i, n, i)
		}
		subs = append(subs, st)
	}
	// Ticks went out while the others joined: read on to the first 5.
	occupancyUntil(t, subs[0], 1, 5)

	subs[3].close()
	subs[4].close()
	// An event published before the server saw them go may still say 5 or 4.
	occupancyUntil(t, subs[0], 5, 3)
	for i := 0; i < 2; i++ {
		if n := occupancy(t, subs[0]); n != 3 {
			t.Fatalf("occupancy %d after it reached 3, want 3", n)
		}
	}

	newcomer := s.subscribe(t, "/sse")
	if n := occupancy(t, newcomer); n != 4 {
		t.Fatalf("newcomer's catchup: occupancy %d, want 4 (itself included)", n)
	}
	occupancyUntil(t, subs[0], 3, 4)
	if n := occupancy(t, newcomer); n != 4 {
		t.Fatalf("newcomer's first tick: occupancy %d, want 4", n)
	}
	if w := s.warnings(); len(w) > 0 {
		t.Errorf("server logged warnings:\n%s", strings.Join(w, "\n"))
	}
}

// TestOccupancy: the global counter with one VM (the default). With
// --script-tick 10ms an occupancy event goes out every 200ms.
func TestOccupancy(t *testing.T) {
	checkOccupancy(t, start(t, "occupancy.lua", "--script-tick", "10ms"))
}

// TestOccupancySharedVMs: occupancy_shared.lua keeps the count in `shared`,
// so the numbers are the same with several VMs.
func TestOccupancySharedVMs(t *testing.T) {
	for _, vms := range []string{"auto", "4"} {
		t.Run("lua-vms "+vms, func(t *testing.T) {
			checkOccupancy(t, start(t, "occupancy_shared.lua", "--script-tick", "10ms", "--lua-vms", vms))
		})
	}
}

// TestOccupancyGlobalIsPerVM shows why occupancy_shared.lua exists: with
// two VMs, occupancy.lua's global counter is one per VM. Subscribers are
// spread over the shards (so over the VMs), each VM counts its own, and
// tick (which runs on VM 0) reports VM 0's share only.
func TestOccupancyGlobalIsPerVM(t *testing.T) {
	s := start(t, "occupancy.lua", "--script-tick", "10ms", "--lua-vms", "2")
	var catchups []int
	var subs []*stream
	for i := 0; i < 4; i++ {
		st := s.subscribe(t, "/sse")
		catchups = append(catchups, occupancy(t, st))
		subs = append(subs, st)
	}
	n := occupancy(t, subs[0])
	t.Logf("4 subscribers on 2 VMs: catchups %v, tick says %d", catchups, n)
	if slices.Equal(catchups, []int{1, 2, 3, 4}) || n >= 4 {
		t.Errorf("catchups %v and tick %d: the global counter should see only its VM's subscribers", catchups, n)
	}
	sorted := slices.Clone(catchups)
	sort.Ints(sorted)
	if !slices.Equal(sorted, []int{1, 1, 2, 2}) {
		t.Errorf("catchups %v, want each of the 2 VMs to count 1 then 2", catchups)
	}
}

// The secret TestAuth gives the built-in check with --jwt-secret.
const authSecret = "example-secret"

// token signs claims with HS256 and key.
func token(t *testing.T, key string, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAuth: auth.lua on top of the built-in JWT check. The server refuses
// bad tokens and uncovered topics before the script runs; the script
// refuses revoked tokens (by jti) and a user's third stream, and signs
// each message with its publisher.
func TestAuth(t *testing.T) {
	s := start(t, "auth.lua", "--jwt-secret", authSecret, "--script-data", "jti-revoked, jti-also-revoked")
	hour := time.Now().Add(time.Hour).Unix()
	user := func(sub, jti string, publish ...string) string {
		return "Authorization: Bearer " + token(t, authSecret, jwt.MapClaims{"sub": sub, "jti": jti, "exp": hour,
			"tinysse": map[string]any{"subscribe": []string{"news/*"}, "publish": publish}})
	}
	alice := user("alice", "a1")
	status := func(target string, header ...string) int {
		t.Helper()
		st, a := s.open(t, target, header...)
		if st != nil {
			st.close()
			return http.StatusOK
		}
		return a.status
	}

	t.Run("the built-in check comes first", func(t *testing.T) {
		for name, c := range map[string]struct {
			target string
			header []string
			want   int
		}{
			"no token":       {"/sse?topic=news/a", nil, http.StatusUnauthorized},
			"wrong secret":   {"/sse?topic=news/a", []string{"Authorization: Bearer " + token(t, "another secret", jwt.MapClaims{"sub": "x"})}, http.StatusUnauthorized},
			"expired":        {"/sse?topic=news/a", []string{"Authorization: Bearer " + token(t, authSecret, jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix()})}, http.StatusUnauthorized},
			"not in claim":   {"/sse?topic=sport/a", []string{alice}, http.StatusForbidden},
			"revoked by jti": {"/sse?topic=news/a", []string{user("carol", "jti-revoked")}, http.StatusForbidden},
		} {
			if got := status(c.target, c.header...); got != c.want {
				t.Errorf("%s: %d, want %d", name, got, c.want)
			}
		}
		if !strings.Contains(s.stderr.String(), "Listening on") {
			t.Errorf("stderr: %s", s.stderr)
		}
	})

	t.Run("two streams per user", func(t *testing.T) {
		first := s.subscribe(t, "/sse?topic=news/a", alice)
		s.subscribe(t, "/sse?topic=news/b", user("alice", "a2")) // another token, the same user
		s.refused(t, "/sse?topic=news/a", alice)
		s.subscribe(t, "/sse?topic=news/a", user("bob", "b1")) // bob counts apart
		first.close()
		deadline := time.Now().Add(waitStep)
		for status("/sse?topic=news/a", alice) != http.StatusOK {
			if time.Now().After(deadline) {
				t.Fatal("alice's closed stream was never given back")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("messages say who sent them", func(t *testing.T) {
		reader := s.subscribe(t, "/sse?topic=news/bob", user("dave", "d1"))
		s.mustPublish(t, "/sse?topic=news/bob", "hello", user("bob", "b2", "news/bob"))
		e := reader.next(t)
		if e.data != "hello" || !slices.Equal(e.comments, []string{"from bob"}) {
			t.Errorf("got %+v, want data hello and the comment \"from bob\"", e)
		}
		for name, c := range map[string]struct {
			header string
			want   int
		}{
			"revoked":             {user("bob", "jti-also-revoked", "news/bob"), http.StatusForbidden},
			"another topic":       {user("bob", "b3", "news/alice"), http.StatusForbidden},
			"no token":            {"", http.StatusUnauthorized},
			"publish not claimed": {alice, http.StatusForbidden},
		} {
			var hdr []string
			if c.header != "" {
				hdr = []string{c.header}
			}
			if code, body := s.publish(t, "/sse?topic=news/bob", map[string]any{"data": "no"}, hdr...); code != c.want {
				t.Errorf("%s: %d %s, want %d", name, code, body, c.want)
			}
		}
	})
}

// TestAuthNeedsSecret: without JWT keys, auth.lua's startup fails and the
// server does not start.
func TestAuthNeedsSecret(t *testing.T) {
	cmd := exec.Command(bin, "--listen", testserver.FreeAddr(t), "--script", "examples/auth.lua")
	cmd.Dir = ".."
	var stderr testserver.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(stderr.String(), "--jwt-secret") {
			t.Errorf("exit %v, stderr %q: want a failure naming --jwt-secret", err, stderr.String())
		}
		if strings.Contains(stderr.String(), "Listening on") {
			t.Errorf("listened without a secret: %s", stderr.String())
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("still running without JWT keys; stderr %s", stderr.String())
	}
}
