//go:build !linux

package engine

import (
	"errors"
	"syscall"
)

// writevFD is Linux-only; elsewhere the transport passes no RawConn and
// every delivery takes the subscriber goroutine's blocking path.
func writevFD(fd uintptr, iov []syscall.Iovec) (int, error) {
	return 0, errors.New("engine: writev not supported on this platform")
}
