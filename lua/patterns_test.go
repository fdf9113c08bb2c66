package lua_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/lua"
)

// TestSubscribeHookSeesPatterns: sub.topics holds the patterns as the
// client wrote them; the hook may narrow a pattern to another, and the
// message hook runs for what a pattern delivers.
func TestSubscribeHookSeesPatterns(t *testing.T) {
	const src = `function subscribe(sub)
  print("topics=" .. table.concat(sub.topics, ","))
  if sub.req.query:find("narrow") then sub.topics = {"sports/football/*"} end
  return sub
end
function message(pub, sub)
  pub.msg.data = pub.msg.data .. " via " .. table.concat(pub.topics, ",")
  return pub
end`
	ts := startServer(t, src, lua.Config{}, engine.Config{})
	s := ts.mustSubscribe(t, "/sse?topic=sports/**&topic=news/*")
	narrow := ts.mustSubscribe(t, "/sse?topic=sports/**&narrow")
	eventually(t, "the hook's output", func() bool {
		return strings.Count(ts.out.String(), "topics=sports/**,news/*\n") == 1 && strings.Count(ts.out.String(), "topics=sports/**\n") == 1
	})
	for _, target := range []string{"/sse?topic=sports/tennis/1", "/sse?topic=weather", "/sse?topic=sports/football/1"} {
		if status, body := ts.publish(t, target, `{"data":"x"}`); status != http.StatusAccepted {
			t.Fatalf("publish %s: %d %s", target, status, body)
		}
	}
	if got := s.nextData(t); got != "x via sports/tennis/1" {
		t.Errorf("got %q", got)
	}
	if got := s.nextData(t); got != "x via sports/football/1" {
		t.Errorf("got %q", got)
	}
	if got := narrow.nextData(t); got != "x via sports/football/1" {
		t.Errorf("narrowed subscriber got %q first", got)
	}
}
