//go:build !unix

package main

import "errors"

// interruptSelf cannot signal this process here: the tests that shut run
// down by SIGINT fail with this error (they are run on Unix systems).
func interruptSelf() error { return errors.New("no SIGINT on this system") }
