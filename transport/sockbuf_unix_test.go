//go:build unix

package transport

import "syscall"

// setRcvBuf sets a socket's SO_RCVBUF.
func setRcvBuf(fd uintptr, size int) error {
	return syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size)
}

// sigStop and sigCont stop and resume a process (the stalled-subscriber
// test's helper).
const (
	sigStop = syscall.SIGSTOP
	sigCont = syscall.SIGCONT
)
