//go:build !unix

package transport

// maxOpenFiles is unknown where there is no RLIMIT_NOFILE (Windows, whose
// sockets are handles without a per-process count): MaxConns then
// defaults to its fixed bound.
func maxOpenFiles() int64 { return 0 }
