package cluster_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/tinysse/tinysse/cluster"
	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/testserver/inproc"
)

// BenchmarkFanout: one publisher, subscribers spread over the nodes, every
// message to every subscriber over real loopback sockets. "single" is one
// node without NATS (the baseline), "cluster3" three nodes on an
// in-process NATS server with JetStream on disk; all in this one process,
// so they share the same CPUs. b.N is the number of messages; each
// carries its send time, and the benchmark reports deliveries per second
// (first publish to last delivery) and the p50/p99 publish-to-delivery
// latency. One publisher waits for each 202 ("max"), or eight keep-alive
// publishers keep a fixed schedule ("rate500", latency counted from the
// moment a message was due).
//
//	go test -run '^$' -bench Fanout -benchtime 2000x -count 3 ./cluster
func BenchmarkFanout(b *testing.B) {
	const subscribers = 300
	for _, mode := range []struct {
		name string
		rate int // messages per second; 0: one after the other's 202
	}{{"max", 0}, {"rate500", 500}} {
		// Rings that hold every message of a run: a subscriber goroutine
		// of this benchmark that falls behind must not be cut off as
		// lagged (that is tested elsewhere), or the counts would not add up.
		ecfg := engine.Config{Capacity: 1 << 14}
		b.Run("single/"+mode.name, func(b *testing.B) {
			addr := startPlainNode(b, ecfg)
			fanout(b, []string{addr}, subscribers, mode.rate)
		})
		b.Run("cluster3/"+mode.name, func(b *testing.B) {
			ns := startNATS(b)
			nodes := startNodes(b, ns, 3, cluster.Config{}, ecfg)
			var addrs []string
			for _, n := range nodes {
				addrs = append(addrs, n.addr)
			}
			fanout(b, addrs, subscribers, mode.rate)
		})
	}
}

// startPlainNode runs one node without cluster mode.
func startPlainNode(b *testing.B, ecfg engine.Config) string {
	ecfg.AutoID = true
	return inproc.Start(b, inproc.Config{Engine: ecfg}).Addr
}

// fanout subscribes subs streams round-robin over addrs, publishes b.N
// messages to addrs[0], and waits for every delivery.
func fanout(b *testing.B, addrs []string, subs, rate int) {
	var (
		mu        sync.Mutex
		hist      = hdr.New(1, int64(time.Minute/time.Microsecond), 3)
		delivered atomic.Int64
		lastAt    atomic.Int64
		wg        sync.WaitGroup
	)
	want := int64(b.N)
	if b.N > 1<<14 {
		b.Fatalf("at most %d messages per run (the rings' size)", 1<<14)
	}
	var conns []net.Conn
	for i := range subs {
		c, err := net.DialTimeout("tcp", addrs[i%len(addrs)], wait)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "GET /sse?topic=bench HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			b.Fatal(err)
		}
		br := bufio.NewReaderSize(c, 16<<10)
		for { // head, then ": ok"
			line, err := br.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if line == ": ok\n" {
				break
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := hdr.New(1, int64(time.Minute/time.Microsecond), 3)
			var got int64
			for got < want {
				line, err := br.ReadSlice('\n')
				if err != nil {
					break
				}
				if !bytes.HasPrefix(line, []byte("data: ")) {
					continue
				}
				var sent int64
				for _, c := range line[len("data: "):] {
					if '0' <= c && c <= '9' {
						sent = sent*10 + int64(c-'0')
					}
				}
				now := time.Now().UnixNano()
				_ = h.RecordValue((now - sent) / 1000)
				got++
			}
			delivered.Add(got)
			lastAt.Store(max(lastAt.Load(), time.Now().UnixNano()))
			mu.Lock()
			hist.Merge(h)
			mu.Unlock()
		}()
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	time.Sleep(200 * time.Millisecond) // every stream registered on its node

	client := &http.Client{Timeout: wait, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	// pub publishes one message stamped with sent: the moment it was due,
	// so a publisher that falls behind its schedule shows as latency.
	pub := func(sent time.Time) {
		body := fmt.Sprintf(`{"data":"%d","topic":"bench"}`, sent.UnixNano())
		resp, err := client.Post("http://"+addrs[0]+"/sse", "application/json", strings.NewReader(body))
		if err != nil {
			b.Error(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			b.Errorf("publish: %d", resp.StatusCode)
		}
	}
	b.ResetTimer()
	start := time.Now()
	if rate == 0 {
		for range b.N {
			pub(time.Now())
		}
	} else {
		// A fixed schedule served by a few keep-alive publishers.
		due := make(chan time.Time, b.N)
		var pw sync.WaitGroup
		for range 8 {
			pw.Go(func() {
				for t := range due {
					time.Sleep(time.Until(t))
					pub(t)
				}
			})
		}
		every := time.Second / time.Duration(rate)
		for i := range b.N {
			due <- start.Add(time.Duration(i) * every)
		}
		close(due)
		pw.Wait()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		for _, c := range conns {
			c.Close()
		}
		<-done
	}
	b.StopTimer()
	if got := delivered.Load(); got != want*int64(subs) {
		b.Fatalf("%d deliveries, want %d", got, want*int64(subs))
	}
	elapsed := time.Duration(lastAt.Load() - start.UnixNano())
	b.ReportMetric(float64(delivered.Load())/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(hist.ValueAtQuantile(50)), "p50-µs")
	b.ReportMetric(float64(hist.ValueAtQuantile(99)), "p99-µs")
}
