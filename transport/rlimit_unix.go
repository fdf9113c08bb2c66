//go:build unix

package transport

import "syscall"

// maxOpenFiles returns the process's soft open-file limit (0 if unknown).
func maxOpenFiles() int64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return int64(rl.Cur)
}
