// Package clients holds tests that let real EventSource implementations
// judge the server's wire: the npm "eventsource" package (the one most Node
// programs use, pinned in node/package-lock.json) and headless Chromium's
// own EventSource (through package internal/browser).
//
// Both read the same scenarios (clients_test.go) from a real server on
// 127.0.0.1: every published message arrives with exactly its id, event and
// data; a retry hint sent at timeout or on lag sets the reconnection delay;
// a client cut off reconnects by itself with Last-Event-ID and is replayed
// exactly what it missed, once.
//
// The tests skip, saying why, when node, node/node_modules (run `npm ci` in
// internal/clients/node) or Chromium is missing; .ci/run installs all three.
package clients
