//go:build unix

package cluster_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tinysse/tinysse/internal/testserver"
)

// The fault cases (faultharness_test.go): each makes one fault while
// messages flow and ends with faultRun.finish's checks. Run them with
// go test -run Fault ./cluster/... (TINYSSE_TEST_FAULT_LONG=1 for the
// issue's full size).

// kill -9 one tinysse node mid-stream: its subscribers resume on the
// others with Last-Event-ID; its in-flight publishes lose their answers and
// are sent again with their keys (stored once); it comes back 3s later.
func TestFaultKillNode(t *testing.T) {
	r, _ := startRun(t, false)
	r.publish()
	r.nodes[0].kill9()
	time.Sleep(3 * time.Second)
	r.nodes[0].restart()
	fig := r.finish()
	moved := 0
	for _, f := range r.followers {
		if f.home == 0 && len(f.resumed) == 0 {
			t.Errorf("a subscriber of the killed node never resumed elsewhere")
		}
		if f.home == 0 {
			moved++
		}
	}
	r.report("kill -9 a tinysse node", fig, fmt.Sprintf("; %d subscribers moved", moved))
}

// kill -9 the NATS server that leads both the JetStream meta group and
// the stream: publishes wait (retried with the same message id) or get
// 503 only while the others elect; none is lost or stored twice. It comes
// back 5s later and catches up.
func TestFaultKillLeader(t *testing.T) {
	r, _ := startRun(t, false)
	js, closeJS := r.nats.client()
	defer closeJS()
	r.nats.waitStreamCurrent(js)
	leader, both := r.nats.leaderOfBoth(js)
	r.publish()
	leader.kill9()
	killed := time.Now()
	// The others elect: wait for a new stream leader, and note when.
	var elected time.Duration
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if n := r.nats.streamLeaderOrNil(js); n != nil && n != leader {
			elected = time.Since(killed)
			break
		}
	}
	if elected == 0 {
		t.Fatal("no new stream leader within 60s")
	}
	time.Sleep(max(0, 5*time.Second-time.Since(killed)))
	leader.start()
	fig := r.finish()
	r.nats.waitHealthy(60 * time.Second)
	what := "the stream leader"
	if both {
		what = "the meta and stream leader"
	}
	r.report("kill -9 "+what, fig, fmt.Sprintf("; new stream leader seen %v after the kill", elected.Round(time.Millisecond)))
}

// SIGSTOP the stream's leader for 10s, then SIGCONT: the nodes connected
// to it find it silent (pings), move to another server, and publish there
// once the others have elected.
func TestFaultStopServer(t *testing.T) {
	r, _ := startRun(t, false)
	js, closeJS := r.nats.client()
	defer closeJS()
	r.nats.waitStreamCurrent(js)
	leader := r.nats.streamLeader(js)
	r.publish()
	leader.signal(syscall.SIGSTOP)
	time.Sleep(10 * time.Second)
	leader.signal(syscall.SIGCONT)
	fig := r.finish()
	r.nats.waitHealthy(60 * time.Second)
	r.report("SIGSTOP the stream leader for 10s", fig, "")
}

// Restart the three NATS servers one after the other (a rolling upgrade):
// each is stopped (SIGTERM), started again on its store, and the next
// waits until the cluster is healthy and the stream current again.
func TestFaultRollingRestart(t *testing.T) {
	r, _ := startRun(t, false)
	js, closeJS := r.nats.client()
	defer closeJS()
	r.nats.waitStreamCurrent(js)
	r.publish()
	start := time.Now()
	for _, n := range r.nats.servers {
		n.stop()
		time.Sleep(time.Second)
		n.start()
		r.nats.waitHealthy(60 * time.Second)
		r.nats.waitStreamCurrent(js)
	}
	took := time.Since(start)
	fig := r.finish()
	r.report("rolling restart of the three NATS servers", fig, fmt.Sprintf("; the three restarts took %v", took.Round(time.Millisecond)))
}

// A tinysse node that loses NATS (every connection to it cut for 5s while
// the cluster goes on): it keeps its subscribers' streams, answers its
// publishes 503 with a JSON error, says so on /healthz, reconnects by
// itself, and catches up from the stream: its subscribers miss nothing
// the other nodes accepted meanwhile.
func TestFaultNodeLosesNATS(t *testing.T) {
	r, proxies := startRun(t, true)
	cut := r.nodes[2]
	r.publish()
	for _, p := range proxies {
		p.setCut(true)
	}
	// While cut: 503 JSON on publish, "nats":"disconnected" on /healthz.
	deadline := time.Now().Add(wait)
	var health string
	for time.Now().Before(deadline) {
		if health = getBody(t, "http://"+cut.addr+"/healthz"); strings.Contains(health, `"nats":"disconnected"`) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(health, `"nats":"disconnected"`) {
		t.Errorf("/healthz of the cut node says %s", health)
	}
	resp, err := http.Post("http://"+cut.addr+"/sse?topic=other", "application/json", strings.NewReader(`{"data":"while cut"}`))
	if err != nil {
		t.Fatal(err)
	}
	var e struct{ Error string }
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || json.Unmarshal(body, &e) != nil || e.Error == "" {
		t.Errorf("publish to the cut node: %d %s, want 503 with a JSON error", resp.StatusCode, body)
	}
	time.Sleep(time.Until(r.fault.Add(5 * time.Second)))
	r.pub.mu.Lock()
	acceptedBefore, meanwhile := 0, 0
	for m, o := range r.pub.outcome {
		if o == pubAccepted {
			acceptedBefore++
			if m >= r.size.messages/4 {
				meanwhile++
			}
		}
	}
	r.pub.mu.Unlock()
	for _, p := range proxies {
		p.setCut(false)
	}
	restored := time.Now()
	// Caught up: its subscribers have what was accepted before the link
	// came back.
	var caughtUp time.Duration
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		behind := false
		for _, f := range r.followers {
			if f.home == 2 && f.count() < acceptedBefore {
				behind = true
			}
		}
		if !behind {
			caughtUp = time.Since(restored)
			break
		}
	}
	fig := r.finish()
	// Its streams stay open while it is cut off, and while it catches up
	// (apply is paced by the rings: a burst longer than --capacity would
	// lap them all).
	for i, f := range r.followers {
		f.mu.Lock()
		for _, at := range f.ended {
			if f.home == 2 && at.After(r.fault) {
				t.Errorf("subscriber %d of the cut node lost its stream %v after the link was cut (it came back %v after)",
					i, at.Sub(r.fault).Round(time.Millisecond), restored.Sub(r.fault).Round(time.Millisecond))
			}
		}
		f.mu.Unlock()
	}
	if fig.refused == 0 {
		t.Error("no publish was answered 503 while the node was cut off")
	}
	if h := getBody(t, "http://"+cut.addr+"/healthz"); !strings.Contains(h, `"nats":"ok"`) {
		t.Errorf("/healthz after the link came back: %s", h)
	}
	r.report("a tinysse node loses NATS for 5s", fig, fmt.Sprintf("; its subscribers, their streams open throughout, had the %d messages accepted since the cut %v after the link came back",
		meanwhile, caughtUp.Round(time.Millisecond)))
}

// A publish that JetStream acknowledged but whose 202 never reached the
// client (it hung up): sent again with its Idempotency-Key, to another
// node, it is answered 202 and delivered once. A key used again for
// another message is refused (422).
func TestFaultLost202(t *testing.T) {
	tinysse, natsBin := buildBinaries(t)
	c := startNATSCluster(t, natsBin)
	nodes := []*sseNode{startSSENode(t, tinysse, c.urls()), startSSENode(t, tinysse, c.urls())}
	f := &follower{nodes: nodes, topic: "lost"}
	stop, ready := make(chan struct{}), make(chan struct{}, 1)
	defer close(stop)
	go f.run(stop, ready)
	<-ready

	// The request goes out; the client hangs up before the answer.
	conn, err := net.Dial("tcp", nodes[0].addr)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"data":"m1"}`
	fmt.Fprintf(conn, "POST /sse?topic=lost HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nIdempotency-Key: once\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	conn.Close()
	waitFor(t, "the first copy", func() bool { return f.count() == 1 })

	for _, n := range nodes {
		status, answer := postKey(t, n, "lost", body, "once")
		if status != http.StatusAccepted {
			t.Fatalf("the same message again with its key: %d %s, want 202", status, answer)
		}
	}
	status, answer := postKey(t, nodes[1], "lost", `{"data":"m2"}`, "once")
	var e struct{ Error string }
	if status != http.StatusUnprocessableEntity || json.Unmarshal([]byte(answer), &e) != nil || !strings.Contains(e.Error, "Idempotency-Key") {
		t.Errorf("the key again for another message: %d %s, want 422 naming the key", status, answer)
	}
	if status, answer := postKey(t, nodes[1], "lost", `{"data":"m3"}`, "other"); status != http.StatusAccepted {
		t.Fatalf("a new key: %d %s", status, answer)
	}
	waitFor(t, "the next message", func() bool { return f.count() == 2 })
	time.Sleep(200 * time.Millisecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.msgs) != 2 || f.msgs[0] != 1 || f.msgs[1] != 3 || f.ids[0] != 1 || f.ids[1] != 2 {
		t.Errorf("the subscriber got messages %v with ids %v, want m1 once (id 1), then m3 (id 2)", f.msgs, f.ids)
	}
}

// postKey publishes body to topic on n with an Idempotency-Key.
func postKey(t *testing.T, n *sseNode, topic, body, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+n.addr+"/sse?topic="+topic, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(bufio.NewReader(resp.Body))
	return resp.StatusCode, string(b)
}

// README's three-server example runs as printed: its nats-server config
// (the loop's heredoc, with this test's ports and directories in place of
// 422$i, 622$i, 822$i and /tmp/tinysse-nats) makes a JetStream cluster,
// and its three tinysse command lines serve one feed.
func TestFaultREADMEExample(t *testing.T) {
	tinysse, natsCmd := buildBinaries(t)
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "cat > /tmp/nats-n$i.conf <<EOF\n")
	conf, rest, ok2 := strings.Cut(rest, "\nEOF\n")
	if !ok || !ok2 {
		t.Fatal("README has no nats-server config heredoc")
	}
	var nodeArgs [][]string
	for _, l := range strings.Split(rest, "\n") {
		if strings.HasPrefix(l, "```") {
			break
		}
		if f := strings.Fields(strings.TrimSuffix(l, "&")); len(f) > 0 && f[0] == "tinysse" {
			nodeArgs = append(nodeArgs, f[1:])
		}
	}
	if len(nodeArgs) != 3 {
		t.Fatalf("README's example has %d tinysse lines, want 3", len(nodeArgs))
	}
	dir := t.TempDir()
	c := &natsCluster{t: t}
	ports := map[string]int{}
	for _, prefix := range []string{"422", "622", "822"} {
		for i := 1; i <= 3; i++ {
			ports[fmt.Sprint(prefix, i)] = testserver.FreePort(t)
		}
	}
	for i := 1; i <= 3; i++ {
		cf := strings.ReplaceAll(conf, "$i", fmt.Sprint(i))
		for from, to := range ports {
			cf = strings.ReplaceAll(cf, "127.0.0.1:"+from, fmt.Sprintf("127.0.0.1:%d", to))
		}
		cf = strings.ReplaceAll(cf, "/tmp/tinysse-nats", dir)
		file := filepath.Join(dir, fmt.Sprintf("n%d.conf", i))
		if err := os.WriteFile(file, []byte(cf), 0o644); err != nil {
			t.Fatal(err)
		}
		n := &natsNode{port: ports[fmt.Sprint("422", i)], httpPort: ports[fmt.Sprint("822", i)]}
		n.proc = natsCmd.proc(t, fmt.Sprintf("nats n%d", i), "-c", file)
		t.Cleanup(n.cleanup)
		c.servers = append(c.servers, n)
		n.start()
	}
	c.waitHealthy(60 * time.Second)

	var nodes []*sseNode
	for _, args := range nodeArgs {
		addr := testserver.FreeAddr(t)
		var a []string
		for j := 0; j < len(args); j++ {
			switch args[j] {
			case "$NATS":
				a = append(a, strings.Join(c.urls(), ","))
			case "--listen":
				a = append(a, "--listen", addr)
				j++
			default:
				a = append(a, args[j])
			}
		}
		n := &sseNode{proc: proc{t: t, name: "tinysse " + addr, bin: tinysse, args: a, log: &testserver.Buffer{Max: 4 << 20}}, addr: addr}
		t.Cleanup(n.cleanup)
		n.restart()
		nodes = append(nodes, n)
	}
	f := &follower{nodes: nodes[1:], topic: "news"}
	stop, ready := make(chan struct{}), make(chan struct{}, 1)
	defer close(stop)
	go f.run(stop, ready)
	<-ready
	if status, body := postKey(t, nodes[0], "news", `{"data":"m1"}`, "hello"); status != http.StatusAccepted {
		t.Fatalf("publish: %d %s", status, body)
	}
	waitFor(t, "the message on another node", func() bool { return f.count() == 1 })
}
