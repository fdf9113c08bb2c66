package lua_test

import (
	"sync/atomic"
	"testing"

	"github.com/tinysse/tinysse/lua"
)

func TestClusterPackage(t *testing.T) {
	// A single node leads itself.
	if _, err := evalLua(t, `
local cluster = require "cluster"
eq(cluster.enabled, false, "enabled")
eq(cluster.leader(), true, "leader")
`); err != nil {
		t.Fatal(err)
	}
	// In a cluster, leader() asks the node each time.
	var leads atomic.Bool
	cfg := lua.Config{Leader: leads.Load}
	if _, err := evalLuaWith(t, cfg, `
local cluster = require "cluster"
eq(cluster.enabled, true, "enabled")
eq(cluster.leader(), false, "leader")
`); err != nil {
		t.Fatal(err)
	}
	leads.Store(true)
	if _, err := evalLuaWith(t, cfg, `eq(require("cluster").leader(), true, "leader")`); err != nil {
		t.Fatal(err)
	}
}
