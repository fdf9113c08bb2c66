package lua_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/lua"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// printed returns the value printed after prefix ("Name:\tvalue"), failing
// unless exactly one such line was printed.
func printed(t *testing.T, ts *testServer, prefix string) string {
	t.Helper()
	var vs []string
	for _, l := range ts.out.Lines() {
		if v, ok := strings.CutPrefix(l, prefix+"\t"); ok {
			vs = append(vs, v)
		}
	}
	if len(vs) != 1 {
		t.Fatalf("printed %q, want one %q line", ts.out.Lines(), prefix)
	}
	return vs[0]
}

// TestTourScript runs the seed's tour script (examples/tour.lua, copied
// verbatim) and checks that it does what its comments say.
func TestTourScript(t *testing.T) {
	ts := startServer(t, "", lua.Config{Script: "../examples/tour.lua"}, engine.Config{})
	s := ts.mustSubscribe(t, "/sse")
	ts.mustPublish(t, `{"data":"Hello, World!"}`)
	f := s.next(t)
	if len(f) != 5 {
		t.Fatalf("frame %q, want id, event, data and two comments", f)
	}
	id := f.value(t, "id")
	if !uuidRE.MatchString(id) || !strings.HasPrefix(f[0], "id: ") {
		t.Errorf("id %q is not a uuid (frame %q)", id, f)
	}
	if want := (frame{"event: custom-event", "data: Hello, Universe!", ": This is a comment", ": Another comment!"}); !slices.Equal(f[1:], want) {
		t.Errorf("frame %q, want %q after the id", f, want)
	}

	eventually(t, "message printed", func() bool { return strings.Contains(ts.out.String(), "Subscriber ID:") })
	if v := printed(t, ts, "Publish ID:"); !uuidRE.MatchString(v) {
		t.Errorf("Publish ID %q is not a uuid", v)
	}
	if v := printed(t, ts, "Message ID:"); v != id {
		t.Errorf("Message ID %q, want the id sent, %q", v, id)
	}
	subID := printed(t, ts, "Subscriber ID:")
	if !uuidRE.MatchString(subID) {
		t.Errorf("Subscriber ID %q is not a uuid", subID)
	}
	if strings.Contains(ts.out.String(), "Unsubscribed:") {
		t.Errorf("Unsubscribed printed while the client is connected")
	}

	// A publisher's own id is kept.
	ts.mustPublish(t, `{"id":"given","data":"x"}`)
	if got := s.next(t).value(t, "id"); got != "given" {
		t.Errorf("id %q, want the publisher's", got)
	}

	s.close()
	eventually(t, "Unsubscribed printed", func() bool { return strings.Contains(ts.out.String(), "Unsubscribed:") })
	if v := printed(t, ts, "Unsubscribed:"); v != subID {
		t.Errorf("Unsubscribed: %q, want the subscriber's id %q", v, subID)
	}
}
