package engine

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tinysse/tinysse/internal/testserver"
)

// unrelatedPatterns are n patterns that no topic "news/<k>" matches, of
// the three shapes a trie walks differently: a literal first segment, a
// "**" tail, and a "*" first segment (which every topic's walk enters).
func unrelatedPatterns(n int) []string {
	ps := make([]string, n)
	for i := range ps {
		switch i % 3 {
		case 0:
			ps[i] = "room/" + strconv.Itoa(i) + "/*"
		case 1:
			ps[i] = "user/" + strconv.Itoa(i) + "/**"
		default:
			ps[i] = "*/" + strconv.Itoa(i) + "/x"
		}
	}
	return ps
}

// servePatternSubscribers starts one real subscriber per pattern, each on
// its own loopback socket, and waits until they are registered.
func servePatternSubscribers(b *testing.B, e *Engine, pats []string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	for _, p := range pats {
		client, server := testserver.Pair(b, ln)
		raw, _ := server.(syscall.Conn).SyscallConn()
		sub := &Subscriber{Topics: []string{p}}
		go func() { _ = e.Serve(sub, Stream{Conn: server, Raw: raw, Close: server.Close}) }()
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if line, err := bufio.NewReader(client).ReadString('\n'); err != nil || line != ": ok\n" {
			b.Fatalf("subscriber %q: %q %v", p, line, err)
		}
		b.Cleanup(func() { client.Close() })
	}
	for e.counters.subscribers.Load() < int64(len(pats)) {
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkPublishExactWithPatterns: what 1,000 pattern subscribers on
// patterns unrelated to it cost a publish to an exact topic nobody reads
// (the publish alone, where a lookup weighs most). Two engines in one
// process, one without pattern subscribers and one with 1,000 (real
// subscribers, each on its own loopback socket), get chunks of publishes
// in turn, the order swapped every round, so that the machine's noise and
// the garbage collector fall on both alike; each round gives one ratio.
// Reported: the medians of each engine's ns per publish and of the
// per-round ratios (issue 17 bounds it at 1.10), and the naive baseline
// beside them: the same publish plus the scan an unindexed implementation
// makes, Match against each of the 1,000 patterns.
func BenchmarkPublishExactWithPatterns(b *testing.B) {
	const n, chunk = 1000, 512
	pats := unrelatedPatterns(n)
	parsed := make([]Pattern, n)
	for i, p := range pats {
		parsed[i] = MustPattern(p)
	}
	newEng := func() *Engine {
		e, err := New(Config{Shards: 1, Capacity: 256, Logger: discardLogger()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = e.Close(context.Background()) })
		return e
	}
	plain, withPats := newEng(), newEng()
	servePatternSubscribers(b, withPats, pats)
	topics := []string{"news/1"}
	matched := 0
	run := func(e *Engine, naive bool) float64 {
		start := time.Now()
		for range chunk {
			if _, err := e.Publish(&Message{Data: "x", HasData: true, Topics: topics}); err != nil {
				b.Fatal(err)
			}
			if naive {
				for i := range parsed {
					if parsed[i].Match(topics[0]) {
						matched++
					}
				}
			}
		}
		return float64(time.Since(start).Nanoseconds()) / chunk
	}
	var none, trie, ratios, naive []float64
	round := 0
	for b.Loop() {
		var a, c float64
		if round%2 == 0 {
			a, c = run(plain, false), run(withPats, false)
		} else {
			c, a = run(withPats, false), run(plain, false)
		}
		none, trie, ratios = append(none, a), append(trie, c), append(ratios, c/a)
		if round%8 == 0 { // the naive path is ~100x slower: sample it
			naive = append(naive, run(withPats, true))
		}
		round++
	}
	if matched != 0 {
		b.Fatal("an unrelated pattern matched")
	}
	b.ReportMetric(median(none), "none-ns/publish")
	b.ReportMetric(median(trie), "trie1000-ns/publish")
	b.ReportMetric(median(ratios), "trie/none")
	b.ReportMetric(median(naive), "naive1000-ns/publish")
	b.ReportMetric(0, "ns/op") // a round is several chunks: see the metrics above
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

// BenchmarkPatternLookup: finding the pattern topics of one topic name
// among 1,000 unrelated patterns and 10 that match it: the trie against a
// scan of every pattern.
func BenchmarkPatternLookup(b *testing.B) {
	pats := append(unrelatedPatterns(1000), "news/*", "news/**", "*/1", "*", "**", "news/1/**", "*/*", "news/*/**", "*/1/**", "*/**")
	var x patIndex
	parsed := make([]Pattern, len(pats))
	for i, p := range pats {
		parsed[i] = MustPattern(p)
		x.add(parsed[i], &topic{name: p, pattern: true})
	}
	for _, name := range []string{"news/1", "other"} {
		b.Run("trie/"+name, func(b *testing.B) {
			dst := make([]*topic, 0, 16)
			for b.Loop() {
				dst = x.matches(dst[:0], name)
			}
		})
		b.Run("scan/"+name, func(b *testing.B) {
			n := 0
			for b.Loop() {
				for i := range parsed {
					if parsed[i].Match(name) {
						n++
					}
				}
			}
		})
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// BenchmarkPatternMake: what making (and removing) a pattern topic
// costs, and what of it holds the publish lock, with 10,000 topics of 4
// messages each held: a pattern no topic matches, and "**", whose ring is
// filled with the newest Capacity messages of all 10,000 rings.
func BenchmarkPatternMake(b *testing.B) {
	e, err := New(Config{Shards: 1, Capacity: 256, Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close(context.Background())
	for i := range 10000 {
		for range 4 {
			if _, err := e.Publish(&Message{Data: "x", HasData: true, Topics: []string{"t/" + strconv.Itoa(i)}}); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, pat := range []string{"none/*", "**"} {
		b.Run(pat, func(b *testing.B) {
			p := MustPattern(pat)
			for b.Loop() {
				t := e.acquirePattern(p)
				e.release(t)
			}
		})
		// The parts of making it, timed apart (the steps of
		// acquirePattern and backfill): registering it in the index under
		// both locks; copying the topic map under its read lock; matching
		// and reading the rings with no lock; filling the ring, fillChunk
		// messages per hold of the publish lock (fill-ns/hold: each hold
		// with the wait for the lock).
		b.Run(pat+"/parts", func(b *testing.B) {
			p := MustPattern(pat)
			var register, copied, pick, fill time.Duration
			holds := 0
			for b.Loop() {
				start := time.Now()
				e.topicsMu.Lock()
				t := e.newTopic(p.src)
				t.pattern = true
				t.ring.Skip(uint64(e.cfg.Capacity))
				e.pubMu.Lock()
				upTo := e.seq
				e.pubMu.Unlock()
				e.topicsMu.Unlock()
				t1 := time.Now()
				fb := fillBufs.Get().(*fillBuf)
				e.copyTopics(fb)
				t2 := time.Now()
				pickBackfill(fb, p, upTo, e.cfg.Capacity, nil)
				t3 := time.Now()
				put := e.fill(t, fb.picked)
				t4 := time.Now()
				holds += (put + fillChunk - 1) / fillChunk
				fb.put()
				register, copied, pick, fill = register+t1.Sub(start), copied+t2.Sub(t1), pick+t3.Sub(t2), fill+t4.Sub(t3)
				e.pubMu.Lock()
				for {
					m, ok := t.ring.DropOldest()
					if !ok {
						break
					}
					e.history.leaveRing(m, t)
				}
				e.pubMu.Unlock()
			}
			n := float64(b.N)
			b.ReportMetric(float64(register.Nanoseconds())/n, "register-ns/op")
			b.ReportMetric(float64(copied.Nanoseconds())/n, "copy-ns/op")
			b.ReportMetric(float64(pick.Nanoseconds())/n, "pick-ns/op")
			b.ReportMetric(float64(fill.Nanoseconds())/n, "fill-ns/op")
			if holds > 0 {
				b.ReportMetric(float64(fill.Nanoseconds())/float64(holds), "fill-ns/hold")
			}
		})
	}
}
