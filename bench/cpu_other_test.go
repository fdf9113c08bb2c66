//go:build !linux

package bench

import "time"

func lockThread() (unlock func()) { return func() {} }

// threadCPU is unknown here; BenchmarkPublish then omits cpu-ns/op.
func threadCPU() time.Duration { return 0 }
