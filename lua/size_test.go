package lua_test

import (
	"strings"
	"testing"

	"github.com/tinysse/tinysse/engine"
)

// TestStateSize: the state a published message keeps counts in the
// engine's history budget: the request, and what the publish hook added
// (strings exactly, with one VM or copied out for several).
func TestStateSize(t *testing.T) {
	big := strings.Repeat("k", 10000)
	for _, vms := range []int{1, 2} {
		bare := &engine.Message{Data: "x", HasData: true}
		publishWith(t, vms, `function publish(pub) return pub end`, bare)
		added := &engine.Message{Data: "x", HasData: true}
		publishWith(t, vms, `function publish(pub) pub.note = string.rep("k", 10000); pub.list = {"`+big[:100]+`"}; return pub end`, added)
		s0, ok0 := bare.State.(engine.Sizer)
		s1, ok1 := added.State.(engine.Sizer)
		if !ok0 || !ok1 {
			t.Fatalf("VMs %d: the message state is not an engine.Sizer", vms)
		}
		req := (&engine.Request{Method: "POST", Path: "/sse", Headers: map[string]string{"x-who": "ann"}}).Size()
		if s0.Size() < req {
			t.Errorf("VMs %d: bare state %d bytes, less than its request's %d", vms, s0.Size(), req)
		}
		if d := s1.Size() - s0.Size(); d < 10000 {
			t.Errorf("VMs %d: a 10,000-byte pub key adds %d bytes", vms, d)
		}
	}
}
