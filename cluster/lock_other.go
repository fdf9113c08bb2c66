//go:build !unix

package cluster

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockDir opens dir/tinysse.lock without locking it: on this platform
// nothing stops a second process from opening the same store (see
// lock_unix.go).
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "tinysse.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cluster: store: %w", err)
	}
	return f, nil
}
