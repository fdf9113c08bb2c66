package main

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkStorePublish: publishes over HTTP to one server, memory only
// (the baseline) against --store (fsync every 1s, the default) and
// --store-sync always, with one subscriber reading. 8 keep-alive
// publishers post at once; each sub-benchmark reports publishes/s and the
// p50 and p99 of a publish's answer. With -count N the three alternate,
// so each round compares them on the same machine state:
//
//	go test -run '^$' -bench StorePublish -benchtime 4000x -count 5 ./cmd/tinysse
func BenchmarkStorePublish(b *testing.B) {
	for _, c := range []struct {
		name string
		args []string
	}{
		{"memory", nil},
		{"store", []string{"--store", ""}},
		{"store-sync-always", []string{"--store", "", "--store-sync", "always"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			args := append([]string{"--auto-id", "--log-level", "WARN", "--no-dashboard"}, c.args...)
			if i := slices.Index(args, "--store"); i >= 0 {
				args[i+1] = b.TempDir()
			}
			addr, _, stop := runServer(b, args)
			defer stop()
			sub := openStream(b, addr, "/sse?topic=bench")
			sub.readUntil(b, ": ok\n\n")
			go func() { _, _ = io.Copy(io.Discard, sub.conn) }()
			_ = sub.conn.SetReadDeadline(time.Time{})

			const publishers = 8
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: publishers}}
			url := "http://" + addr + "/sse?topic=bench"
			body := `{"data":"` + strings.Repeat("x", 100) + `"}`
			var next atomic.Int64
			lat := make([][]time.Duration, publishers)
			var failed atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for p := range publishers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						t0 := time.Now()
						resp, err := client.Post(url, "application/json", strings.NewReader(body))
						if err != nil {
							failed.Add(1)
							continue
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusAccepted {
							failed.Add(1)
						}
						lat[p] = append(lat[p], time.Since(t0))
					}
				}()
			}
			wg.Wait()
			took := time.Since(start)
			b.StopTimer()
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d publishes failed", n)
			}
			all := slices.Concat(lat...)
			slices.Sort(all)
			q := func(f float64) float64 { return float64(all[int(f*float64(len(all)-1))].Microseconds()) }
			b.ReportMetric(float64(b.N)/took.Seconds(), "pub/s")
			b.ReportMetric(q(.5), "p50-µs")
			b.ReportMetric(q(.99), "p99-µs")
		})
	}
}
