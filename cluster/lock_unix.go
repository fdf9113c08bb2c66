//go:build unix

package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDir takes an exclusive flock on dir/tinysse.lock, so that a second
// process does not open the same store: two JetStream servers on one
// directory would corrupt it. The kernel drops the lock when the process
// dies, kill -9 included, so a restart is never locked out.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "tinysse.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cluster: store: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("cluster: store %s is in use by another process", dir)
		}
		return nil, fmt.Errorf("cluster: store: lock %s: %w", dir, err)
	}
	return f, nil
}
