package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/tinysse/tinysse/cluster"
	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/testserver"
	"github.com/tinysse/tinysse/transport"
)

// The tests run a real NATS server with JetStream in the test process
// (its store in t.TempDir()) and real tinysse nodes (engine + transport +
// cluster.Node) on 127.0.0.1, and talk to the nodes over HTTP as clients
// do. Every read has a deadline.

const wait = 10 * time.Second

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// logger is quiet unless TINYSSE_TEST_LOG is set (to a level name, or
// anything else for DEBUG).
func logger() *slog.Logger {
	v := os.Getenv("TINYSSE_TEST_LOG")
	if v == "" {
		return quiet
	}
	level := slog.LevelDebug
	_ = level.UnmarshalText([]byte(v))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// natsServer is an in-process nats-server that can be stopped and started
// again on the same port and store. With TINYSSE_TEST_NATS_SERVER set to a
// nats-server binary (Debian's /usr/sbin/nats-server 2.9, say), it runs
// that instead, as a child process on a free loopback port.
type natsServer struct {
	t    testing.TB
	port int
	dir  string
	srv  *server.Server
	cmd  *exec.Cmd // the external server, when TINYSSE_TEST_NATS_SERVER is set
}

func startNATS(t testing.TB) *natsServer {
	t.Helper()
	ns := &natsServer{t: t, port: -1, dir: t.TempDir()}
	if os.Getenv("TINYSSE_TEST_NATS_SERVER") != "" {
		ns.port = testserver.FreePort(t)
	}
	ns.start()
	if ns.srv != nil {
		ns.port = ns.srv.Addr().(*net.TCPAddr).Port
	}
	t.Cleanup(ns.stop)
	return ns
}

func (ns *natsServer) start() {
	ns.t.Helper()
	if bin := os.Getenv("TINYSSE_TEST_NATS_SERVER"); bin != "" {
		ns.cmd = exec.Command(bin, "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(ns.port), "-sd", ns.dir)
		if err := ns.cmd.Start(); err != nil {
			ns.t.Fatalf("nats server: %v", err)
		}
		waitFor(ns.t, "the nats server", func() bool {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ns.port))
			if err == nil {
				c.Close()
			}
			return err == nil
		})
		return
	}
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: ns.port, JetStream: true, StoreDir: ns.dir,
		NoLog: true, NoSigs: true,
	})
	if err != nil {
		ns.t.Fatalf("nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(wait) {
		ns.t.Fatal("nats server not ready")
	}
	ns.srv = s
}

func (ns *natsServer) stop() {
	if ns.cmd != nil {
		_ = ns.cmd.Process.Signal(os.Interrupt)
		_ = ns.cmd.Wait()
		ns.cmd = nil
	}
	if ns.srv != nil {
		ns.srv.Shutdown()
		ns.srv.WaitForShutdown()
		ns.srv = nil
	}
}

func (ns *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", ns.port) }

// node is one tinysse server in cluster mode.
type node struct {
	t    testing.TB
	addr string
	eng  *engine.Engine
	srv  *transport.Server
	cl   *cluster.Node
}

// startNode runs a node against ns with --auto-id; ccfg and ecfg may set
// more (URL, AutoID and Replay are filled in).
func startNode(t testing.TB, ns *natsServer, ccfg cluster.Config, ecfg engine.Config) *node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if ccfg.URL == "" {
		ccfg.URL = ns.url()
	}
	if ccfg.ReconnectWait == 0 {
		ccfg.ReconnectWait = 50 * time.Millisecond
	}
	ccfg.Logger = logger()
	cl, err := cluster.Connect(ctx, ccfg)
	if err != nil {
		t.Fatalf("cluster.Connect: %v", err)
	}
	ecfg.AutoID = true
	ecfg.Replay = cl.Replay
	ecfg.Logger = logger()
	eng, err := engine.New(ecfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Start(ctx, eng); err != nil {
		t.Fatalf("cluster.Start: %v", err)
	}
	srv, err := transport.New(transport.Config{Publish: cl.Publish, Logger: logger()}, eng)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close) // after the server below is shut down
	n := &node{t: t, eng: eng, srv: srv, cl: cl}
	n.addr = testserver.Serve(t, srv)
	return n
}

// stop shuts the node down (again, and at the test's end, is fine).
func (n *node) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_ = n.srv.Shutdown(ctx)
	n.cl.Close()
	httpClient.CloseIdleConnections()
}

func startNodes(t testing.TB, ns *natsServer, k int, ccfg cluster.Config, ecfg engine.Config) []*node {
	nodes := make([]*node, k)
	for i := range nodes {
		nodes[i] = startNode(t, ns, ccfg, ecfg)
	}
	return nodes
}

// httpClient waits longer than the harness's: a publish waits for
// JetStream's acknowledgement.
var httpClient = &http.Client{Timeout: wait}

// publish posts a JSON body to node n's /sse; it returns the status and body.
func (n *node) publish(body string) (int, string) {
	n.t.Helper()
	resp, err := httpClient.Post("http://"+n.addr+"/sse", "application/json", strings.NewReader(body))
	if err != nil {
		n.t.Fatalf("publish: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// mustPublish publishes data to topics on n and requires a 202.
func (n *node) mustPublish(data string, topics ...string) {
	n.t.Helper()
	body, _ := json.Marshal(map[string]any{"data": data, "topic": topics})
	if st, b := n.publish(string(body)); st != http.StatusAccepted {
		n.t.Fatalf("publish %q: %d %s", data, st, b)
	}
}

// stream is one subscriber, read through the harness's client.
type stream struct{ *testserver.Stream }

// subscribe opens a stream on n for the topics (query), with a
// Last-Event-ID when lastID is not empty, and reads up to ": ok".
func (n *node) subscribe(query, lastID string) *stream {
	n.t.Helper()
	var h []string
	if lastID != "" {
		h = []string{"Last-Event-ID", lastID}
	}
	s := testserver.Subscribe(n.t, n.addr, "/sse?"+query, h...)
	s.Timeout = wait
	s.ExpectOK()
	return &stream{s}
}

// events reads k events and returns them as "id:data"; a comment block
// (": replay-gap") is returned as "#comment".
func (s *stream) events(k int) []string {
	s.T.Helper()
	var got []string
	for len(got) < k {
		b := s.MustNext()
		switch {
		case b.Event != nil:
			got = append(got, b.Event.LastEventID+":"+b.Event.Data)
		case len(b.Comments) > 0 && b.Comments[0] != "keep-alive":
			got = append(got, "#"+b.Comments[0])
		}
	}
	return got
}

// quiet requires that nothing but keep-alives arrives for d.
func (s *stream) quiet(d time.Duration) {
	s.T.Helper()
	s.Quiet(d, testserver.IsKeepAlive)
}

// waitFor polls cond until it holds or wait passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testserver.Eventually(t, wait, what, cond)
}

// on returns s reporting to t (a subtest).
func (s *stream) on(t testing.TB) *stream { return &stream{s.Stream.On(t)} }
