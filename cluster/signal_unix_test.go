//go:build unix

package cluster_test

import "syscall"

// sigCont resumes a process stopped by SIGSTOP (the fault tests).
const sigCont = syscall.SIGCONT
