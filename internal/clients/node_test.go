package clients

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tinysse/tinysse/internal/testserver"
)

// TestNodeEventSource runs the scenarios with the npm eventsource package.
func TestNodeEventSource(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("no node: install Node.js 18 or later (apt-get install nodejs npm)")
	}
	if _, err := os.Stat(filepath.Join("node", "node_modules", "eventsource", "package.json")); err != nil {
		t.Skip("the npm eventsource package is not installed: run `npm ci` in internal/clients/node")
	}
	runScenarios(t, startNode)
}

// nodeClient is node/client.mjs running in a child process.
type nodeClient struct {
	mu  sync.Mutex
	got []record // guarded by mu; appended by the stdout reader
}

func (c *nodeClient) records(testing.TB) []record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

func (c *nodeClient) eventIDIsBlockID() bool { return true }

func startNode(t *testing.T, s *server, types []string) esClient {
	t.Helper()
	return startNodeAt(t, s.url("/sse"), types)
}

// startNodeAt runs client.mjs on url; env entries (NAME=value) are added
// to its environment (TINYSSE_TOKEN_FILE: see client.mjs).
func startNodeAt(t *testing.T, url string, types []string, env ...string) *nodeClient {
	t.Helper()
	cmd := exec.Command("node", append([]string{"client.mjs", url}, types...)...)
	cmd.Dir = "node"
	cmd.Env = append(os.Environ(), env...)
	stdin, stdout := testserver.StartPiped(t, cmd)
	c := &nodeClient{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var r record
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Errorf("node client printed %q: %v", sc.Text(), err)
				continue
			}
			c.mu.Lock()
			c.got = append(c.got, r)
			c.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	t.Cleanup(func() {
		_ = stdin.Close() // the client closes its EventSource and exits
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = cmd.Wait()
	})
	return c
}
