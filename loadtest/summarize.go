package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// summarize reads the JSON results that loadtest/scenarios.sh leaves in a
// directory (S<scenario>_<target>_r<round>.json) and prints, per scenario,
// a Markdown table of each target's medians over the rounds, with the
// per-round ratios of server CPU per delivery (or per churn cycle) to the
// raw floor and to Centrifugo, themselves as medians.
func summarize(dir string, w io.Writer) error {
	runs, order, err := readResults(dir, w)
	if err != nil {
		return err
	}
	sortTargets(order)
	for _, s := range runs.scenarios() {
		writeScenario(w, s, order, runs)
	}
	return nil
}

// resultKey names one target's runs of one scenario.
type resultKey struct {
	scenario int
	target   string
}

// results are the runs of each scenario and target, by round.
type results map[resultKey]map[int]*Result

// readResults reads dir's results and lists their targets in first-seen
// order of a sorted listing. A file that is not a result gets an HTML
// comment on w and is skipped.
func readResults(dir string, w io.Writer) (results, []string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "S*_*_r*.json"))
	if err != nil {
		return nil, nil, err
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("no S*_*_r*.json results in %s", dir)
	}
	name := regexp.MustCompile(`^S(\d+)_(.+)_r(\d+)\.json$`)
	runs := results{}
	var order []string
	for _, f := range files {
		m := name.FindStringSubmatch(filepath.Base(f))
		if m == nil {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, err
		}
		var r Result
		if err := json.Unmarshal(b, &r); err != nil {
			fmt.Fprintf(w, "<!-- %s: not a result (%v) -->\n", filepath.Base(f), err)
			continue
		}
		s, _ := strconv.Atoi(m[1])
		round, _ := strconv.Atoi(m[3])
		k := resultKey{s, m[2]}
		if runs[k] == nil {
			runs[k] = map[int]*Result{}
		}
		runs[k][round] = &r
		if !slices.Contains(order, m[2]) {
			order = append(order, m[2])
		}
	}
	return runs, order, nil
}

// sortTargets orders targets as the tables show them: raw, tinysse, its
// variants, the peers, then the rest in the order given.
func sortTargets(order []string) {
	rank := map[string]int{"raw": 0, "tinysse": 1, "tinysse-c5": 2, "tinysse-lua1": 3, "tinysse-luaauto": 4, "centrifugo": 5, "mercure": 6}
	// tinysse-cN (--write-coalesce Nms) right after tinysse, by N.
	coalesce := func(t string) int {
		n, err := strconv.Atoi(strings.TrimPrefix(t, "tinysse-c"))
		if err != nil || !strings.HasPrefix(t, "tinysse-c") {
			return -1
		}
		return n
	}
	sort.SliceStable(order, func(i, j int) bool {
		ri, rj := rankOf(rank, order[i]), rankOf(rank, order[j])
		ci, cj := coalesce(order[i]), coalesce(order[j])
		if ci >= 0 {
			ri = rank["tinysse-c5"]
		}
		if cj >= 0 {
			rj = rank["tinysse-c5"]
		}
		if ri != rj {
			return ri < rj
		}
		return ci < cj
	})
}

// scenarios are the scenario numbers with results, in order.
func (runs results) scenarios() []int {
	var scenarios []int
	for k := range runs {
		if !slices.Contains(scenarios, k.scenario) {
			scenarios = append(scenarios, k.scenario)
		}
	}
	sort.Ints(scenarios)
	return scenarios
}

// writeScenario prints scenario s's table: a row per target in order.
func writeScenario(w io.Writer, s int, order []string, runs results) {
	cols := columnsFor(s)
	fmt.Fprintf(w, "\n### Scenario %d\n\n| target | runs ok |", s)
	for _, c := range cols {
		fmt.Fprintf(w, " %s |", c.title)
	}
	fmt.Fprintf(w, " CPU × raw | CPU × centrifugo |\n|---|---|%s---|---|\n", strings.Repeat("---|", len(cols)))
	for _, t := range order {
		if rs := runs[resultKey{s, t}]; rs != nil {
			writeTargetRow(w, t, cols, rs, runs[resultKey{s, "raw"}], runs[resultKey{s, "centrifugo"}])
		}
	}
}

// writeTargetRow prints target t's row: the rounds that passed, each
// column's median over the rounds rs, and the medians of the per-round
// CPU ratios to raw's and centrifugo's rounds of the same number.
func writeTargetRow(w io.Writer, t string, cols []column, rs, raw, centrifugo map[int]*Result) {
	rounds := make([]int, 0, len(rs))
	for round := range rs {
		rounds = append(rounds, round)
	}
	sort.Ints(rounds)
	ok := 0
	vals := make([][]float64, len(cols))
	var vsRaw, vsCentrifugo []float64
	for _, round := range rounds {
		r := rs[round]
		if r.OK {
			ok++
		}
		for i, c := range cols {
			if v, has := c.value(r); has {
				vals[i] = append(vals[i], v)
			}
		}
		if c, base := cpuCost(r), cpuCost(raw[round]); c > 0 && base > 0 {
			vsRaw = append(vsRaw, c/base)
		}
		if c, base := cpuCost(r), cpuCost(centrifugo[round]); c > 0 && base > 0 {
			vsCentrifugo = append(vsCentrifugo, c/base)
		}
	}
	fmt.Fprintf(w, "| %s | %d/%d |", t, ok, len(rs))
	for i, c := range cols {
		fmt.Fprintf(w, " %s |", med(vals[i], c.format))
	}
	fmt.Fprintf(w, " %s | %s |\n", ratios(vsRaw), ratios(vsCentrifugo))
}

// column is one measured value of a run, as a summary table shows it.
type column struct {
	title, format string
	value         func(*Result) (float64, bool)
}

func columnsFor(scenario int) []column {
	lat := func(f func(*Latency) float64) func(*Result) (float64, bool) {
		return func(r *Result) (float64, bool) {
			if r.Latency == nil {
				return 0, false
			}
			return f(r.Latency), true
		}
	}
	server := func(f func(*ServerStats) float64) func(*Result) (float64, bool) {
		return func(r *Result) (float64, bool) {
			if r.Server == nil {
				return 0, false
			}
			return f(r.Server), true
		}
	}
	var (
		deliveries = column{"deliveries/s", "%.0f", func(r *Result) (float64, bool) { return r.Deliveries.PerSecond, true }}
		publishes  = column{"publishes/s", "%.0f", func(r *Result) (float64, bool) { return r.Publish.PerSecond, true }}
		lost       = column{"lost", "%.0f", func(r *Result) (float64, bool) { return float64(r.Deliveries.Lost), true }}
		p50        = column{"p50 ms", "%.2f", lat(func(l *Latency) float64 { return l.P50 })}
		p99        = column{"p99 ms", "%.2f", lat(func(l *Latency) float64 { return l.P99 })}
		cpuM       = column{"CPU s / M deliveries", "%.3f", server(func(v *ServerStats) float64 { return v.CPUPerMillion })}
		perWrite   = column{"deliveries / write call", "%.2f", func(r *Result) (float64, bool) {
			if r.Server == nil || r.Server.WriteCalls == 0 {
				return 0, false
			}
			return r.Server.DeliveriesPerWrite, true
		}}
		rssEnd   = column{"RSS MiB", "%.1f", server(func(v *ServerStats) float64 { return float64(v.RSSEnd) / (1 << 20) })}
		rssSub   = column{"RSS KiB / subscriber", "%.2f", server(func(v *ServerStats) float64 { return v.RSSPerSubscriber / 1024 })}
		ready    = column{"subscribers ready", "%.0f", func(r *Result) (float64, bool) { return float64(r.Subscribers.Ready), true }}
		churn    = column{"cycles/s", "%.0f", churnValue(func(c *ChurnStats) float64 { return c.PerSecond })}
		churnCPU = column{"CPU s / 1k cycles", "%.3f", churnValue(func(c *ChurnStats) float64 { return c.ServerCPUPerThousand })}
	)
	switch scenario {
	case 4:
		return []column{ready, rssSub, rssEnd}
	case 5:
		return []column{publishes, deliveries, lost, p50, p99, cpuM, perWrite, rssEnd}
	case 6:
		ready50, ready99 := p50, p99
		ready50.title, ready99.title = "ready p50 ms", "ready p99 ms"
		return []column{churn, ready50, ready99, churnCPU, rssEnd}
	}
	return []column{deliveries, lost, p50, p99, cpuM, perWrite, rssEnd}
}

func churnValue(f func(*ChurnStats) float64) func(*Result) (float64, bool) {
	return func(r *Result) (float64, bool) {
		if r.Churn == nil {
			return 0, false
		}
		return f(r.Churn), true
	}
}

// cpuCost is a run's server CPU per unit of work: per million deliveries,
// or per thousand churn cycles; 0 if unknown.
func cpuCost(r *Result) float64 {
	switch {
	case r == nil || r.Server == nil:
		return 0
	case r.Churn != nil:
		return r.Churn.ServerCPUPerThousand
	}
	return r.Server.CPUPerMillion
}

func rankOf(rank map[string]int, t string) int {
	if r, ok := rank[t]; ok {
		return r
	}
	return len(rank)
}

// med is the median of vs formatted, or "" when vs is empty.
func med(vs []float64, format string) string {
	if len(vs) == 0 {
		return ""
	}
	return fmt.Sprintf(format, median(vs))
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// ratios is the median of per-round ratios and the rounds' values.
func ratios(vs []float64) string {
	if len(vs) == 0 {
		return ""
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("**%.2f** (%s)", median(vs), strings.Join(parts, ", "))
}
