//go:build soak

package transport

// The soak test: go test -tags soak -run TestSoak -timeout 0 ./transport
// (-soak.duration, or TINYSSE_SOAK_DURATION, default 30m).
//
// For its whole duration it runs, against one server in this process:
// publishers on four topics at a steady rate (and a refused publish now and
// then), subscribers that keep up and must lose nothing, subscribers that
// come and go (some with a Last-Event-ID, so they are replayed), and
// subscribers that stop reading until the server closes them. Every
// interval it samples RSS, descriptors and goroutines; after the warm-up
// they must stay flat, and once the clients are gone they must return to
// what they were before. Its clients speak HTTP/1.1 on raw sockets; the
// HTTP/2 paths have their own bounded tests (h2_test.go, flood_test.go).

import (
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/sseparse"
)

var soakDuration = flag.Duration("soak.duration", 0, "how long TestSoak runs (default TINYSSE_SOAK_DURATION or 30m)")

const (
	soakTopics     = 4
	soakPublishers = 4                     // one per topic
	soakRate       = 10 * time.Millisecond // per publisher: 100 messages/s
	soakSteady     = 40                    // subscribers that keep up, 10 per topic
	soakChurners   = 8                     // goroutines that subscribe and leave, over and over
	soakStallers   = 4                     // goroutines whose subscribers stop reading
	soakPadding    = 512                   // bytes of data per message beyond the counter
)

func soakTopic(i int) string { return "soak" + strconv.Itoa(i%soakTopics) }

func TestSoak(t *testing.T) {
	d := *soakDuration
	if d == 0 {
		d = 30 * time.Minute
		if v := os.Getenv("TINYSSE_SOAK_DURATION"); v != "" {
			var err error
			if d, err = time.ParseDuration(v); err != nil {
				t.Fatalf("TINYSSE_SOAK_DURATION: %v", err)
			}
		}
	}
	warmUp := min(d/6, 5*time.Minute)
	interval := max(d/60, 2*time.Second)
	before := readUsage(t)

	addr, eng, srv := startServer(t, engine.Config{
		Capacity:     256,
		WriteTimeout: 3 * time.Second,
		KeepAlive:    5 * time.Second,
		TimeoutRetry: 500 * time.Millisecond,
	}, Config{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var st soakStats

	// Steady subscribers first, so they must see every message.
	steady := make([]*soakReader, soakSteady)
	for i := range steady {
		steady[i] = &soakReader{topic: soakTopic(i)}
		c, err := soakSubscribe(addr, steady[i].topic, "", false)
		if err != nil {
			t.Fatalf("steady subscriber %d: %v", i, err)
		}
		steady[i].conn = c
		wg.Add(1)
		go func() { defer wg.Done(); steady[i].run() }()
	}
	for i := range soakTopics {
		waitSubscribers(t, eng, soakTopic(i), soakSteady/soakTopics)
	}

	last := make([]atomic.Int64, soakPublishers) // the last counter each publisher had accepted
	for p := range soakPublishers {
		wg.Add(1)
		go func() { defer wg.Done(); soakPublish(addr, p, stop, &last[p], &st) }()
	}
	for i := range soakChurners {
		wg.Add(1)
		go func() { defer wg.Done(); soakChurn(addr, i, stop, &st) }()
	}
	for i := range soakStallers {
		wg.Add(1)
		go func() { defer wg.Done(); soakStall(addr, i, eng, stop, &st) }()
	}

	start := time.Now()
	var samples []usage
	var sampleAt []time.Duration
	tick := time.NewTicker(interval)
	for time.Since(start) < d {
		<-tick.C
		u := readUsage(t)
		el := time.Since(start).Round(time.Second)
		samples, sampleAt = append(samples, u), append(sampleAt, el)
		t.Logf("%v: %v; subscribers %d, conns %d; published %d, refused %d, churned %d, stalled closed %d (after at most %dms; open after 40s %d)",
			el, u, soakSubscribers(eng), srv.OpenConns(), st.published.Load(), st.refused.Load(), st.churned.Load(), st.stallClosed.Load(), st.stallMaxMS.Load(), st.stallOpen.Load())
		for _, r := range steady {
			if err := r.failure(); err != nil {
				t.Fatalf("steady subscriber on %s: %v", r.topic, err)
			}
		}
	}
	tick.Stop()
	close(stop)

	// Every steady subscriber reaches its publisher's last message.
	deadline := time.Now().Add(30 * time.Second)
	for i, r := range steady {
		want := last[i%soakPublishers].Load()
		for r.seen.Load() < want && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := r.seen.Load(); got != want {
			t.Errorf("steady subscriber %d on %s: last message %d, publisher's last %d", i, r.topic, got, want)
		}
		if err := r.failure(); err != nil {
			t.Errorf("steady subscriber %d: %v", i, err)
		}
		r.conn.Close()
	}
	wg.Wait()

	// Flat after warm-up: the last samples against the first ones after it.
	var warm []usage
	for i, at := range sampleAt {
		if at >= warmUp {
			warm = samples[i:]
			break
		}
	}
	if len(warm) < 6 {
		t.Fatalf("only %d samples after the warm-up of %v", len(warm), warmUp)
	}
	first, final := medianUsage(warm[:3]), medianUsage(warm[len(warm)-3:])
	peak := slices.MaxFunc(warm, func(a, b usage) int { return int(a.RSS - b.RSS) })
	t.Logf("SOAK %v: after warm-up (%v) %v; at the end %v; peak rss %.1f MiB", d, warmUp, first, final, float64(peak.RSS)/(1<<20))
	t.Logf("SOAK totals: published %d (%.0f/s), refused %d, churned subscriptions %d, stalled subscribers closed by the server %d (the slowest after %dms; still there after 40s: %d), steady subscribers %d with 0 lost",
		st.published.Load(), float64(st.published.Load())/d.Seconds(), st.refused.Load(), st.churned.Load(), st.stallClosed.Load(), st.stallMaxMS.Load(), st.stallOpen.Load(), soakSteady)
	if st.stallOpen.Load() > 0 {
		t.Errorf("%d stalled subscribers were still served after %v (--write-timeout 3s)", st.stallOpen.Load(), stallBound)
	}
	if final.RSS > first.RSS+first.RSS/4+32<<20 {
		t.Errorf("RSS grew from %.1f to %.1f MiB after the warm-up", float64(first.RSS)/(1<<20), float64(final.RSS)/(1<<20))
	}
	if final.FDs > first.FDs+first.FDs/10+16 {
		t.Errorf("descriptors grew from %d to %d after the warm-up", first.FDs, final.FDs)
	}
	if final.Goroutines > first.Goroutines+first.Goroutines/10+32 {
		t.Errorf("goroutines grew from %d to %d after the warm-up", first.Goroutines, final.Goroutines)
	}

	// All clients gone: back to where it started, no subscriber left.
	waitFor(t, 30*time.Second, "no subscriber left", func() bool { return soakSubscribers(eng) == 0 && srv.OpenConns() == 0 })
	after, ok := settle(t, before, 8, 30*time.Second)
	t.Logf("SOAK before %v; after %v", before, after)
	if !ok {
		t.Errorf("after the clients left: %v, before the server: %v", after, before)
	}
}

func soakSubscribers(eng *engine.Engine) int {
	n := 0
	for i := range soakTopics {
		n += eng.Subscribers(soakTopic(i))
	}
	for i := range soakStallers {
		n += eng.Subscribers("stall" + strconv.Itoa(i))
	}
	return n
}

func medianUsage(us []usage) usage {
	pick := func(f func(usage) int64) int64 {
		v := make([]int64, len(us))
		for i, u := range us {
			v[i] = f(u)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return usage{
		RSS:        pick(func(u usage) int64 { return u.RSS }),
		FDs:        int(pick(func(u usage) int64 { return int64(u.FDs) })),
		Goroutines: int(pick(func(u usage) int64 { return int64(u.Goroutines) })),
	}
}

type soakStats struct {
	published, refused, churned atomic.Int64
	stallClosed, stallOpen      atomic.Int64 // stalled subscribers closed by the server, or still there after stallBound
	stallMaxMS                  atomic.Int64 // the longest a stalled subscriber lasted
}

// soakPublish publishes "<p> <n> padding" with id "<p>-<n>" to its topic
// every soakRate, and every 100th time a malformed body that must be
// refused with 400.
func soakPublish(addr string, p int, stop chan struct{}, last *atomic.Int64, st *soakStats) {
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	url := "http://" + addr + "/sse?topic=" + soakTopic(p)
	pad := strings.Repeat("x", soakPadding)
	tick := time.NewTicker(soakRate)
	defer tick.Stop()
	for n := int64(1); ; n++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if n%100 == 0 {
			if code := soakPost(client, url, `{"data": 12}`); code == http.StatusBadRequest {
				st.refused.Add(1)
			} else {
				panic(fmt.Sprintf("a malformed publish got %d", code))
			}
		}
		body := fmt.Sprintf(`{"id":"%d-%d","data":"%d %d %s"}`, p, n, p, n, pad)
		if code := soakPost(client, url, body); code != http.StatusAccepted {
			panic(fmt.Sprintf("publish %d-%d got %d", p, n, code))
		}
		last.Store(n)
		st.published.Add(1)
	}
}

func soakPost(c *http.Client, url, body string) int {
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// soakSubscribe opens a stream on topic and reads up to ": ok". tiny sets
// the smallest receive buffer, before the handshake.
func soakSubscribe(addr, topic, lastID string, tiny bool) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if tiny {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024)
			})
		}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	req := "GET /sse?topic=" + topic + " HTTP/1.1\r\nHost: x\r\n"
	if lastID != "" {
		req += "Last-Event-ID: " + lastID + "\r\n"
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	var got []byte
	buf := make([]byte, 512)
	for !strings.Contains(string(got), "\r\n\r\n: ok\n\n") {
		n, err := c.Read(buf[:1]) // byte by byte: nothing after ": ok" is consumed
		got = append(got, buf[:n]...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("subscribe: %v after %q", err, got)
		}
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// soakReader is a subscriber that keeps up: it must see its publisher's
// counter go up by one with every message, no gap, no repeat.
type soakReader struct {
	topic string
	conn  net.Conn
	seen  atomic.Int64 // the last counter read
	mu    sync.Mutex
	err   error // guarded by mu
}

func (r *soakReader) failure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *soakReader) run() {
	p := sseparse.New()
	buf := make([]byte, 64<<10)
	for {
		n, err := r.conn.Read(buf)
		p.Feed(buf[:n])
		for {
			b, ok := p.Next()
			if !ok {
				break
			}
			if b.Event == nil {
				continue // keep-alive
			}
			f := strings.Fields(b.Event.Data)
			c, _ := strconv.ParseInt(f[1], 10, 64)
			if prev := r.seen.Load(); prev != 0 && c != prev+1 {
				r.mu.Lock()
				if r.err == nil {
					r.err = fmt.Errorf("message %d after %d", c, prev)
				}
				r.mu.Unlock()
			}
			r.seen.Store(c)
		}
		p.Events, p.Comments = p.Events[:0], p.Comments[:0] // the parser keeps them all otherwise
		if err != nil {
			return // closed by the test at the end
		}
	}
}

// soakChurn subscribes, reads for up to half a second, leaves, again and
// again; every third time it comes back with a Last-Event-ID.
func soakChurn(addr string, i int, stop chan struct{}, st *soakStats) {
	lastID := ""
	for k := 0; ; k++ {
		select {
		case <-stop:
			return
		default:
		}
		id := ""
		if k%3 == 0 {
			id = lastID
		}
		c, err := soakSubscribe(addr, soakTopic(i+k), id, false)
		if err != nil {
			panic(err)
		}
		p := sseparse.New()
		buf := make([]byte, 32<<10)
		_ = c.SetReadDeadline(time.Now().Add(time.Duration(rand.IntN(500)) * time.Millisecond))
		for {
			n, err := c.Read(buf)
			p.Feed(buf[:n])
			for b, ok := p.Next(); ok; b, ok = p.Next() {
				if b.Event != nil {
					lastID = b.Event.LastEventID
				}
			}
			p.Events, p.Comments = p.Events[:0], p.Comments[:0]
			if err != nil {
				break
			}
		}
		c.Close()
		st.churned.Add(1)
	}
}

// soakStall subscribes with a tiny receive buffer, on every soak topic
// and one of its own (so the engine's count on it shows whether it is
// still there), and reads nothing. The server must close it within
// --write-timeout of its socket filling, or when the ring laps it; the
// longest that took is kept. Filling takes a while: the kernel grows the
// server's send buffer up to tcp_wmem's 4 MiB, about 19s of this load, so
// the bound is 40s.
const stallBound = 40 * time.Second

func soakStall(addr string, i int, eng *engine.Engine, stop chan struct{}, st *soakStats) {
	own := "stall" + strconv.Itoa(i)
	for {
		c, err := soakSubscribe(addr, "soak0&topic=soak1&topic=soak2&topic=soak3&topic="+own, "", true)
		if err != nil {
			panic(err)
		}
		start := time.Now()
		closed := false
		for !closed && time.Since(start) < stallBound {
			select {
			case <-stop:
				c.Close()
				return
			case <-time.After(50 * time.Millisecond):
			}
			closed = eng.Subscribers(own) == 0
		}
		if closed {
			st.stallClosed.Add(1)
			took := time.Since(start).Milliseconds()
			for prev := st.stallMaxMS.Load(); took > prev && !st.stallMaxMS.CompareAndSwap(prev, took); prev = st.stallMaxMS.Load() {
			}
		} else {
			st.stallOpen.Add(1)
		}
		c.Close()
	}
}
