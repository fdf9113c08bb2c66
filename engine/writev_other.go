//go:build !linux

package engine

import (
	"errors"
	"syscall"
)

// fastWrites: writev is Linux-only; elsewhere Serve ignores Stream.Raw and
// every delivery takes the subscriber goroutine's blocking path.
const fastWrites = false

// writevFD is never called where fastWrites is false.
func writevFD(fd uintptr, iov []syscall.Iovec) (int, error) {
	return 0, errors.New("engine: writev not supported on this platform")
}
