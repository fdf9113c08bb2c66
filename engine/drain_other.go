//go:build !unix

package engine

import "syscall"

// drainSocket is never called without a poller (see poll_none.go).
func drainSocket(syscall.RawConn) bool { return true }
