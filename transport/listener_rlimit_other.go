//go:build !unix

package transport

// maxOpenFiles returns 0 (unknown) where there is no RLIMIT_NOFILE
// (Windows): Config.MaxConns then defaults to 1<<20.
func maxOpenFiles() int64 { return 0 }
