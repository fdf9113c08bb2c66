package cluster_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tinysse/tinysse/cluster"
	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/testserver"
	"github.com/tinysse/tinysse/lua"
)

// A message hook on another node sees pub as the publishing node's
// publish hook left it: its request and the keys it added.
func TestLuaPubCrossesNodes(t *testing.T) {
	const script = `
function publish(pub)
  pub.tag = { who = pub.req.headers["x-who"] or "?" }
  return pub
end
function message(pub, sub)
  pub.msg.data = pub.msg.data .. "|" .. pub.tag.who .. "|" .. pub.req.method
  return pub
end
`
	ns := startNATS(t)
	var nodes []*node
	addNode := func() {
		rt, err := lua.Load(lua.Config{Script: "cluster.lua", Source: []byte(script), Logger: quiet, VMs: 2})
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rt.Close)
		nodes = append(nodes, startNode(t, ns,
			cluster.Config{EncodeState: lua.MarshalState, DecodeState: lua.UnmarshalState},
			engine.Config{Hooks: rt.Hooks()}))
	}
	addNode()
	addNode()
	live := nodes[1].subscribe("topic=x", "")
	waitFor(t, "subscriber", func() bool { return nodes[1].eng.Subscribers("x") == 1 })
	// Each event is read before the next publish: with rings of 2, a
	// loaded machine could otherwise apply all three before the shard
	// runs, and the live subscriber would be lapped.
	var got []string
	for _, who := range []string{"ann", "bob", "cy"} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+nodes[0].addr+"/sse?topic=x", strings.NewReader(`{"data":"hi"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Who", who)
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("publish: %d", resp.StatusCode)
		}
		got = append(got, live.events(1)...)
	}
	want := []string{"1:hi|ann|POST", "2:hi|bob|POST", "3:hi|cy|POST"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("live on the other node: %q, want %q", got, want)
	}
	// Replayed from the stream (a node started since has nothing in its
	// rings), the hook still sees it all.
	addNode()
	if got := nodes[2].subscribe("topic=x", "0").events(3); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("replayed: %q, want %q", got, want)
	}
}

// tick runs on every node; cluster.leader() is true on one of them.
func TestLuaLeaderTick(t *testing.T) {
	const script = `
local cluster = require "cluster"
function tick()
  if cluster.leader() then print("lead") else print("follow") end
end
`
	ns := startNATS(t)
	var outs []*testserver.Buffer
	for range 3 {
		var cl *cluster.Node
		out := &testserver.Buffer{}
		rt, err := lua.Load(lua.Config{Script: "tick.lua", Source: []byte(script), Logger: quiet, Stdout: out,
			Tick: 20 * time.Millisecond, Leader: func() bool { return cl != nil && cl.Leader() }})
		if err != nil {
			t.Fatal(err)
		}
		n := startNode(t, ns, cluster.Config{}, engine.Config{Hooks: rt.Hooks()})
		cl = n.cl
		if err := rt.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rt.Close)
		outs = append(outs, out)
	}
	waitFor(t, "every node ticking", func() bool {
		for _, o := range outs {
			if strings.Count(o.String(), "\n") < 10 {
				return false
			}
		}
		return true
	})
	leading := 0
	for _, o := range outs {
		if strings.Contains(o.String(), "lead\n") {
			leading++
			if strings.Contains(o.String(), "follow") {
				t.Errorf("a node both led and followed: %q", o.String())
			}
		}
	}
	if leading != 1 {
		t.Fatalf("%d nodes led, want 1", leading)
	}
}
