package lua

import glua "github.com/yuin/gopher-lua"

func init() { builtins["cluster"] = openCluster }

// cluster: what a script needs to know of the cluster it runs in.
// cluster.leader() is true on exactly one node of a cluster at a time (on a
// single node, always): tick runs on every node, so a job that must run
// once per cluster starts with `if not cluster.leader() then return end`.
// cluster.enabled says whether the node runs in cluster mode (--nats).
func openCluster(v *vm, L *glua.LState) glua.LValue {
	leader := v.rt.cfg.Leader
	t := L.CreateTable(0, 2)
	t.RawSetString("enabled", glua.LBool(leader != nil))
	t.RawSetString("leader", L.NewFunction(func(L *glua.LState) int {
		L.Push(glua.LBool(leader == nil || leader()))
		return 1
	}))
	return t
}
