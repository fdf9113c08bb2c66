package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Result is the outcome of one run; --json prints it as is.
type Result struct {
	Target string `json:"target"`
	URL    string `json:"url"`
	PubURL string `json:"pub_url"`

	Subscribers struct {
		Wanted  int   `json:"wanted"`
		Ready   int64 `json:"ready"`   // became ready at some point
		Failed  int64 `json:"failed"`  // never became ready
		Dropped int64 `json:"dropped"` // ready, then ended by the server or the network
		Workers int   `json:"workers"` // worker processes (0: all in this process)
		// H2Conns, with --http2, is how many HTTP/2 connections the
		// streams share (0: HTTP/1.1, a connection per stream).
		H2Conns        int     `json:"h2_conns,omitempty"`
		ConnectSeconds float64 `json:"connect_seconds"`
	} `json:"subscribers"`

	Publish struct {
		Rate       float64 `json:"rate"` // asked for; -1 = as fast as possible, 0 = none
		Size       int     `json:"size"`
		Publishers int     `json:"publishers"` // connections used
		Acked      int64   `json:"acked"`
		Failed     int64   `json:"failed"`
		Skipped    int64   `json:"skipped"` // pacer ticks dropped: publishers could not keep the rate
		Seconds    float64 `json:"seconds"`
		PerSecond  float64 `json:"per_second"`
	} `json:"publish"`

	Deliveries struct {
		Expected            int64   `json:"expected"` // per stream, every message acknowledged after it got ready
		Received            int64   `json:"received"` // of those, how many arrived (once)
		Lost                int64   `json:"lost"`
		SubscribersWithLoss int64   `json:"subscribers_with_loss"`
		Duplicates          int64   `json:"duplicates"`
		OutOfOrder          int64   `json:"out_of_order"`
		Early               int64   `json:"early"`   // arrived though sent before the stream was ready
		Foreign             int64   `json:"foreign"` // events without our payload
		Lagged              int64   `json:"lagged"`  // ": lagged" comments seen
		Total               int64   `json:"total"`   // every delivery, duplicates included
		PerSecond           float64 `json:"per_second"`
	} `json:"deliveries"`

	// Latency is publish-to-delivery: the publisher's clock just before it
	// writes the request to the subscriber's clock when the event's blank
	// line is parsed, both CLOCK_REALTIME on this host.
	Latency *Latency `json:"latency_ms,omitempty"`

	Server *ServerStats `json:"server,omitempty"`

	// Churn is set by --churn runs, which publish nothing; Latency is then
	// the time from dialling to a ready stream.
	Churn *ChurnStats `json:"churn,omitempty"`
	// Storm is set by --reconnect-storm runs (storm.go).
	Storm *StormStats `json:"storm,omitempty"`

	// Stuck is set by --stuck runs: connections that never read, and when
	// the server cut them off.
	Stuck *StuckStats `json:"stuck,omitempty"`

	// Host says how loaded the machine was in the window: the tool itself
	// competes with the server for the same cores.
	Host *HostStats `json:"host,omitempty"`

	Errors map[string]int `json:"errors,omitempty"`
	// OK is false when a check failed: a loss, duplicate, reordering, a
	// failed or dropped subscriber, or a failed publish.
	OK bool `json:"ok"`
}

// Latency percentiles in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
}

func latencyOf(h *hdr.Histogram) *Latency {
	if h.TotalCount() == 0 {
		return nil
	}
	ms := func(us int64) float64 { return float64(us) / 1e3 }
	return &Latency{
		Count: h.TotalCount(),
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
}

// ServerStats come from /proc/PID of the server, read before connecting,
// once connected (after --settle), and after the publishing window and its
// drain.
type ServerStats struct {
	PID int `json:"pid"`
	// CPUSeconds is user+system time spent in the window from the end of
	// the settle to the end of the drain.
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUPerMillion is CPUSeconds per million deliveries (all deliveries).
	CPUPerMillion float64 `json:"cpu_seconds_per_million_deliveries,omitempty"`
	RSSBefore     int64   `json:"rss_before"`
	RSSConnected  int64   `json:"rss_connected"`
	RSSEnd        int64   `json:"rss_end"`
	// RSSPerSubscriber is (RSSConnected - RSSBefore) / ready subscribers.
	RSSPerSubscriber float64 `json:"rss_per_subscriber"`
	// WriteCalls is the server's write-like system calls in the window
	// (/proc/PID/io syscw), and DeliveriesPerWrite all deliveries divided
	// by it: how many messages a write carries. Omitted if unreadable.
	WriteCalls         int64   `json:"write_calls,omitempty"`
	DeliveriesPerWrite float64 `json:"deliveries_per_write,omitempty"`
	// GoroutinesBefore and GoroutinesConnected are the server's
	// go_goroutines before connecting and after --settle, read from
	// --metrics-url (0: not read).
	GoroutinesBefore    int64 `json:"goroutines_before,omitempty"`
	GoroutinesConnected int64 `json:"goroutines_connected,omitempty"`
}

// HostStats cover the window from the end of the settle to the end of
// the drain (or of the idle hold).
type HostStats struct {
	Cores int `json:"cores"`
	// BusyPercent is the share of all cores' time not idle, from /proc/stat.
	BusyPercent float64 `json:"busy_percent"`
	// ClientCPUSeconds is this tool's CPU time, worker processes included.
	ClientCPUSeconds float64 `json:"client_cpu_seconds"`
}

func (r *Result) writeJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

func (r *Result) writeTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }
	row("target", "%s  %s (publish %s)", r.Target, r.URL, r.PubURL)
	s := &r.Subscribers
	row("subscribers", "%d ready of %d, %d failed, %d dropped (%s, %s, connected in %.2fs)",
		s.Ready, s.Wanted, s.Failed, s.Dropped, protocolText(s.H2Conns), workersText(s.Workers), s.ConnectSeconds)
	p := &r.Publish
	switch {
	case r.Storm != nil:
		writeStormTable(row, r.Storm)
	case r.Churn != nil:
		c := r.Churn
		row("churn", "%d subscribe+close cycles in %.2fs = %.1f/s over %d loops, %d failed", c.Cycles, c.Seconds, c.PerSecond, c.Loops, c.Failed)
		if c.ServerCPUPerThousand > 0 {
			row("", "server CPU %.4f s per 1,000 cycles", c.ServerCPUPerThousand)
		}
	case p.Rate == 0:
		row("publish", "none (idle for the window)")
	default:
		rate := "max"
		if p.Rate > 0 {
			rate = fmt.Sprintf("%g/s", p.Rate)
		}
		row("publish", "%d acked in %.2fs = %.1f/s (asked %s, %d B data, %d conn), %d failed, %d skipped",
			p.Acked, p.Seconds, p.PerSecond, rate, p.Size, p.Publishers, p.Failed, p.Skipped)
		d := &r.Deliveries
		row("deliveries", "%d expected, %d received, %d lost (%d subscribers), %d duplicate, %d out of order",
			d.Expected, d.Received, d.Lost, d.SubscribersWithLoss, d.Duplicates, d.OutOfOrder)
		row("", "%d total = %.0f/s; %d early, %d foreign, %d lagged", d.Total, d.PerSecond, d.Early, d.Foreign, d.Lagged)
	}
	if l := r.Latency; l != nil && r.Churn != nil {
		row("ready ms", "p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (n=%d)", l.P50, l.P90, l.P99, l.P999, l.Max, l.Count)
	} else if l != nil {
		row("latency ms", "p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (n=%d)", l.P50, l.P90, l.P99, l.P999, l.Max, l.Count)
	}
	if st := r.Stuck; st != nil {
		switch {
		case !st.Measured:
			row("stuck", "%d connections that never read (%d B receive buffer); cut-off times not measurable here", st.Conns, st.ReadBuffer)
		case st.CutOff == 0:
			row("stuck", "%d connections that never read (%d B receive buffer), none cut off by the end", st.Conns, st.ReadBuffer)
		default:
			row("stuck", "%d connections that never read (%d B receive buffer), %d cut off: p50 %.3fs, max %.3fs after the first publish",
				st.Conns, st.ReadBuffer, st.CutOff, st.CutOffP50, st.CutOffMax)
		}
	}
	if v := r.Server; v != nil {
		if r.Publish.Rate != 0 && r.Churn == nil {
			row("server cpu", "%.3f s in window = %.3f s per million deliveries (pid %d)", v.CPUSeconds, v.CPUPerMillion, v.PID)
			if v.WriteCalls > 0 {
				row("server writes", "%d write system calls, %.2f deliveries per write", v.WriteCalls, v.DeliveriesPerWrite)
			}
		} else {
			row("server cpu", "%.3f s in window (pid %d)", v.CPUSeconds, v.PID)
		}
		row("server rss", "%s before, %s connected, %s at end; %.0f B (%.2f KiB) per subscriber",
			mib(v.RSSBefore), mib(v.RSSConnected), mib(v.RSSEnd), v.RSSPerSubscriber, v.RSSPerSubscriber/1024)
		if v.GoroutinesConnected > 0 {
			row("server goroutines", "%d before, %d connected", v.GoroutinesBefore, v.GoroutinesConnected)
		}
	}
	if h := r.Host; h != nil {
		row("host", "%d cores %.0f%% busy in window; this tool used %.3f s CPU", h.Cores, h.BusyPercent, h.ClientCPUSeconds)
	}
	if len(r.Errors) > 0 {
		keys := make([]string, 0, len(r.Errors))
		for k := range r.Errors {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return r.Errors[keys[i]] > r.Errors[keys[j]] })
		for i, k := range keys {
			if i == 10 {
				row("", "... %d more kinds", len(keys)-i)
				break
			}
			row(map[bool]string{true: "errors"}[i == 0], "%dx %s", r.Errors[k], k)
		}
	}
	row("result", "%s", map[bool]string{true: "OK", false: "FAILED (see above)"}[r.OK])
	return tw.Flush()
}

func workersText(n int) string {
	if n == 0 {
		return "in process"
	}
	return fmt.Sprintf("%d worker processes", n)
}

// protocolText says how the streams are carried.
func protocolText(h2Conns int) string {
	if h2Conns == 0 {
		return "HTTP/1.1"
	}
	return fmt.Sprintf("HTTP/2 over %d connections", h2Conns)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// addErrors merges error counts into dst, prefixing each with who saw it.
func addErrors(dst map[string]int, who string, src map[string]int) {
	for k, v := range src {
		dst[strings.TrimSpace(who+" "+k)] += v
	}
}
