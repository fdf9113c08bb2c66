package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	"github.com/tinysse/tinysse/internal/sseparse"
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
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ns.port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
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
	t      testing.TB
	addr   string
	eng    *engine.Engine
	srv    *transport.Server
	cl     *cluster.Node
	served chan error
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, addr: ln.Addr().String(), eng: eng, srv: srv, cl: cl, served: make(chan error, 1)}
	go func() { n.served <- srv.Serve(ln) }()
	t.Cleanup(n.stop)
	return n
}

// stop shuts the node down (again is fine).
func (n *node) stop() {
	if n.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_ = n.srv.Shutdown(ctx)
	<-n.served
	n.cl.Close()
	n.srv = nil
	httpClient.CloseIdleConnections()
}

func startNodes(t testing.TB, ns *natsServer, k int, ccfg cluster.Config, ecfg engine.Config) []*node {
	nodes := make([]*node, k)
	for i := range nodes {
		nodes[i] = startNode(t, ns, ccfg, ecfg)
	}
	return nodes
}

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

// stream is one subscriber on a raw socket, read through the Standard's
// parser.
type stream struct {
	t    testing.TB
	conn net.Conn
	p    *sseparse.Parser
	buf  []byte
}

// subscribe opens a stream on n for the topics (query), with a
// Last-Event-ID when lastID is not empty, and reads up to ": ok".
func (n *node) subscribe(query, lastID string) *stream {
	n.t.Helper()
	c, err := net.DialTimeout("tcp", n.addr, wait)
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { c.Close() })
	req := fmt.Sprintf("GET /sse?%s HTTP/1.1\r\nHost: x\r\n", query)
	if lastID != "" {
		req += "Last-Event-ID: " + lastID + "\r\n"
	}
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		n.t.Fatal(err)
	}
	var head []byte
	buf := make([]byte, 64<<10)
	for !bytes.Contains(head, []byte("\r\n\r\n")) {
		k, err := c.Read(buf)
		head = append(head, buf[:k]...)
		if err != nil {
			n.t.Fatalf("subscribe: %v (read %q)", err, head)
		}
	}
	i := bytes.Index(head, []byte("\r\n\r\n")) + 4
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 200")) {
		n.t.Fatalf("subscribe: %q", head)
	}
	s := &stream{t: n.t, conn: c, p: sseparse.New(), buf: buf}
	s.p.Feed(head[i:])
	if b := s.next(); b.Raw != ": ok\n\n" {
		n.t.Fatalf("stream starts with %q", b.Raw)
	}
	return s
}

// next returns the next block, failing the test after wait.
func (s *stream) next() sseparse.Block {
	s.t.Helper()
	b, err := s.nextWithin(wait)
	if err != nil {
		s.t.Fatalf("waiting for a block: %v", err)
	}
	return b
}

func (s *stream) nextWithin(d time.Duration) (sseparse.Block, error) {
	deadline := time.Now().Add(d)
	for {
		if b, ok := s.p.Next(); ok {
			return b, nil
		}
		_ = s.conn.SetReadDeadline(deadline)
		k, err := s.conn.Read(s.buf)
		s.p.Feed(s.buf[:k])
		if err != nil {
			if b, ok := s.p.Next(); ok {
				return b, nil
			}
			return sseparse.Block{}, err
		}
	}
}

// events reads k events and returns them as "id:data"; a comment block
// (": replay-gap") is returned as "#comment".
func (s *stream) events(k int) []string {
	s.t.Helper()
	var got []string
	for len(got) < k {
		b := s.next()
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
	s.t.Helper()
	deadline := time.Now().Add(d)
	for {
		b, err := s.nextWithin(time.Until(deadline))
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return
			}
			s.t.Fatalf("stream failed: %v", err)
		}
		if b.Raw != ": keep-alive\n\n" {
			s.t.Fatalf("unexpected block %q", b.Raw)
		}
	}
}

// waitFor polls cond until it holds or wait passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// on returns s reporting to t (a subtest).
func (s *stream) on(t testing.TB) *stream {
	c := *s
	c.t = t
	return &c
}
