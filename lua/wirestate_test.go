package lua_test

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/lua"
)

// publishWith runs script's publish hook on m, as the transport does.
func publishWith(t *testing.T, vms int, script string, m *engine.Message) {
	t.Helper()
	rt, err := lua.Load(lua.Config{Script: "state.lua", Source: []byte(script), VMs: vms,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	req := &engine.Request{Method: "POST", Path: "/sse", Headers: map[string]string{"x-who": "ann"}}
	if ok, err := rt.Hooks().Publish(req, m); !ok || err != nil {
		t.Fatalf("publish hook: %v %v", ok, err)
	}
}

func TestMarshalState(t *testing.T) {
	for _, vms := range []int{1, 2} { // one VM keeps Lua values, several copy them out at publish
		m := &engine.Message{Data: "x", HasData: true}
		publishWith(t, vms, `function publish(pub) pub.tag = {who = pub.req.headers["x-who"], n = 2}; return pub end`, m)
		b, err := lua.MarshalState(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{`"who":"ann"`, `"n":2`, `"Method":"POST"`} {
			if !strings.Contains(string(b), want) {
				t.Errorf("VMs %d: state %s lacks %s", vms, b, want)
			}
		}
		var back engine.Message
		if err := lua.UnmarshalState(&back, b); err != nil || back.State == nil {
			t.Errorf("UnmarshalState: %v", err)
		}
	}
	// A value JSON cannot carry is refused as a bad message (400), not sent half.
	m := &engine.Message{Data: "x", HasData: true}
	publishWith(t, 1, `function publish(pub) pub.bad = 0/0; return pub end`, m)
	if _, err := lua.MarshalState(m); !errors.Is(err, engine.ErrInvalid) {
		t.Errorf("NaN in pub: %v, want ErrInvalid", err)
	}
	// No script state: nothing to carry.
	if b, err := lua.MarshalState(&engine.Message{}); b != nil || err != nil {
		t.Errorf("no state: %q %v", b, err)
	}
	if err := lua.UnmarshalState(&engine.Message{}, []byte("not json")); err == nil {
		t.Error("UnmarshalState accepted garbage")
	}
}
