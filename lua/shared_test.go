package lua_test

import (
	"slices"
	"testing"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/lua"
)

func TestSharedPackage(t *testing.T) {
	// startServer fails the test if an assert in startup fails, with its message.
	ts := startServer(t, readFile(t, "shared.lua"), lua.Config{VMs: 2}, engine.Config{Shards: 2})
	want := []string{"first\t0\ttrue", "shared ok", "first\t1\tfalse"}
	if got := ts.out.Lines(); !slices.Equal(got, want) {
		t.Errorf("printed %q, want %q", got, want)
	}
}
