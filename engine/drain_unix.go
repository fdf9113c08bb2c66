//go:build unix

package engine

import "syscall"

// drainSocket reads and drops, without blocking, what the client sent on
// the socket behind raw, and reports whether the client is still there
// (false: EOF, or the socket failed). Called by the subscriber's owner
// when the poller reported the socket.
func drainSocket(raw syscall.RawConn) (alive bool) {
	alive = true
	var buf [512]byte
	err := raw.Read(func(fd uintptr) bool {
		for {
			n, err := syscall.Read(int(fd), buf[:])
			switch {
			case n > 0:
				continue // a client has nothing to say on an event stream; drop it
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
			default: // n == 0: EOF, or an error such as ECONNRESET
				alive = false
			}
			return true
		}
	})
	return alive && err == nil
}
