//go:build !unix

package cluster_test

import "syscall"

// sigCont has no meaning here: no process is ever stopped (the fault
// tests that stop one run on Unix systems only).
const sigCont = syscall.Signal(0)
