package lua_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/lua"
)

// errorAnswer checks that body is the JSON error answer {"error": ...}
// and returns its message.
func errorAnswer(t testing.TB, body string) string {
	t.Helper()
	var v struct {
		Error *string `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil || v.Error == nil || *v.Error == "" {
		t.Fatalf("answer %q is not a JSON error", body)
	}
	return *v.Error
}

func TestStartupGetsOptions(t *testing.T) {
	const src = `function startup(cli)
  print(cli.listen, cli.capacity, cli.keep_alive, cli.pub_path, tostring(cli.unsafe_script),
    cli.vm, cli.vms, cli.script_data)
end`
	t.Run("cli", func(t *testing.T) {
		cli := map[string]any{
			"listen":        "127.0.0.1:1983",
			"capacity":      256,
			"keep_alive":    int64(60000),
			"pub_path":      "/sse",
			"unsafe_script": false,
		}
		ts := startServer(t, src, lua.Config{Data: "hello", CLI: cli}, engine.Config{})
		want := "127.0.0.1:1983\t256\t60000\t/sse\tfalse\t0\t1\thello"
		if got := ts.out.Lines(); !slices.Equal(got, []string{want}) {
			t.Errorf("startup printed %q, want %q", got, want)
		}
	})
	t.Run("no cli", func(t *testing.T) {
		ts := startServer(t, src, lua.Config{}, engine.Config{})
		want := "nil\tnil\tnil\tnil\tnil\t0\t1\t"
		if got := ts.out.Lines(); !slices.Equal(got, []string{want}) {
			t.Errorf("startup printed %q, want %q", got, want)
		}
	})
}

func TestStartupErrorStopsStart(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"error", "function startup(cli)\n  error(\"no database\")\nend\n", "test.lua:2: no database"},
		{"runtime error", "function startup(cli)\n  local x\n  x.field = 1\nend\n", "test.lua:3:"},
		{"main chunk", "local x = 1\nerror(\"at load\")\n", "test.lua:2: at load"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, err := lua.Load(lua.Config{Source: []byte(tc.src), Script: "test.lua", Stdout: &syncBuffer{}})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			defer rt.Close()
			err = rt.Start()
			if err == nil {
				t.Fatal("Start succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Start: %v, want it to name %q", err, tc.want)
			}
		})
	}
	t.Run("syntax error", func(t *testing.T) {
		_, err := lua.Load(lua.Config{Source: []byte("function startup(cli)\n  if then\nend\n"), Script: "test.lua"})
		if err == nil || !strings.Contains(err.Error(), "test.lua") || !strings.Contains(err.Error(), "line:2") {
			t.Errorf("Load: %v, want a syntax error naming test.lua line 2", err)
		}
	})
}

func TestTickCountsFromOne(t *testing.T) {
	const src = `local seen = {}
function tick(count) seen[#seen + 1] = count end
function catchup(sub) return {{data = table.concat(seen, ",")}} end`
	ts := startServer(t, src, lua.Config{Tick: 20 * time.Millisecond}, engine.Config{})
	var got string
	eventually(t, "three ticks", func() bool {
		s := ts.mustSubscribe(t, "/sse")
		got = s.nextData(t)
		s.close()
		return strings.Count(got, ",") >= 2
	})
	for i, n := range strings.Split(got, ",") {
		if n != strconv.Itoa(i+1) {
			t.Fatalf("tick counts %q, want 1, 2, 3, ...", got)
		}
	}
}

func TestPublishChangesMessage(t *testing.T) {
	const src = `function publish(pub)
  if pub.msg.data == "drop event" then
    pub.msg.event = nil
    return pub
  end
  pub.msg.id = "id-" .. pub.msg.data
  pub.msg.event = "changed"
  pub.msg.data = "line1\nline2"
  pub.msg.comment = {"first", "second"}
  return pub
end`
	ts := startServer(t, src, lua.Config{}, engine.Config{})
	s := ts.mustSubscribe(t, "/sse")
	ts.mustPublish(t, `{"data":"x","event":"orig","comment":["orig"]}`)
	want := frame{"id: id-x", "event: changed", "data: line1", "data: line2", ": first", ": second"}
	if f := s.next(t); !slices.Equal(f, want) {
		t.Errorf("got %q, want %q", f, want)
	}
	ts.mustPublish(t, `{"data":"drop event","event":"gone"}`)
	want = frame{"data: drop event"}
	if f := s.next(t); !slices.Equal(f, want) {
		t.Errorf("got %q, want %q", f, want)
	}
}

func TestPublishRejected(t *testing.T) {
	const src = `function publish(pub)
  if pub.msg.data == "no" then return end
  if pub.msg.data == "false" then return false end
  return pub
end`
	ts := startServer(t, src, lua.Config{}, engine.Config{})
	s := ts.mustSubscribe(t, "/sse")
	for _, data := range []string{"no", "false"} {
		status, body := ts.publish(t, "/sse", `{"data":"`+data+`"}`)
		if status != http.StatusForbidden || body != `{"error":"message rejected by script"}` {
			t.Errorf("publish %q: %d %s, want 403 {\"error\":\"message rejected by script\"}", data, status, body)
		}
	}
	ts.mustPublish(t, `{"data":"yes"}`)
	if got := s.nextData(t); got != "yes" {
		t.Errorf("subscriber got %q first, want the accepted message", got)
	}
}

func TestPublishError(t *testing.T) {
	const src = `function publish(pub)
  if pub.msg.data == "boom" then
    error("publish exploded")
  end
  return pub
end`
	ts := startServer(t, src, lua.Config{}, engine.Config{})
	s := ts.mustSubscribe(t, "/sse")
	status, body := ts.publish(t, "/sse", `{"data":"boom"}`)
	if status != http.StatusInternalServerError {
		t.Fatalf("publish: %d %s, want 500", status, body)
	}
	errorAnswer(t, body)
	if log := ts.log.String(); !strings.Contains(log, "test.lua:3: publish exploded") || !strings.Contains(log, "hook=publish") {
		t.Errorf("log %q does not name the hook, file and line", log)
	}
	ts.mustPublish(t, `{"data":"after"}`)
	if got := s.nextData(t); got != "after" {
		t.Errorf("subscriber got %q first, want nothing of the failed publish", got)
	}
}

func TestPublishBadEvent(t *testing.T) {
	const src = `function publish(pub)
  pub.msg.event = pub.msg.data
  return pub
end`
	ts := startServer(t, src, lua.Config{}, engine.Config{})
	s := ts.mustSubscribe(t, "/sse")
	for _, data := range []string{`a\r\nb`, `a\nb`, `a\rb`} {
		status, body := ts.publish(t, "/sse", `{"data":"`+data+`"}`)
		if status != http.StatusBadRequest {
			t.Errorf("event %q: %d %s, want 400", data, status, body)
			continue
		}
		errorAnswer(t, body)
	}
	ts.mustPublish(t, `{"data":"fine"}`)
	if got := s.next(t).value(t, "event"); got != "fine" {
		t.Errorf("subscriber got event %q first, want nothing of the refused ones", got)
	}
}

func TestPublishSetsTopics(t *testing.T) {
	const src = `function publish(pub)
  if pub.msg.event then pub.topics = {pub.msg.event} end
  return pub
end`
	ts := startServer(t, src, lua.Config{}, engine.Config{})
	news := ts.mustSubscribe(t, "/sse?topic=news")
	other := ts.mustSubscribe(t, "/sse?topic=other")
	def := ts.mustSubscribe(t, "/sse")
	ts.mustPublish(t, `{"event":"news","data":"1"}`)
	status, body := ts.publish(t, "/sse?topic=other", `{"event":"news","data":"2"}`)
	if status != http.StatusAccepted {
		t.Fatalf("publish: %d %s", status, body)
	}
	ts.mustPublish(t, `{"data":"3"}`)
	if a, b := news.nextData(t), news.nextData(t); a != "1" || b != "2" {
		t.Errorf("topic news got %q, %q, want 1, 2", a, b)
	}
	if got := def.nextData(t); got != "3" {
		t.Errorf("default topic got %q first, want 3", got)
	}
	other.none(t, 100*time.Millisecond)
}

func TestSubscribeRejected(t *testing.T) {
	const src = `local gone = 0
function subscribe(sub)
  if sub.req.query == "deny" then return end
  if sub.req.query == "false" then return false end
  return sub
end
function unsubscribe(sub)
  gone = gone + 1
  print("unsubscribe", gone)
end`
	ts := startServer(t, src, lua.Config{}, engine.Config{})
	for _, q := range []string{"deny", "false"} {
		s := ts.subscribe(t, "/sse?"+q)
		if s.status != http.StatusForbidden {
			t.Fatalf("GET ?%s: %d %s, want 403", q, s.status, s.body)
		}
		errorAnswer(t, s.body)
	}
	s := ts.mustSubscribe(t, "/sse")
	s.close()
	eventually(t, "unsubscribe of the accepted subscriber", func() bool { return len(ts.out.Lines()) > 0 })
	time.Sleep(50 * time.Millisecond)
	if got := ts.out.Lines(); !slices.Equal(got, []string{"unsubscribe\t1"}) {
		t.Errorf("printed %q, want one unsubscribe (refused subscribers have no stream)", got)
	}
}

func TestSubscribeError(t *testing.T) {
	const src = `function subscribe(sub)
  if sub.req.query == "boom" then
    error("subscribe exploded")
  end
  return sub
end`
	ts := startServer(t, src, lua.Config{}, engine.Config{})
	s := ts.subscribe(t, "/sse?boom")
	if s.status != http.StatusInternalServerError {
		t.Fatalf("GET: %d %s, want 500", s.status, s.body)
	}
	errorAnswer(t, s.body)
	if log := ts.log.String(); !strings.Contains(log, "test.lua:3: subscribe exploded") || !strings.Contains(log, "hook=subscribe") {
		t.Errorf("log %q does not name the hook, file and line", log)
	}
	next := ts.mustSubscribe(t, "/sse")
	ts.mustPublish(t, `{"data":"hello"}`)
	if got := next.nextData(t); got != "hello" {
		t.Errorf("next subscriber got %q", got)
	}
}

func TestSubscribeSetsTopics(t *testing.T) {
	const src = `function subscribe(sub)
  sub.topics = {"room-" .. sub.req.query}
  return sub
end`
	ts := startServer(t, src, lua.Config{}, engine.Config{})
	s := ts.mustSubscribe(t, "/sse?a")
	ts.mustPublish(t, `{"data":"default"}`)
	for _, target := range []string{"/sse?topic=room-b", "/sse?topic=room-a"} {
		if status, body := ts.publish(t, target, `{"data":"`+target+`"}`); status != http.StatusAccepted {
			t.Fatalf("publish %s: %d %s", target, status, body)
		}
	}
	if got := s.nextData(t); got != "/sse?topic=room-a" {
		t.Errorf("got %q first, want the message of topic room-a", got)
	}
}

func TestCatchup(t *testing.T) {
	const src = `function catchup(sub, last_event_id)
  if sub.req.query == "none" then return nil end
  if sub.req.query == "empty" then return {} end
  return {
    {id = "c1", event = "catchup", data = "last=" .. tostring(last_event_id)},
    {data = "second", comment = {"note"}},
  }
end
function message(pub, sub)
  pub.msg.data = "via message: " .. pub.msg.data
  return pub
end`
	ts := startServer(t, src, lua.Config{}, engine.Config{})
	for _, tc := range []struct {
		name, target string
		header       []string
		last         string
	}{
		{"no id", "/sse", nil, "nil"},
		{"header", "/sse", []string{"Last-Event-ID: abc"}, "abc"},
		{"query", "/sse?last_event_id=q", nil, "q"},
		{"header wins", "/sse?last_event_id=q", []string{"Last-Event-ID: h"}, "h"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ts.mustSubscribe(t, tc.target, tc.header...)
			want := frame{"id: c1", "event: catchup", "data: last=" + tc.last}
			if f := s.next(t); !slices.Equal(f, want) {
				t.Errorf("first frame after ok %q, want %q", f, want)
			}
			want = frame{"data: second", ": note"}
			if f := s.next(t); !slices.Equal(f, want) {
				t.Errorf("second frame %q, want %q", f, want)
			}
			ts.mustPublish(t, `{"data":"live"}`)
			if got := s.nextData(t); got != "via message: live" {
				t.Errorf("live message %q", got)
			}
		})
	}
	for _, q := range []string{"none", "empty"} {
		t.Run(q, func(t *testing.T) {
			s := ts.mustSubscribe(t, "/sse?"+q)
			ts.mustPublish(t, `{"data":"live"}`)
			if got := s.nextData(t); got != "via message: live" {
				t.Errorf("got %q first, want the live message", got)
			}
		})
	}
}

func TestMessageSkip(t *testing.T) {
	const src = `function subscribe(sub)
  sub.name = sub.req.query
  return sub
end
function message(pub, sub)
  if sub.name == "skip" and pub.msg.data == "first" then return nil end
  return pub
end`
	ts := startServer(t, src, lua.Config{}, engine.Config{Shards: 1})
	skip := ts.mustSubscribe(t, "/sse?skip")
	other := ts.mustSubscribe(t, "/sse?other")
	ts.mustPublish(t, `{"data":"first"}`)
	ts.mustPublish(t, `{"data":"second"}`)
	if a, b := other.nextData(t), other.nextData(t); a != "first" || b != "second" {
		t.Errorf("other subscriber got %q, %q", a, b)
	}
	if got := skip.nextData(t); got != "second" {
		t.Errorf("skipping subscriber got %q, want to skip first and stay for second", got)
	}
}

func TestMessageChangesOneSubscriber(t *testing.T) {
	const src = `function subscribe(sub)
  sub.id = sub.req.query
  return sub
end
function message(pub, sub)
  if sub.id == "a" then
    pub.msg.data = "changed for a"
    pub.msg.comment = {"only a"}
    pub.id = "a"
  elseif sub.id == "c" then
    pub.msg.data = pub.msg.data .. " seen by c, pub.id=" .. tostring(pub.id)
  end
  return pub
end`
	// One shard: the three deliveries run in one batch on one VM.
	ts := startServer(t, src, lua.Config{}, engine.Config{Shards: 1})
	b := ts.mustSubscribe(t, "/sse?b")
	a := ts.mustSubscribe(t, "/sse?a")
	c := ts.mustSubscribe(t, "/sse?c")
	for _, data := range []string{"one", "two"} {
		ts.mustPublish(t, `{"data":"`+data+`"}`)
		if f, want := a.next(t), (frame{"data: changed for a", ": only a"}); !slices.Equal(f, want) {
			t.Errorf("a got %q, want %q", f, want)
		}
		if f, want := b.next(t), (frame{"data: " + data}); !slices.Equal(f, want) {
			t.Errorf("b got %q, want %q", f, want)
		}
		if f, want := c.next(t), (frame{"data: " + data + " seen by c, pub.id=nil"}); !slices.Equal(f, want) {
			t.Errorf("c got %q, want %q", f, want)
		}
	}
}

// TestMessagePubIsATable checks that the pub message sees behaves as a plain
// table: changing it in place, removing fields and iterating it.
func TestMessagePubIsATable(t *testing.T) {
	const src = `function subscribe(sub)
  sub.id = sub.req.query
  return sub
end
function message(pub, sub)
  if sub.id ~= "a" then
    if pub.msg.data == "insert" then pub.msg.data = "insert " .. #pub.msg.comment end
    return pub
  end
  if pub.msg.data == "insert" then table.insert(pub.msg.comment, "for a") end
  if pub.msg.data == "remove" then pub.msg.event = nil end
  if pub.msg.data == "pairs" then
    local keys = {}
    for k in pairs(pub.msg) do keys[#keys + 1] = k end
    table.sort(keys)
    pub.msg.data = table.concat(keys, ",")
  end
  return pub
end`
	for _, tc := range []struct {
		name, body string
		a, b       frame
	}{
		{"insert into comment", `{"data":"insert","comment":["c"]}`,
			frame{"data: insert", ": c", ": for a"}, frame{"data: insert 1", ": c"}},
		{"remove a field", `{"event":"e","data":"remove"}`,
			frame{"data: remove"}, frame{"event: e", "data: remove"}},
		{"pairs", `{"id":"1","event":"e","data":"pairs"}`,
			frame{"id: 1", "event: e", "data: data,event,id"}, frame{"id: 1", "event: e", "data: pairs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, src, lua.Config{}, engine.Config{Shards: 1})
			a := ts.mustSubscribe(t, "/sse?a")
			b := ts.mustSubscribe(t, "/sse?b")
			ts.mustPublish(t, tc.body)
			fa, fb := a.next(t), b.next(t)
			if !slices.Equal(fa, tc.a) {
				t.Errorf("a got %q, want %q", fa, tc.a)
			}
			if f := fb; !slices.Equal(f, tc.b) {
				t.Errorf("b got %q, want %q", f, tc.b)
			}
		})
	}
}

func TestPubKeysReachMessage(t *testing.T) {
	const src = `function publish(pub)
  pub.id = "p-" .. pub.msg.data
  pub.meta = {n = 7, tags = {"x", "y"}}
  return pub
end
function message(pub, sub)
  pub.msg.data = pub.id .. " " .. pub.meta.n .. " " .. table.concat(pub.meta.tags, ",")
  return pub
end`
	for _, vms := range []int{1, 2} {
		t.Run("vms="+strconv.Itoa(vms), func(t *testing.T) {
			ts := startServer(t, src, lua.Config{VMs: vms}, engine.Config{Shards: 2})
			// Consecutive subscribers land on different shards, so with two
			// VMs one of them reads pub on a VM that did not run publish.
			s1 := ts.mustSubscribe(t, "/sse")
			s2 := ts.mustSubscribe(t, "/sse")
			for i := range 4 {
				data := "m" + strconv.Itoa(i)
				ts.mustPublish(t, `{"data":"`+data+`"}`)
				want := "p-" + data + " 7 x,y"
				if got := s1.nextData(t); got != want {
					t.Errorf("first subscriber got %q, want %q", got, want)
				}
				if got := s2.nextData(t); got != want {
					t.Errorf("second subscriber got %q, want %q", got, want)
				}
			}
		})
	}
}

func TestSubKeysReachLaterHooks(t *testing.T) {
	const src = `function subscribe(sub)
  sub.id = "sub-" .. sub.req.query
  sub.hint = 1234
  return sub
end
function catchup(sub) return {{data = "catchup " .. sub.id}} end
function message(pub, sub)
  pub.msg.data = "message " .. sub.id
  return pub
end
function timeout(sub, elapsed)
  print("timeout", sub.id)
  return sub.hint
end
function unsubscribe(sub) print("unsubscribe", sub.id) end`
	ts := startServer(t, src, lua.Config{}, engine.Config{Timeout: time.Second})
	s := ts.mustSubscribe(t, "/sse?x")
	if got := s.nextData(t); got != "catchup sub-x" {
		t.Errorf("catchup: %q", got)
	}
	ts.mustPublish(t, `{"data":"hi"}`)
	if got := s.nextData(t); got != "message sub-x" {
		t.Errorf("message: %q", got)
	}
	fs := s.waitClosed(t)
	if len(fs) == 0 || !slices.Equal(fs[len(fs)-1], frame{": timeout", "retry: 1234"}) {
		t.Errorf("frames before close %q, want the timeout with retry 1234 last", fs)
	}
	eventually(t, "unsubscribe", func() bool { return countLines(ts.out, "unsubscribe\tsub-x") > 0 })
	if got, want := ts.out.Lines(), []string{"timeout\tsub-x", "unsubscribe\tsub-x"}; !slices.Equal(got, want) {
		t.Errorf("printed %q, want %q", got, want)
	}
}

func TestReqChangesNotKept(t *testing.T) {
	const subscribe = `function subscribe(sub)
  if sub.req.query == "replace" then
    sub.req = {path = "/replaced"}
  else
    sub.req.path = "/changed"
    sub.req.headers["x-a"] = "changed"
  end
  return sub
end
function timeout(sub)
  print("timeout", sub.req.path, sub.req.headers["x-a"])
  sub.req.path = "/changed in timeout"
end
function unsubscribe(sub) print("unsubscribe", sub.req.path, sub.req.headers["x-a"]) end
`
	t.Run("catchup, timeout and unsubscribe", func(t *testing.T) {
		const src = subscribe + `function catchup(sub)
  local seen = sub.req.path .. " " .. tostring(sub.req.headers["x-a"])
  sub.req.path = "/changed in catchup"
  return {{data = seen}}
end`
		ts := startServer(t, src, lua.Config{}, engine.Config{Timeout: 300 * time.Millisecond})
		for _, q := range []string{"change", "replace"} {
			s := ts.mustSubscribe(t, "/sse?"+q, "X-A: orig")
			if got := s.nextData(t); got != "/sse orig" {
				t.Errorf("%s: catchup saw req %q, want the original /sse orig", q, got)
			}
			s.waitClosed(t)
		}
		eventually(t, "unsubscribes", func() bool { return len(ts.out.Lines()) == 4 })
		if countLines(ts.out, "timeout\t/sse\torig") != 2 || countLines(ts.out, "unsubscribe\t/sse\torig") != 2 {
			t.Errorf("printed %q, want timeout and unsubscribe to see the original req twice each", ts.out.Lines())
		}
	})
	t.Run("message", func(t *testing.T) {
		const src = subscribe + `function message(pub, sub)
  pub.msg.data = sub.req.path .. " " .. tostring(sub.req.headers["x-a"])
  sub.req.path = "/changed in message"
  sub.req.headers["x-a"] = "changed in message"
  return pub
end`
		ts := startServer(t, src, lua.Config{}, engine.Config{})
		for _, q := range []string{"change", "replace"} {
			s := ts.mustSubscribe(t, "/sse?"+q, "X-A: orig")
			for range 2 {
				ts.mustPublish(t, `{"data":"x"}`)
				if got := s.nextData(t); got != "/sse orig" {
					t.Errorf("%s: message saw req %q, want the original /sse orig", q, got)
				}
			}
			s.close()
		}
	})
}

func TestUnsubscribeOnce(t *testing.T) {
	const src = `local gone = 0
function subscribe(sub)
  sub.id = sub.req.query
  return sub
end
function unsubscribe(sub)
  gone = gone + 1
  print("unsubscribe", sub.id, gone)
end`
	ts := startServer(t, src, lua.Config{}, engine.Config{Shards: 3, Timeout: 500 * time.Millisecond})
	// Five leave by closing; the sixth is closed by the server's timeout.
	var streams []*stream
	for i := range 6 {
		streams = append(streams, ts.mustSubscribe(t, "/sse?s"+strconv.Itoa(i)))
	}
	for _, s := range streams[:5] {
		s.close()
	}
	streams[5].waitClosed(t)
	eventually(t, "six unsubscribes", func() bool { return len(ts.out.Lines()) >= 6 })
	time.Sleep(100 * time.Millisecond) // room for a duplicate to show
	lines := ts.out.Lines()
	if len(lines) != 6 {
		t.Fatalf("printed %q, want six unsubscribes", lines)
	}
	seen := map[string]bool{}
	for i, l := range lines {
		f := strings.Split(l, "\t")
		if len(f) != 3 || f[2] != strconv.Itoa(i+1) || seen[f[1]] {
			t.Fatalf("printed %q, want each subscriber once, counted 1..6", lines)
		}
		seen[f[1]] = true
	}
}

func TestTimeoutHook(t *testing.T) {
	const src = `function subscribe(sub)
  sub.name = sub.req.query
  return sub
end
function timeout(sub, elapsed)
  if sub.name == "hint" then return 1234 end
  if sub.name == "elapsed" then return elapsed end
end
function unsubscribe(sub) print("unsubscribe", sub.name) end`
	const limit = 300 * time.Millisecond
	ts := startServer(t, src, lua.Config{}, engine.Config{Timeout: limit, TimeoutRetry: 777 * time.Millisecond})
	start := time.Now()
	streams := map[string]*stream{}
	for _, name := range []string{"hint", "nil", "elapsed"} {
		streams[name] = ts.mustSubscribe(t, "/sse?"+name)
	}
	retry := map[string]int{}
	for name, s := range streams {
		fs := s.waitClosed(t)
		if len(fs) != 1 || len(fs[0]) != 2 || fs[0][0] != ": timeout" {
			t.Fatalf("%s: frames %q, want one timeout frame", name, fs)
		}
		n, err := strconv.Atoi(fs[0].value(t, "retry"))
		if err != nil {
			t.Fatalf("%s: timeout frame %q has no retry number", name, fs[0])
		}
		retry[name] = n
	}
	if d := time.Since(start); d < limit {
		t.Errorf("streams closed after %s, before the timeout %s", d, limit)
	}
	if retry["hint"] != 1234 {
		t.Errorf("hook answering 1234: retry %d", retry["hint"])
	}
	if retry["nil"] != 777 {
		t.Errorf("hook answering nil: retry %d, want TimeoutRetry 777", retry["nil"])
	}
	if e := retry["elapsed"]; e < int(limit.Milliseconds()) || e > int(wait.Milliseconds()) {
		t.Errorf("elapsed %d ms, want at least %d", e, limit.Milliseconds())
	}
	eventually(t, "unsubscribes", func() bool { return len(ts.out.Lines()) >= 3 })
	for name := range streams {
		if n := countLines(ts.out, "unsubscribe\t"+name); n != 1 {
			t.Errorf("unsubscribe ran %d times for %s", n, name)
		}
	}
}

func TestReqFields(t *testing.T) {
	const src = `local function describe(req)
  return table.concat({req.method, req.path, req.uri, req.query,
    tostring(req.headers["x-custom"]), tostring(req.headers["X-Custom"]),
    req.addr.ip, tostring(req.addr.port)}, "|")
end
function subscribe(sub)
  sub.desc = describe(sub.req)
  return sub
end
function catchup(sub) return {{data = sub.desc}} end
function publish(pub)
  pub.msg.data = describe(pub.req) .. "|" .. pub.req.headers["content-type"]
  return pub
end`
	ts := startServer(t, src, lua.Config{}, engine.Config{})
	s := ts.mustSubscribe(t, "/sse?foo=bar&x=1", "X-Custom: Val")
	port := strconv.Itoa(s.local.Port)
	if got, want := s.nextData(t), "GET|/sse|/sse?foo=bar&x=1|foo=bar&x=1|Val|nil|127.0.0.1|"+port; got != want {
		t.Errorf("subscribe req %q, want %q", got, want)
	}
	plain := ts.mustSubscribe(t, "/sse")
	if got, want := plain.nextData(t), "GET|/sse|/sse||nil|nil|127.0.0.1|"+strconv.Itoa(plain.local.Port); got != want {
		t.Errorf("subscribe req %q, want %q", got, want)
	}

	req, err := http.NewRequest("POST", "http://"+ts.addr+"/sse?a=b", strings.NewReader(`{"data":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Custom", "pub")
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish: %d", resp.StatusCode)
	}
	want := regexp.MustCompile(`^POST\|/sse\|/sse\?a=b\|a=b\|pub\|nil\|127\.0\.0\.1\|[1-9][0-9]*\|application/json$`)
	if got := plain.nextData(t); !want.MatchString(got) {
		t.Errorf("publish req %q, want to match %s", got, want)
	}
}

func TestHookErrorsLogged(t *testing.T) {
	for _, tc := range []struct {
		hook, src string
		ec        engine.Config
		trigger   func(t *testing.T, ts *testServer)
	}{
		{"catchup", "function catchup(sub)\n  error(\"catchup failed\")\nend", engine.Config{},
			func(t *testing.T, ts *testServer) {
				// The stream still opens, with nothing caught up.
				s := ts.mustSubscribe(t, "/sse")
				ts.mustPublish(t, `{"data":"live"}`)
				if got := s.nextData(t); got != "live" {
					t.Errorf("got %q", got)
				}
			}},
		{"message", "function message(pub, sub)\n  local x = nil; x.y = 1\nend", engine.Config{},
			func(t *testing.T, ts *testServer) {
				s := ts.mustSubscribe(t, "/sse")
				ts.mustPublish(t, `{"data":"lost"}`)
				s.none(t, 100*time.Millisecond)
			}},
		{"unsubscribe", "function unsubscribe(sub)\n  error(\"unsubscribe failed\")\nend", engine.Config{},
			func(t *testing.T, ts *testServer) { ts.mustSubscribe(t, "/sse").close() }},
		{"timeout", "function timeout(sub, elapsed)\n  error(\"timeout failed\")\nend", engine.Config{Timeout: 300 * time.Millisecond, TimeoutRetry: 5 * time.Millisecond},
			func(t *testing.T, ts *testServer) {
				fs := ts.mustSubscribe(t, "/sse").waitClosed(t)
				if len(fs) != 1 || fs[0].value(t, "retry") != "5" {
					t.Errorf("frames %q, want the timeout with TimeoutRetry", fs)
				}
			}},
		{"tick", "function tick(n)\n  error(\"tick failed\")\nend", engine.Config{},
			func(t *testing.T, ts *testServer) {}},
	} {
		t.Run(tc.hook, func(t *testing.T) {
			ts := startServer(t, tc.src, lua.Config{Tick: 20 * time.Millisecond}, tc.ec)
			tc.trigger(t, ts)
			eventually(t, "the error in the log", func() bool {
				log := ts.log.String()
				return strings.Contains(log, "test.lua:2:") && strings.Contains(log, "hook="+tc.hook)
			})
			// The server goes on.
			s := ts.mustSubscribe(t, "/sse")
			s.close()
		})
	}
}
