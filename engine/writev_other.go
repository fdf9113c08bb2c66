//go:build !linux

package engine

import "errors"

// fastWrites: writev is Linux-only; elsewhere Serve ignores Stream.Raw and
// every delivery takes the subscriber goroutine's blocking path.
const fastWrites = false

// iovec stands for writev's buffers, which are never built here.
type iovec struct{ b []byte }

func appendIovec(iov []iovec, f []byte) []iovec { return append(iov, iovec{f}) }

// writevFD is never called where fastWrites is false.
func writevFD(fd uintptr, iov []iovec) (int, error) {
	return 0, errors.New("engine: writev not supported on this platform")
}
