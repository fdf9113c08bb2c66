//go:build !linux

package engine

import "syscall"

// limitUnsent is Linux-only (TCP_NOTSENT_LOWAT with the shard's writev
// path); elsewhere every delivery takes the subscriber goroutine's
// blocking path, which never copies more than maxPassBytes at once.
func limitUnsent(syscall.RawConn) {}

// abortOnClose is Linux-only; elsewhere a cut-off subscriber's socket is
// closed normally.
func abortOnClose(syscall.RawConn) {}
