package engine

import (
	"syscall"
	"unsafe"
)

// fastWrites says the shard's non-blocking writev path exists here.
const fastWrites = true

// iovec is one buffer of a writev.
type iovec = syscall.Iovec

// appendIovec appends the buffer f (not empty) to iov.
func appendIovec(iov []iovec, f []byte) []iovec {
	v := iovec{Base: &f[0]}
	v.SetLen(len(f)) // the field's width differs between 32- and 64-bit Linux
	return append(iov, v)
}

// writevFD makes one writev(2) call, retrying only on EINTR.
func writevFD(fd uintptr, iov []iovec) (int, error) {
	if len(iov) == 0 {
		return 0, nil
	}
	for {
		n, _, errno := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		switch errno {
		case 0:
			return int(n), nil
		case syscall.EINTR:
			continue
		default:
			return 0, errno
		}
	}
}
