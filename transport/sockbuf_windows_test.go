package transport

import "syscall"

// setRcvBuf sets a socket's SO_RCVBUF.
func setRcvBuf(fd uintptr, size int) error {
	return syscall.SetsockoptInt(syscall.Handle(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size)
}

// sigStop and sigCont do not exist here: the test that stops its helper
// process fails at the signal on Windows (it is run on Unix systems).
const (
	sigStop = syscall.Signal(0x13)
	sigCont = syscall.Signal(0x12)
)
