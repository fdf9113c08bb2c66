//go:build unix

package engine

import "syscall"

// drainSocket reads and drops, without blocking, what the client sent on
// the socket behind raw, and reports whether the client is still there
// (false: EOF, or the socket failed). Called by the subscriber's owner
// when the poller reported the socket. It reads at most maxDrain bytes:
// a client that keeps sending gets its socket reported again once the
// subscriber is idle, and cannot keep it from its shard meanwhile.
func drainSocket(raw syscall.RawConn) (alive bool) {
	alive = true
	var buf [512]byte
	err := raw.Read(func(fd uintptr) bool {
		for read := 0; ; {
			n, err := syscall.Read(int(fd), buf[:])
			switch {
			case n > 0:
				// A client has nothing to say on an event stream: drop it.
				if read += n; read >= maxDrain {
					return true
				}
				continue
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
