// Package ops is the operational surface of a running server: Prometheus
// metrics, hook timing, and the live dashboard.
//
// In: an engine.Engine's Stats, a transport.Server's Stats and the Lua
// runtime's hook error counts, all read when someone asks (a scrape, the
// dashboard's feed once a second and when a new page starts watching);
// hook calls, through the engine.Hooks that HookStats.Wrap (WrapScript: only
// the hooks a script defines) returns.
// Out: the /metrics text (Prometheus exposition format: values through
// github.com/VictoriaMetrics/metrics, each family's # HELP and # TYPE
// from families.go through internal/promtext), the dashboard page, and a stats
// message a second on the dashboard's topic while someone watches it
// (and one at once for each new watcher).
//
// Nothing here is on the delivery path. The engine counts deliveries once
// per shard pass; the only per-delivery cost this package adds is with a
// Lua message hook, where Wrap's Message adds one type assertion and one
// increment of a batch-local counter per call, and times the batch once.
//
// Safe from any goroutine: everything exported, once built.
package ops
