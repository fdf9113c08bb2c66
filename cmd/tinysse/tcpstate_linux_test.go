package main

import (
	"encoding/binary"
	"net"
	"syscall"
)

// tcpOpen reports whether c's connection is still established, from the
// first byte of TCP_INFO (tcpi_state), read without consuming anything;
// known is false if it cannot tell.
func tcpOpen(c *net.TCPConn) (open, known bool) {
	raw, err := c.SyscallConn()
	if err != nil {
		return false, false
	}
	var state int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		state, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_INFO)
	}); err != nil || serr != nil {
		return false, false
	}
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], uint32(state))
	const established = 1 // TCP_ESTABLISHED
	return b[0] == established, true
}
