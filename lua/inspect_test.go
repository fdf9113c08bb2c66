package lua_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/lua"
)

// TestSubscriberKeys: the keys hooks set on sub come back as JSON-ready
// Go values, each from its subscriber's VM; req and topics, functions and
// what does not fit the bounds (a large string, a table containing
// itself) are left out, and the answer says so.
func TestSubscriberKeys(t *testing.T) {
	const src = `function subscribe(sub)
  sub.id = "sub-" .. sub.req.query
  sub.user = {name = "ann", roles = {"a", "b"}}
  sub.n = 42
  sub.ok = true
  sub.nan = 0/0
  sub.fn = function() end
  if sub.req.query:find("big") then
    sub.big = string.rep("x", 5000)
  end
  if sub.req.query:find("loop") then
    sub.loop = sub
  end
  if sub.req.query:find("many") then
    for i = 1, 100000 do sub["k" .. i] = i end
  end
  return sub
end`
	ts := startServer(t, src, lua.Config{VMs: 2}, engine.Config{Shards: 2})
	for _, q := range []string{"plain", "big", "loop", "many"} {
		ts.mustSubscribe(t, "/sse?topic=t&"+q)
	}
	eventually(t, "4 subscribers", func() bool { return ts.eng.Subscribers("t") == 4 })
	page, _, _ := ts.eng.Presence("t", false, 0, 10)
	keys := ts.rt.SubscriberKeys(page)
	if len(keys) != 4 {
		t.Fatalf("%d answers for 4 subscribers", len(keys))
	}
	byID := map[string]lua.SubKeys{}
	for _, k := range keys {
		id, _ := k.Values["id"].(string)
		byID[id] = k
		b, err := json.Marshal(k.Values)
		if err != nil {
			t.Errorf("%s: the values do not encode as JSON: %v", id, err)
		}
		if len(b) > 8<<10 {
			t.Errorf("%s: %d bytes of JSON", id, len(b))
		}
	}
	if many := byID["sub-topic=t&many"]; !many.Truncated || len(many.Values) == 0 || len(many.Values) > 256 {
		t.Errorf("100,000 keys: %d kept, truncated %v", len(many.Values), many.Truncated)
	}
	want := map[string]any{
		"user": map[string]any{"name": "ann", "roles": []any{"a", "b"}},
		"n":    float64(42), "ok": true, "nan": nil,
	}
	for _, q := range []string{"plain", "big", "loop"} {
		k, ok := byID["sub-topic=t&"+q]
		if !ok {
			t.Fatalf("no answer for %s among %v", q, byID)
		}
		for name, v := range want {
			if got, ok := k.Values[name]; !ok || !reflect.DeepEqual(got, v) {
				t.Errorf("%s: %s = %#v, want %#v", q, name, got, v)
			}
		}
		for _, name := range []string{"req", "topics", "fn", "big", "loop"} {
			if _, ok := k.Values[name]; ok {
				t.Errorf("%s: %s was copied", q, name)
			}
		}
		if k.Truncated != (q != "plain") {
			t.Errorf("%s: truncated %v", q, k.Truncated)
		}
	}
	none := ts.rt.SubscriberKeys([]*engine.Subscriber{{}})
	if none[0].Values != nil || none[0].Truncated {
		t.Errorf("a subscriber without a sub table: %+v", none[0])
	}
}

// TestSubscriberKeysWhileDelivering reads sub tables while message hooks
// change them on the same VMs: under -race, a read outside the VM's lock
// would be reported.
func TestSubscriberKeysWhileDelivering(t *testing.T) {
	const src = `function subscribe(sub) sub.seen = 0 return sub end
function message(pub, sub)
  sub.seen = sub.seen + 1
  sub.last = pub.msg.data
  return pub
end`
	ts := startServer(t, src, lua.Config{VMs: 2}, engine.Config{Shards: 2})
	var streams []*stream
	for range 4 {
		streams = append(streams, ts.mustSubscribe(t, "/sse"))
	}
	eventually(t, "4 subscribers", func() bool { return ts.eng.Subscribers("") == 4 })
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 50 {
			ts.mustPublish(t, fmt.Sprintf(`{"data":"m%d"}`, i))
		}
	}()
	for range 50 {
		page, _, _ := ts.eng.Presence("", true, 0, 10)
		for _, k := range ts.rt.SubscriberKeys(page) {
			if _, ok := k.Values["seen"].(float64); !ok {
				t.Fatalf("no seen counter in %v", k.Values)
			}
		}
	}
	wg.Wait()
	for _, s := range streams {
		for i := range 50 {
			if got := s.nextData(t); got != fmt.Sprintf("m%d", i) {
				t.Fatalf("message %d: %q", i, got)
			}
		}
	}
	eventually(t, "every message seen", func() bool {
		page, _, _ := ts.eng.Presence("", true, 0, 10)
		for _, k := range ts.rt.SubscriberKeys(page) {
			if k.Values["seen"] != float64(50) || k.Values["last"] != "m49" {
				return false
			}
		}
		return true
	})
}
