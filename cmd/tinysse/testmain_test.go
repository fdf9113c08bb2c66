package main

import (
	"os"
	"testing"

	"github.com/tinysse/tinysse/internal/testserver"
)

// TestMain removes the binary buildBinary built once for the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	testserver.RemoveBinary()
	os.Exit(code)
}
