// Package lua runs Tiny SSE scripts on gopher-lua and fills engine.Hooks.
//
// In: a script path and options (Config). Out: engine.Hooks whose
// functions call the script's global hook functions (startup, tick,
// publish, subscribe, catchup, message, unsubscribe, timeout) when defined.
//
// The script is compiled once to a FunctionProto; Start builds every VM
// from it (pre-warmed) and runs startup on each before the server accepts
// anyone. With one VM (the default) all hooks share one global state, as in
// Tiny SSE. With more, shard i's subscribers run on VM i mod N; publish runs
// on any free VM, tick on VM 0.
//
// Concurrency: an LState is not safe for concurrent use, so each VM has a
// mutex held while Lua runs on it. Every hook call runs on a thread
// (LState.NewThread: shared globals, own stack) taken from the VM's pool.
// A built-in that waits (sleep, http, sqlite, or a mutex held by another hook) unlocks the VM while it
// waits and locks it again before returning to Lua, so other hooks run on
// other threads of the same VM meanwhile and a hook may call this server
// over HTTP without a deadlock. A shard takes its VM once per delivery pass
// (EnterShard/LeaveShard) and runs message for every pending pair.
//
// Limits: a hook is stopped at Config.Timeout and when the heap grows by
// more than Config.MaxMemory under it (the watchdog, between
// instructions), and inside built-ins by their budget (limits.go);
// templates and SQLite are bounded as tpl_guard.go and sqlite_policy.go
// say. Without Config.Unsafe, sqlite and template reach only files inside
// Config.DataDir (datadir.go).
//
// SubscriberKeys copies the keys hooks set on sub tables, for the server
// API: each read under its own VM's lock, one VM at a time, no Lua run.
//
// Check runs the main chunk once without startup, for `tinysse --check`.
// HookErrors counts the errors of the hooks whose error the engine's seam
// does not return (message, timeout, unsubscribe, tick), for the metrics.
//
// All exported methods are safe from any goroutine.
package lua
