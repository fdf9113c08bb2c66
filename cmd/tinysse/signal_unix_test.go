//go:build unix

package main

import (
	"os"
	"syscall"
)

// interruptSelf sends this process SIGINT, which run takes as the order
// to shut down.
func interruptSelf() error { return syscall.Kill(os.Getpid(), syscall.SIGINT) }
