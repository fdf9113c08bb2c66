package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, r Result) {
		b, _ := json.Marshal(r)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res := func(cpu, p99 float64) Result {
		r := Result{OK: true, Server: &ServerStats{CPUPerMillion: cpu, RSSEnd: 10 << 20}, Latency: &Latency{P50: 1, P99: p99}}
		r.Deliveries.PerSecond = 1000
		return r
	}
	// Three rounds: the table shows medians and the per-round ratios.
	for i, c := range [][3]float64{{2, 4, 8}, {3, 3, 6}, {2, 1, 4}} { // raw, tinysse, centrifugo CPU
		round := string(rune('1' + i))
		write("S2_raw_r"+round+".json", res(c[0], 10))
		r := res(c[1], float64(i+1))
		r.Server.WriteCalls, r.Server.DeliveriesPerWrite = 100, float64(3+i)
		write("S2_tinysse_r"+round+".json", r)
		write("S2_centrifugo_r"+round+".json", res(c[2], 20))
	}
	write("S2_mercure_r1.json", Result{}) // a failed run still counts in "runs ok"
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("ignored"), 0o644)

	var b strings.Builder
	if err := summarize(dir, &b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"### Scenario 2",
		"| raw | 3/3 | 1000 | 0 | 1.00 | 10.00 | 2.000 |  | 10.0 | **1.00** (1.00, 1.00, 1.00) | **0.50** (0.25, 0.50, 0.50) |",
		"| tinysse | 3/3 | 1000 | 0 | 1.00 | 2.00 | 3.000 | 4.00 | 10.0 | **1.00** (2.00, 1.00, 0.50) | **0.50** (0.50, 0.50, 0.25) |",
		"| mercure | 0/1 | 0 | 0 |  |  |  |  |  |  |  |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "| raw |") > strings.Index(out, "| tinysse |") || strings.Index(out, "| tinysse |") > strings.Index(out, "| centrifugo |") {
		t.Errorf("rows not in raw, tinysse, peers order:\n%s", out)
	}
	if err := summarize(t.TempDir(), &b); err == nil {
		t.Error("empty directory accepted")
	}
}
