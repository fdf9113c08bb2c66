package lua_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/lua"
)

func TestUUID(t *testing.T) {
	const src = `local uuid = require "uuid"
function startup(cli)
  print(uuid(), uuid.v4(), uuid.v4(), uuid.v7(), uuid.v7())
end`
	ts := startServer(t, src, lua.Config{}, engine.Config{})
	lines := ts.out.Lines()
	if len(lines) != 1 {
		t.Fatalf("printed %q", lines)
	}
	ids := strings.Split(lines[0], "\t")
	v4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	v7 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	for i, id := range ids {
		re := v4
		if i >= 3 {
			re = v7
		}
		if !re.MatchString(id) {
			t.Errorf("id %d %q does not match %s", i, id, re)
		}
	}
	if ids[1] == ids[2] || ids[3] == ids[4] {
		t.Errorf("repeated ids %q", ids)
	}
	if ids[3] > ids[4] {
		t.Errorf("uuid.v7 not time-ordered: %q then %q", ids[3], ids[4])
	}
}
