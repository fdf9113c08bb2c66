//go:build !unix

package lua_test

import "time"

// processCPU is 0 where getrusage is missing: no cpu-ns/op is reported.
func processCPU() time.Duration { return 0 }
