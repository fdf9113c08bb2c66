package tcpstate

import (
	"encoding/binary"
	"net"
	"syscall"
)

// Open reports whether c is still established, from the first byte of
// TCP_INFO (tcpi_state), without reading anything from it; known is false
// when it cannot tell.
func Open(c *net.TCPConn) (open, known bool) {
	raw, err := c.SyscallConn()
	if err != nil {
		return false, false
	}
	var v int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_INFO)
	}); err != nil || gerr != nil {
		return false, false
	}
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], uint32(v))
	const established = 1 // TCP_ESTABLISHED
	return b[0] == established, true
}
