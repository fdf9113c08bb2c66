package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tinysse/tinysse/internal/sseparse"
	"github.com/tinysse/tinysse/internal/testserver"
)

// The fault tests run what a user runs: three nats-server processes in one
// JetStream cluster with real routes (the nats-server of go.mod, run by
// this test binary as its main would, or TINYSSE_TEST_NATS_SERVER's
// binary), three tinysse processes
// (the built binary) with --nats --auto-id --nats-replicas 3, subscribers
// that know all three nodes and move to the next with Last-Event-ID when
// their stream ends, and a publisher posting round-robin with an
// Idempotency-Key, while a fault is made and healed. Everything is on
// 127.0.0.1. Each case ends with the same checks (checkRun).
//
// TINYSSE_TEST_FAULT_LONG=1 runs the full size (300 subscribers,
// 10,000 messages); the default is a short version for CI.
// TINYSSE_TEST_FAULT_TRACE=1 logs every publish attempt around the fault;
// TINYSSE_TEST_FAULT_NODE_ARGS adds options to every tinysse node
// (--nats-publish-timeout 12s, say).

// asNATSServer, set in a child's environment, makes this test binary run
// nats-server's main with the arguments it names (space-separated).
const asNATSServer = "TINYSSE_TEST_AS_NATS_SERVER"

func TestMain(m *testing.M) {
	if args := os.Getenv(asNATSServer); args != "" {
		natsServerMain(strings.Fields(args))
		return
	}
	code := m.Run()
	testserver.RemoveBinary()
	os.Exit(code)
}

// natsServerMain is what nats-server's main does, so that this binary can
// be a nats-server process (one link fewer than building it).
func natsServerMain(args []string) {
	fs := flag.NewFlagSet("nats-server", flag.ExitOnError)
	opts, err := server.ConfigureOptions(fs, args, server.PrintServerAndExit, fs.Usage, server.PrintTLSHelpAndDie)
	if err != nil {
		server.PrintAndDie("nats-server: " + err.Error())
	}
	s, err := server.NewServer(opts)
	if err != nil {
		server.PrintAndDie("nats-server: " + err.Error())
	}
	s.ConfigureLogger()
	if err := server.Run(s); err != nil {
		server.PrintAndDie(err.Error())
	}
	s.WaitForShutdown()
	os.Exit(0)
}

// buildBinaries returns the tinysse binary, and the nats-server command
// with the environment it needs: TINYSSE_TEST_NATS_SERVER's binary, or
// this test binary as nats-server.
func buildBinaries(t *testing.T) (tinysse string, natsServer natsCommand) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds binaries and runs processes")
	}
	tinysse = testserver.Binary(t)
	if bin := os.Getenv("TINYSSE_TEST_NATS_SERVER"); bin != "" {
		return tinysse, natsCommand{bin: bin}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return tinysse, natsCommand{bin: self, asEnv: true}
}

// natsCommand runs a nats-server: bin with the server's arguments, or
// (asEnv) bin with them in asNATSServer.
type natsCommand struct {
	bin   string
	asEnv bool
}

// proc is the process of a server run with args.
func (c natsCommand) proc(t *testing.T, name string, args ...string) proc {
	p := proc{t: t, name: name, bin: c.bin, args: args, log: &testserver.Buffer{Max: 4 << 20}}
	if c.asEnv {
		p.args = nil
		p.env = []string{asNATSServer + "=" + strings.Join(args, " ")}
	}
	return p
}

// proc is a child process the test started; it is killed at cleanup if
// still running.
type proc struct {
	t      *testing.T
	name   string
	bin    string
	args   []string
	env    []string // added to the test's environment, whose TINYSSE_* are left out
	log    *testserver.Buffer
	cmd    *exec.Cmd
	exited chan struct{}
}

func (p *proc) start() {
	p.t.Helper()
	cmd := exec.Command(p.bin, p.args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TINYSSE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, p.env...)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(p.exited)
}

// running reports whether the process was started and has not exited.
func (p *proc) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// signal sends sig to the process (this test's child, by its pid).
func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if !p.running() {
		p.t.Fatalf("%s is not running", p.name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
}

// kill9 kills the process with SIGKILL and waits for it.
func (p *proc) kill9() {
	p.t.Helper()
	p.signal(syscall.SIGKILL)
	<-p.exited
}

// stop asks the process to stop (SIGTERM) and waits up to 15s, then kills it.
func (p *proc) stop() {
	p.t.Helper()
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(sigCont) // a stopped process cannot act on SIGTERM
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		p.t.Errorf("%s did not stop after SIGTERM; killed", p.name)
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *proc) cleanup() {
	if p.running() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// natsNode is one nats-server of the test cluster.
type natsNode struct {
	proc
	port, httpPort int
}

func (n *natsNode) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// healthy reports whether the server's /healthz says JetStream is current.
func (n *natsNode) healthy() bool {
	resp, err := quickHTTP.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", n.httpPort))
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// metaLeader is the name of the JetStream meta leader as n sees it ("" if
// none).
func (n *natsNode) metaLeader() string {
	l, _ := n.meta()
	return l
}

// meta reads the meta group's leader as this server sees it and, when it
// is the leader, how many of its peers it finds current.
func (n *natsNode) meta() (leader string, current int) {
	resp, err := quickHTTP.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz", n.httpPort))
	if err != nil {
		return "", 0
	}
	defer resp.Body.Close()
	var jsz struct {
		Meta struct {
			Leader   string `json:"leader"`
			Replicas []struct {
				Current bool `json:"current"`
				Offline bool `json:"offline"`
			} `json:"replicas"`
		} `json:"meta_cluster"`
	}
	if json.NewDecoder(resp.Body).Decode(&jsz) != nil {
		return "", 0
	}
	for _, r := range jsz.Meta.Replicas {
		if r.Current && !r.Offline {
			current++
		}
	}
	return jsz.Meta.Leader, current
}

var quickHTTP = &http.Client{Timeout: 2 * time.Second}

// natsCluster is three nats-server processes routed to each other, with
// no_advertise so that clients reach only the URLs they are given (a
// node behind a proxy stays behind it).
type natsCluster struct {
	t       *testing.T
	servers []*natsNode
}

func startNATSCluster(t *testing.T, cmd natsCommand) *natsCluster {
	t.Helper()
	// The ports are picked free and bound a moment later by the servers;
	// meanwhile another process (this test's own clients, whose ports come
	// from the same range) may take one, and that server exits at start.
	// A cluster of two would then refuse every three-replica stream ("no
	// suitable peers for placement"), so a cluster that did not start
	// whole is stopped and made again on new ports.
	for try := 1; ; try++ {
		c := tryNATSCluster(t, cmd)
		if c.waitAllHealthy(60 * time.Second) {
			// Whatever fails later, from a tinysse node that cannot
			// start to a lost message, the servers' own words are shown.
			t.Cleanup(func() {
				if t.Failed() {
					c.logs()
				}
			})
			return c
		}
		if try == 3 {
			c.logs()
			t.Fatalf("the NATS cluster did not start whole in %d tries", try)
		}
		for _, n := range c.servers {
			if !n.running() {
				t.Logf("%s exited at start; making the cluster again on new ports:\n%s", n.name, tail(n.log.String(), 5))
			}
			n.stop()
		}
	}
}

// waitAllHealthy is waitHealthy at start-up, when every server must run:
// false as soon as one has exited.
func (c *natsCluster) waitAllHealthy(d time.Duration) bool {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, n := range c.servers {
			if !n.running() {
				return false
			}
		}
		if c.healthyNow() {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.logs()
	c.t.Fatalf("the NATS cluster did not become healthy within %v", d)
	return false
}

// tryNATSCluster writes the three servers' configurations on fresh ports
// and starts them.
func tryNATSCluster(t *testing.T, cmd natsCommand) *natsCluster {
	t.Helper()
	const k = 3
	c := &natsCluster{t: t}
	routePorts := make([]int, k)
	for i := range routePorts {
		routePorts[i] = testserver.FreePort(t)
	}
	dir := t.TempDir()
	for i := range k {
		n := &natsNode{port: testserver.FreePort(t), httpPort: testserver.FreePort(t)}
		var routes []string
		for j, p := range routePorts {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
			}
		}
		conf := fmt.Sprintf(`server_name: n%d
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
jetstream { store_dir: %q }
cluster {
  name: tinysse-test
  listen: 127.0.0.1:%d
  routes: [%s]
  no_advertise: true
}
`, i, n.port, n.httpPort, filepath.Join(dir, fmt.Sprintf("n%d", i)), routePorts[i], strings.Join(routes, ", "))
		file := filepath.Join(dir, fmt.Sprintf("n%d.conf", i))
		if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		n.proc = cmd.proc(t, fmt.Sprintf("nats n%d", i), "-c", file)
		c.servers = append(c.servers, n)
		t.Cleanup(n.cleanup)
	}
	for _, n := range c.servers {
		n.start()
	}
	return c
}

// waitHealthy waits until every running server reports JetStream current
// and they agree on a meta leader.
func (c *natsCluster) waitHealthy(d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for !c.healthyNow() {
		if time.Now().After(deadline) {
			c.logs()
			c.t.Fatalf("the NATS cluster did not become healthy within %v", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// healthyNow: every running server healthy, one meta leader for all, and
// the leader finds every other running server current: before that, a
// stream of three replicas cannot be placed ("no suitable peers for
// placement", seen for a minute on a loaded machine).
func (c *natsCluster) healthyNow() bool {
	leader, running, peers := "", 0, -1
	for _, n := range c.servers {
		if !n.running() {
			continue
		}
		running++
		l, current := n.meta()
		if !n.healthy() || l == "" || leader != "" && l != leader {
			return false
		}
		leader = l
		if n.name == "nats "+l {
			peers = current
		}
	}
	return peers >= running-1
}

func (c *natsCluster) urls() []string {
	var u []string
	for _, n := range c.servers {
		u = append(u, n.url())
	}
	return u
}

func (c *natsCluster) byName(name string) *natsNode {
	for i, n := range c.servers {
		if name == fmt.Sprintf("n%d", i) {
			return n
		}
	}
	return nil
}

// client connects the test to the cluster (for leader queries).
func (c *natsCluster) client() (jetstream.JetStream, func()) {
	c.t.Helper()
	nc, err := nats.Connect(strings.Join(c.urls(), ","), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		c.t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	return js, nc.Close
}

// streamLeader is the server leading stream "tinysse" now.
func (c *natsCluster) streamLeader(js jetstream.JetStream) *natsNode {
	c.t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if n := c.streamLeaderOrNil(js); n != nil {
			return n
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatal("no stream leader")
	return nil
}

// streamLeaderOrNil asks once who leads the stream; nil if nobody does
// or the question went unanswered.
func (c *natsCluster) streamLeaderOrNil(js jetstream.JetStream) *natsNode {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "tinysse")
	var info *jetstream.StreamInfo
	if err == nil {
		info, err = s.Info(ctx)
	}
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
		return nil
	}
	return c.byName(info.Cluster.Leader)
}

// leaderOfBoth moves the stream's leadership (by step-downs) until one
// server leads both the stream and the JetStream meta group, and returns
// it: killing it makes both elect at once. If the step-downs do not get
// there, it returns the stream leader and says so.
func (c *natsCluster) leaderOfBoth(js jetstream.JetStream) (n *natsNode, both bool) {
	c.t.Helper()
	for range 12 {
		n = c.streamLeader(js)
		if n.metaLeader() == n.name[len("nats "):] {
			return n, true
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, _ = js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN.tinysse", nil)
		cancel()
		time.Sleep(500 * time.Millisecond)
		c.waitStreamCurrent(js)
	}
	return c.streamLeader(js), false
}

// waitStreamCurrent waits until the stream has a leader and every replica
// is current.
func (c *natsCluster) waitStreamCurrent(js jetstream.JetStream) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s, err := js.Stream(ctx, "tinysse")
		var info *jetstream.StreamInfo
		if err == nil {
			info, err = s.Info(ctx)
		}
		cancel()
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" && len(info.Cluster.Replicas) == 2 &&
			!slices.ContainsFunc(info.Cluster.Replicas, func(p *jetstream.PeerInfo) bool { return !p.Current || p.Offline }) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatal("the stream's replicas did not become current")
}

func (c *natsCluster) logs() {
	for _, n := range c.servers {
		c.t.Logf("--- %s log:\n%s", n.name, tail(n.log.String(), 60))
	}
}

// tail is the last k lines of s.
func tail(s string, k int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-k):], "\n")
}

// proxy forwards a loopback port to a NATS server, and can cut every
// connection through it and refuse new ones until restored: a tinysse
// node behind it loses NATS while the cluster goes on.
type proxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]bool
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target, conns: map[net.Conn]bool{}}
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.setCut(true)
	})
	return p
}

func (p *proxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.serve(c)
	}
}

func (p *proxy) serve(c net.Conn) {
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.conns[c] = true
	p.mu.Unlock()
	up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		p.drop(c)
		return
	}
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		up.Close()
		p.drop(c)
		return
	}
	p.conns[up] = true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	p.drop(c)
	p.drop(up)
}

func (p *proxy) drop(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// setCut cuts (closing every connection, refusing new ones) or restores.
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	p.cut = cut
	var conns []net.Conn
	if cut {
		for c := range p.conns {
			conns = append(conns, c)
		}
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// sseNode is one tinysse process in cluster mode.
type sseNode struct {
	proc
	addr string
}

func startSSENode(t *testing.T, bin string, natsURLs []string, extra ...string) *sseNode {
	t.Helper()
	addr := testserver.FreeAddr(t)
	args := append([]string{"--listen", addr, "--nats", strings.Join(natsURLs, ","), "--nats-replicas", "3", "--auto-id",
		"--log-level", "INFO", "--shutdown-timeout", "2s", "--timeout-retry", "200ms", "--no-dashboard"}, extra...)
	args = append(args, strings.Fields(os.Getenv("TINYSSE_TEST_FAULT_NODE_ARGS"))...)
	n := &sseNode{proc: proc{t: t, name: "tinysse " + addr, bin: bin, args: args, log: &testserver.Buffer{Max: 4 << 20}}, addr: addr}
	t.Cleanup(n.cleanup)
	n.restart()
	return n
}

// restart starts the process (again) and waits until it listens. A node
// that exits at start (NATS did not make its stream within 30s: a loaded
// machine) is started again, as a supervisor would, up to three times.
func (n *sseNode) restart() {
	n.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for try := 1; ; try++ {
		n.start()
		for {
			c, err := net.DialTimeout("tcp", n.addr, time.Second)
			if err == nil {
				c.Close()
				return
			}
			if !n.running() && try < 3 {
				n.t.Logf("%s exited at start; starting it again:\n%s", n.name, tail(n.log.String(), 5))
				break
			}
			if !n.running() || time.Now().After(deadline) {
				n.t.Fatalf("%s never listened: %v\n%s", n.name, err, tail(n.log.String(), 40))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// follower is a subscriber that knows every node: when its stream ends it
// moves to the next node and resumes with Last-Event-ID, as a client
// behind a load balancer would.
type follower struct {
	home  int
	nodes []*sseNode
	topic string

	mu      sync.Mutex
	ids     []uint64 // the ids received, in order
	msgs    []int    // the message number of each (from its data "m<n>")
	gaps    int      // ": replay-gap" comments
	later   int      // streams ended with ": replay-unavailable"
	moves   int      // reconnections
	errs    []string // protocol faults seen (bad id, bad data)
	lastOK  time.Time
	ended   []time.Time // when each stream ended
	resumed []time.Time // when each reconnection got its ": ok"
}

func (f *follower) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.ids)
}

// run follows until stop is closed. ready gets one value at the first
// ": ok".
func (f *follower) run(stop <-chan struct{}, ready chan<- struct{}) {
	node := f.home
	first := true
	buf := make([]byte, 32<<10)
	for {
		select {
		case <-stop:
			return
		default:
		}
		retry := f.stream(f.nodes[node], stop, buf, &first, ready)
		f.mu.Lock()
		f.moves++
		f.ended = append(f.ended, time.Now())
		f.mu.Unlock()
		node = (node + 1) % len(f.nodes)
		select {
		case <-stop:
			return
		case <-time.After(retry):
		}
	}
}

// stream reads one connection until it ends, and returns how long to wait
// before the next.
func (f *follower) stream(n *sseNode, stop <-chan struct{}, buf []byte, first *bool, ready chan<- struct{}) time.Duration {
	retry := 100 * time.Millisecond
	c, err := net.DialTimeout("tcp", n.addr, time.Second)
	if err != nil {
		return retry
	}
	defer c.Close()
	go func() {
		<-stop
		c.Close()
	}()
	f.mu.Lock()
	last := ""
	if len(f.ids) > 0 {
		last = strconv.FormatUint(f.ids[len(f.ids)-1], 10)
	}
	f.mu.Unlock()
	req := "GET /sse?topic=" + f.topic + " HTTP/1.1\r\nHost: x\r\n"
	if last != "" {
		req += "Last-Event-ID: " + last + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		return retry
	}
	var head []byte
	for !bytes.Contains(head, []byte("\r\n\r\n")) {
		_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
		k, err := c.Read(buf)
		head = append(head, buf[:k]...)
		if err != nil {
			return retry
		}
	}
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 200")) {
		return retry // a refusal: try the next node
	}
	p := sseparse.New()
	p.Feed(head[bytes.Index(head, []byte("\r\n\r\n"))+4:])
	for {
		for {
			b, ok := p.Next()
			if !ok {
				break
			}
			p.Events, p.Comments = p.Events[:0], p.Comments[:0]
			if b.Retry >= 0 {
				retry = time.Duration(b.Retry) * time.Millisecond
			}
			f.take(b, first, ready)
		}
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		k, err := c.Read(buf)
		p.Feed(buf[:k])
		if err != nil {
			for b, ok := p.Next(); ok; b, ok = p.Next() {
				f.take(b, first, ready)
			}
			return retry
		}
	}
}

func (f *follower) take(b sseparse.Block, first *bool, ready chan<- struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range b.Comments {
		switch c {
		case "ok":
			f.lastOK = time.Now()
			if *first {
				*first = false
				ready <- struct{}{}
			} else {
				f.resumed = append(f.resumed, f.lastOK)
			}
		case "replay-gap":
			f.gaps++
		case "replay-unavailable":
			f.later++
		}
	}
	if b.Event == nil {
		return
	}
	id, err := strconv.ParseUint(b.Event.LastEventID, 10, 64)
	num, err2 := strconv.Atoi(strings.TrimPrefix(b.Event.Data, "m"))
	if err != nil || err2 != nil || !strings.HasPrefix(b.Event.Data, "m") {
		f.errs = append(f.errs, fmt.Sprintf("event %q", b.Raw))
		return
	}
	if len(f.ids) > 0 && id <= f.ids[len(f.ids)-1] {
		f.errs = append(f.errs, fmt.Sprintf("id %d after %d (data %s)", id, f.ids[len(f.ids)-1], b.Event.Data))
	}
	f.ids = append(f.ids, id)
	f.msgs = append(f.msgs, num)
}

// Outcomes of one message, as the publisher saw its answers.
const (
	pubPending   = iota // not sent yet, or no final answer
	pubAccepted         // a 202 (maybe after retries with its key)
	pubRefused          // a 503: JetStream did not store it; never sent again
	pubUncertain        // no answer that settles it when the run ended (504s, cut connections)
)

// attempt is one POST of a message.
type attempt struct {
	msg        int
	node       int
	start, end time.Time
	status     int // 0: no answer (connection refused or cut)
}

// publisher posts messages m0, m1, ... round-robin over the nodes at a
// steady rate, each with the Idempotency-Key "key-<n>", without waiting
// for earlier answers (up to inFlight at once): so a publish starts every
// 1/rate even while JetStream elects, and the 503 window is seen. A 503
// settles a message as not stored (it is never sent again); no answer or
// a 504 means it may be stored, so it is sent again with the same key to
// the next node, until a 202 or a 503.
type publisher struct {
	nodes  []*sseNode
	topic  string
	client *http.Client
	every  time.Duration // between message starts
	slots  chan struct{} // one per publish in flight

	mu       sync.Mutex
	outcome  []int
	attempts []attempt
	sent     atomic.Int64 // messages started
}

func newPublisher(nodes []*sseNode, topic string, total, inFlight int, rate float64) *publisher {
	return &publisher{
		nodes: nodes, topic: topic,
		every:   time.Duration(float64(time.Second) / rate),
		slots:   make(chan struct{}, inFlight),
		outcome: make([]int, total),
		client: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: inFlight, ResponseHeaderTimeout: 15 * time.Second,
		}},
	}
}

// run publishes every message, then returns when all are settled.
func (p *publisher) run() {
	var wg sync.WaitGroup
	tick := time.NewTicker(p.every)
	defer tick.Stop()
	for i := range p.outcome {
		p.slots <- struct{}{}
		p.sent.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.publish(i)
			<-p.slots
		}()
		<-tick.C
	}
	wg.Wait()
}

func (p *publisher) publish(msg int) {
	body := fmt.Sprintf(`{"data":"m%d"}`, msg)
	key := fmt.Sprintf("key-%d", msg)
	outcome := pubUncertain
	for try := 0; try < 40; try++ {
		node := (msg + try) % len(p.nodes)
		a := attempt{msg: msg, node: node, start: time.Now()}
		req, _ := http.NewRequest(http.MethodPost, "http://"+p.nodes[node].addr+"/sse?topic="+p.topic, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := p.client.Do(req)
		if err == nil {
			a.status = resp.StatusCode
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		a.end = time.Now()
		p.mu.Lock()
		p.attempts = append(p.attempts, a)
		p.mu.Unlock()
		if a.status == http.StatusAccepted {
			outcome = pubAccepted
			break
		}
		if a.status == http.StatusServiceUnavailable {
			outcome = pubRefused
			break
		}
		time.Sleep(100 * time.Millisecond) // no answer, or 504: the same key again, elsewhere
	}
	p.mu.Lock()
	p.outcome[msg] = outcome
	p.mu.Unlock()
}

// runFigures are what a case measured, for its log line and BENCHMARKS.md.
type runFigures struct {
	accepted, refused, uncertain int
	attempts                     int
	window503                    time.Duration // from the first request answered 503 to the last one, by when they were sent (0: none)
	first503                     time.Duration // when the first of them was sent, after the fault
	maxLatency                   time.Duration // the slowest 202
	longestStall                 time.Duration // the longest time without a 202 answered, after the fault
	resume                       time.Duration // fault to the last moved subscriber's ": ok" elsewhere (0: none moved)
	checked                      int           // 202s times subscribers: deliveries checked
	moves, later                 int
	// From the nodes' /metrics at the end (a node killed meanwhile
	// counts from its restart): publish attempts retried inside a node,
	// acknowledgements of a copy already stored (a retry after a lost
	// answer), consumers lost and made again.
	retries, duplicates, consumersLost int
}

func (r runFigures) String() string {
	return fmt.Sprintf("publishes: %d answered 202, %d answered 503 (sent in a window of %v from %v after the fault), %d unsettled; %d POSTs; slowest 202 %v; longest time without a 202 after the fault %v; subscribers: %d reconnections (%d told to come back), the last resumed %v after the fault; %d deliveries checked",
		r.accepted, r.refused, r.window503.Round(time.Millisecond), r.first503.Round(time.Millisecond), r.uncertain, r.attempts, r.maxLatency.Round(time.Millisecond),
		r.longestStall.Round(time.Millisecond), r.moves, r.later, r.resume.Round(time.Millisecond), r.checked) +
		fmt.Sprintf("; nodes: %d attempts retried inside, %d duplicate acknowledgements, %d consumers lost and made again", r.retries, r.duplicates, r.consumersLost)
}

// metricOf is the value of the series named exactly name in a /metrics
// answer ("200 <body>"), 0 if absent.
func metricOf(body, name string) float64 {
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// faultSize is a case's size: the issue's, or a short one for CI.
type faultSize struct {
	subscribers, messages, inFlight int
	rate                            float64 // messages per second
}

func sizeOf(t *testing.T) faultSize {
	if os.Getenv("TINYSSE_TEST_FAULT_LONG") != "" {
		return faultSize{subscribers: 300, messages: 10000, inFlight: 512, rate: 200}
	}
	if raceEnabled {
		t.Skip("processes, not this binary, do the work: run without -race")
	}
	return faultSize{subscribers: 30, messages: 1200, inFlight: 256, rate: 100}
}

// faultRun is one case: the cluster, the nodes, the clients.
type faultRun struct {
	t         *testing.T
	size      faultSize
	nats      *natsCluster
	nodes     []*sseNode
	followers []*follower
	pub       *publisher
	stopSubs  chan struct{}
	published chan struct{}
	fault     time.Time // when the fault was made
}

// startRun starts the cluster, three nodes (node 2 behind proxies when
// proxied is set) and the subscribers, and waits until all are connected.
func startRun(t *testing.T, proxied bool) (*faultRun, []*proxy) {
	t.Helper()
	tinysse, natsBin := buildBinaries(t)
	r := &faultRun{t: t, size: sizeOf(t), stopSubs: make(chan struct{}), published: make(chan struct{})}
	r.nats = startNATSCluster(t, natsBin)
	urls := r.nats.urls()
	var proxies []*proxy
	for i := range 3 {
		u := slices.Clone(urls)
		if i == 2 && proxied {
			for j, target := range urls {
				p := startProxy(t, strings.TrimPrefix(target, "nats://"))
				proxies = append(proxies, p)
				u[j] = p.url()
			}
		}
		r.nodes = append(r.nodes, startSSENode(t, tinysse, u))
	}
	t.Cleanup(func() {
		close(r.stopSubs)
		if t.Failed() { // (the NATS servers' logs: startNATSCluster)
			for _, n := range r.nodes {
				t.Logf("--- %s log:\n%s", n.name, tail(n.log.String(), 60))
			}
		}
	})
	ready := make(chan struct{}, r.size.subscribers)
	for i := range r.size.subscribers {
		f := &follower{home: i % 3, nodes: r.nodes, topic: "f"}
		r.followers = append(r.followers, f)
		go f.run(r.stopSubs, ready)
	}
	for range r.size.subscribers {
		select {
		case <-ready:
		case <-time.After(30 * time.Second):
			t.Fatal("subscribers did not connect")
		}
	}
	r.pub = newPublisher(r.nodes, "f", r.size.messages, r.size.inFlight, r.size.rate)
	return r, proxies
}

// publish starts the publisher and returns once a quarter of the messages
// is out: the moment to make the fault.
func (r *faultRun) publish() {
	go func() {
		r.pub.run()
		close(r.published)
	}()
	for r.pub.sent.Load() < int64(r.size.messages/4) {
		time.Sleep(10 * time.Millisecond)
	}
	r.fault = time.Now()
}

// finish waits for the publisher, then until every subscriber has every
// accepted message (or 60s), then checks the invariants and returns the
// figures:
//   - every message answered 202 reaches every subscriber exactly once;
//   - a message answered 503 reaches nobody;
//   - every subscriber sees the same messages with the same ids, ids
//     increasing (one global order), no duplicate, no gap (no message is
//     lost to retention here, so no ": replay-gap" either).
func (r *faultRun) finish() runFigures {
	t := r.t
	t.Helper()
	select {
	case <-r.published:
	case <-time.After(10 * time.Minute):
		t.Fatal("the publisher did not finish")
	}
	r.pub.mu.Lock()
	outcome := slices.Clone(r.pub.outcome)
	attempts := slices.Clone(r.pub.attempts)
	r.pub.mu.Unlock()
	accepted := 0
	for _, o := range outcome {
		if o == pubAccepted {
			accepted++
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		behind := 0
		for _, f := range r.followers {
			if f.count() < accepted {
				behind++
			}
		}
		if behind == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d subscribers still lack messages 60s after the last publish", behind)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // anything extra (a duplicate) has arrived too

	// One global order: every id names one message and every message one id.
	idOf := map[int]uint64{}
	msgOf := map[uint64]int{}
	fig := runFigures{attempts: len(attempts)}
	for i, f := range r.followers {
		f.mu.Lock()
		for _, e := range f.errs {
			t.Errorf("subscriber %d: %s", i, e)
		}
		if f.gaps > 0 {
			t.Errorf("subscriber %d: %d replay gaps", i, f.gaps)
		}
		fig.moves += f.moves
		fig.later += f.later
		for _, at := range f.resumed {
			if at.After(r.fault) {
				fig.resume = max(fig.resume, at.Sub(r.fault))
			}
		}
		seen := map[int]bool{}
		for j, id := range f.ids {
			m := f.msgs[j]
			if seen[m] {
				t.Errorf("subscriber %d: m%d twice (the second as id %d)", i, m, id)
			}
			seen[m] = true
			if prev, ok := msgOf[id]; ok && prev != m {
				t.Errorf("id %d is m%d for one subscriber, m%d for subscriber %d", id, prev, m, i)
			}
			msgOf[id] = m
			if prev, ok := idOf[m]; ok && prev != id {
				t.Errorf("m%d has id %d and id %d (subscriber %d): stored twice", m, prev, id, i)
			}
			idOf[m] = id
		}
		for m, o := range outcome {
			switch {
			case o == pubAccepted && !seen[m]:
				t.Errorf("subscriber %d: m%d was answered 202 and never arrived", i, m)
			case o == pubRefused && seen[m]:
				t.Errorf("subscriber %d: m%d was answered 503 and arrived", i, m)
			case o == pubPending && seen[m]:
				t.Errorf("subscriber %d: m%d was never sent and arrived", i, m)
			}
		}
		f.mu.Unlock()
	}
	// Every subscriber has the same list (the global one): ids increase
	// along each (checked as they arrived), so equal sets are equal lists.
	for i, f := range r.followers {
		if n := f.count(); n != len(msgOf) {
			t.Errorf("subscriber %d has %d messages, the union of all is %d", i, n, len(msgOf))
		}
	}

	if os.Getenv("TINYSSE_TEST_FAULT_TRACE") != "" {
		for _, a := range attempts {
			if a.end.After(r.fault.Add(-50*time.Millisecond)) && a.start.Before(r.fault.Add(30*time.Second)) {
				t.Logf("m%d node %d: %v .. %v: %d", a.msg, a.node, a.start.Sub(r.fault).Round(time.Millisecond), a.end.Sub(r.fault).Round(time.Millisecond), a.status)
			}
		}
	}
	var first503, last503 time.Time
	var lastAccept time.Time
	var accepts []time.Time
	for _, a := range attempts {
		switch a.status {
		case http.StatusAccepted:
			fig.maxLatency = max(fig.maxLatency, a.end.Sub(a.start))
			accepts = append(accepts, a.end)
		case http.StatusServiceUnavailable:
			if first503.IsZero() || a.start.Before(first503) {
				first503 = a.start
			}
			if a.start.After(last503) {
				last503 = a.start
			}
		}
	}
	if !first503.IsZero() {
		fig.window503 = last503.Sub(first503)
		fig.first503 = first503.Sub(r.fault)
	}
	slices.SortFunc(accepts, func(a, b time.Time) int { return a.Compare(b) })
	lastAccept = r.fault
	for _, at := range accepts {
		if at.After(r.fault) {
			fig.longestStall = max(fig.longestStall, at.Sub(lastAccept))
			lastAccept = at
		}
	}
	for _, o := range outcome {
		switch o {
		case pubAccepted:
			fig.accepted++
		case pubRefused:
			fig.refused++
		default:
			fig.uncertain++
		}
	}
	fig.checked = fig.accepted * len(r.followers)
	for _, n := range r.nodes {
		if n.running() {
			m := getBody(t, "http://"+n.addr+"/metrics")
			fig.retries += int(metricOf(m, "tinysse_nats_publish_retries_total"))
			fig.duplicates += int(metricOf(m, "tinysse_nats_publish_duplicates_total"))
			fig.consumersLost += int(metricOf(m, "tinysse_nats_consumer_errors_total"))
		}
	}
	if fig.accepted == 0 {
		t.Error("nothing was accepted")
	}
	return fig
}

// report logs the figures of a case.
func (r *faultRun) report(name string, fig runFigures, extra string) {
	r.t.Helper()
	r.t.Logf("%s (%d subscribers, %d messages, NATS %s): %v%s", name, len(r.followers), r.size.messages, natsVersion(), fig, extra)
}

// natsVersion names the nats-server the cases run.
func natsVersion() string {
	if bin := os.Getenv("TINYSSE_TEST_NATS_SERVER"); bin != "" {
		out, _ := exec.Command(bin, "--version").Output()
		return strings.TrimSpace(string(out))
	}
	return "v2.15.2 (go.mod)"
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, b)
}
