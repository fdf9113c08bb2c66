package testserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the cmd/tinysse binary, built once per test binary into a
// directory RemoveBinary removes.
var binary struct {
	once      sync.Once
	dir, path string
	err       error
}

// Binary returns the cmd/tinysse binary, built on first use (once per test
// binary; skipped with -short). With TINYSSE_EXAMPLES_RACE set it is built
// with -race, so that the server itself runs under the race detector (the
// name is historical: it applies to every package's tests). A package
// with a TestMain calls RemoveBinary after m.Run.
func Binary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the tinysse binary")
	}
	binary.once.Do(func() {
		if binary.dir, binary.err = os.MkdirTemp("", "tinysse-test-"); binary.err != nil {
			return
		}
		binary.path, binary.err = Build(binary.dir, os.Getenv("TINYSSE_EXAMPLES_RACE") != "")
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

// RemoveBinary removes what Binary built.
func RemoveBinary() {
	if binary.dir != "" {
		os.RemoveAll(binary.dir)
	}
}

// Build builds cmd/tinysse into dir (with -race if race) and returns its
// path. Without DWARF: linking is most of the time here.
func Build(dir string, race bool) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	bin := filepath.Join(dir, "tinysse")
	args := []string{"build", "-ldflags=-s -w", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, append(args, "github.com/tinysse/tinysse/cmd/tinysse")...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build tinysse: %v\n%s", err, out)
	}
	return bin, nil
}

// Process is a program running as a child of the test.
type Process struct {
	Cmd    *exec.Cmd
	Addr   string        // where it listens
	exited chan struct{} // closed when it has exited
	err    error         // Wait's result, valid once exited is closed
}

// StartProcess runs name with args (which must listen on addr), with the
// given stdout and stderr and no TINYSSE_* variable of the test's
// environment, and waits until addr accepts connections. The process is
// killed when the test ends, if it is still running.
func StartProcess(t testing.TB, addr string, stdout, stderr io.Writer, name string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	p, err := Run(t, cmd, addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Run starts cmd (its environment, unless set, is the test's without
// TINYSSE_* variables) and waits, up to 10 s, until addr accepts
// connections; an error says it exited or never listened, and then it is
// not running. It is killed when the test ends, if it is still running.
func Run(t testing.TB, cmd *exec.Cmd, addr string) (*Process, error) {
	if cmd.Env == nil {
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "TINYSSE_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{Cmd: cmd, Addr: addr, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	deadline := time.Now().Add(2 * Wait)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			t.Cleanup(p.Kill)
			return p, nil
		}
		if done, werr := p.ExitedWithin(0); done {
			return nil, fmt.Errorf("%s exited (%v) before listening on %s", cmd.Path, werr, addr)
		}
		if time.Now().After(deadline) {
			p.Kill()
			return nil, fmt.Errorf("%s not listening on %s after %v: %v", cmd.Path, addr, 2*Wait, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ExitedWithin waits up to d for the process to exit and returns its exit
// error.
func (p *Process) ExitedWithin(d time.Duration) (done bool, err error) {
	select {
	case <-p.exited:
		return true, p.err
	case <-time.After(d):
		return false, nil
	}
}

// Kill kills the process (only the one this test started), if it is still
// running, and waits for it to exit.
func (p *Process) Kill() {
	if done, _ := p.ExitedWithin(0); !done {
		_ = p.Cmd.Process.Kill()
		<-p.exited
	}
}

// Stop sends SIGTERM and waits for the process to exit (SIGQUIT, for a
// dump of every goroutine, then SIGKILL after 10 s); a process that does
// not exit cleanly fails the test.
func (p *Process) Stop(t testing.TB) {
	t.Helper()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("SIGTERM: %v", err)
	}
	if done, err := p.ExitedWithin(2 * Wait); done {
		if err != nil {
			t.Errorf("%s exited with %v after SIGTERM", p.Cmd.Path, err)
		}
		return
	}
	t.Errorf("%s did not exit within %v of SIGTERM; sent SIGQUIT", p.Cmd.Path, 2*Wait)
	_ = p.Cmd.Process.Signal(syscall.SIGQUIT)
	if done, _ := p.ExitedWithin(2 * time.Second); !done {
		p.Kill()
	}
}

// StartPiped starts cmd with its stdin and stdout piped to the test and
// its stderr the test's, and returns the pipes. Stopping cmd is the
// caller's (typically: close stdin, wait, kill after a bound).
func StartPiped(t testing.TB, cmd *exec.Cmd) (stdin io.WriteCloser, stdout io.ReadCloser) {
	t.Helper()
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err = cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return stdin, stdout
}
