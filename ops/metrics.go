package ops

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/transport"
	"github.com/valyala/fasthttp"
)

// Config configures Metrics. The zero value of every field is its
// documented default.
type Config struct {
	// Engine is the engine whose Stats are reported. Required.
	Engine *engine.Engine
	// Transport returns the transport's Stats; nil reports none. A func,
	// because the transport is built after the routes that serve metrics.
	Transport func() transport.Stats
	// Hooks times the script's hooks; nil when there is no script.
	Hooks *HookStats
	// HookErrors returns the errors the hook seam does not return
	// (lua.Runtime.HookErrors); nil when there is no script.
	HookErrors func() map[string]uint64
	// TopTopics is how many topics get series of their own (those with
	// the most subscribers); the rest are summed into *_other series.
	// Default 10.
	TopTopics int
	// Version is reported as tinysse_build_info{version=...}.
	Version string
	// Extra, when set, writes more series after the server's own (cluster
	// mode's: cluster.Node.WritePrometheus).
	Extra func(w io.Writer)
}

// Metrics reads the server's counters when asked and writes them in the
// Prometheus text format. It keeps no counter of its own: the dashboard's
// stats messages are published with engine.PublishLocal, which the
// engine's publish count leaves out.
type Metrics struct {
	cfg   Config    // read-only after NewMetrics
	start time.Time // read-only after NewMetrics
}

// NewMetrics checks cfg and returns a Metrics.
func NewMetrics(cfg Config) (*Metrics, error) {
	if cfg.Engine == nil {
		return nil, fmt.Errorf("ops: metrics need an engine")
	}
	if cfg.TopTopics <= 0 {
		cfg.TopTopics = 10
	}
	return &Metrics{cfg: cfg, start: time.Now()}, nil
}

// Snapshot is everything the metrics and the dashboard report, read at one
// moment.
type Snapshot struct {
	Engine    engine.Stats
	Transport transport.Stats
	Hooks     []HookSnapshot
	// Top are the TopTopics topics with the most subscribers (then the
	// most buffered messages, then by name); Other sums the rest.
	Top   []engine.TopicStats
	Other engine.TopicStats
	// OtherTopics is how many topics Other sums.
	OtherTopics int
}

// Snapshot reads every counter now. The engine's publishes exclude the
// dashboard's own stats messages (its deliveries do not: see README).
func (m *Metrics) Snapshot() Snapshot {
	var s Snapshot
	s.Engine = m.cfg.Engine.Stats()
	if m.cfg.Transport != nil {
		s.Transport = m.cfg.Transport()
	}
	if m.cfg.Hooks != nil {
		var errs map[string]uint64
		if m.cfg.HookErrors != nil {
			errs = m.cfg.HookErrors()
		}
		s.Hooks = m.cfg.Hooks.snapshot(errs)
	}
	topics := s.Engine.Topics
	slices.SortFunc(topics, func(a, b engine.TopicStats) int {
		switch {
		case a.Subscribers != b.Subscribers:
			return int(b.Subscribers - a.Subscribers)
		case a.Buffered != b.Buffered:
			return b.Buffered - a.Buffered
		}
		return strings.Compare(a.Name, b.Name)
	})
	n := min(len(topics), m.cfg.TopTopics)
	s.Top = topics[:n]
	for _, t := range topics[n:] {
		s.Other.Subscribers += t.Subscribers
		s.Other.Buffered += t.Buffered
		s.Other.Published += t.Published
	}
	s.OtherTopics = len(topics) - n
	return s
}

// Handler serves the metrics to GET and HEAD.
func (m *Metrics) Handler() fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if !ctx.IsGet() && !ctx.IsHead() {
			ctx.Response.Header.Set("Allow", "GET, HEAD")
			ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"error":"method not allowed"}`)
			return
		}
		ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
		ctx.Response.Header.Set("Cache-Control", "no-store")
		m.WritePrometheus(ctx)
	}
}

// WritePrometheus writes every series: the server's, the hook latency
// histograms, and the Go runtime's and process's (go_*, process_*).
func (m *Metrics) WritePrometheus(w io.Writer) {
	s := m.Snapshot()
	e := &s.Engine
	metrics.WriteGaugeUint64(w, `tinysse_build_info{version="`+escapeLabel(m.cfg.Version)+`"}`, 1)
	metrics.WriteGaugeFloat64(w, "tinysse_uptime_seconds", time.Since(m.start).Seconds())
	metrics.WriteCounterUint64(w, "tinysse_publishes_total", e.Publishes)
	metrics.WriteCounterUint64(w, "tinysse_deliveries_total", e.Deliveries)
	metrics.WriteGaugeUint64(w, "tinysse_subscribers", uint64(max(e.Subscribers, 0)))
	metrics.WriteCounterUint64(w, "tinysse_subscribes_total", e.Subscribes)
	for _, r := range []struct {
		name string
		n    uint64
	}{{"left", e.Closed.Left}, {"lagged", e.Closed.Lagged}, {"slow", e.Closed.Slow}, {"timeout", e.Closed.Timeout}, {"shutdown", e.Closed.Shutdown}, {"expired", e.Closed.Expired}, {"disconnected", e.Closed.Disconnected}} {
		metrics.WriteCounterUint64(w, `tinysse_disconnects_total{reason="`+r.name+`"}`, r.n)
	}
	metrics.WriteCounterUint64(w, "tinysse_replays_total", e.Replays)
	metrics.WriteCounterUint64(w, "tinysse_replay_gaps_total", e.ReplayGaps)

	metrics.WriteGaugeUint64(w, "tinysse_topics", uint64(len(e.Topics)))
	for _, t := range s.Top {
		metrics.WriteGaugeUint64(w, `tinysse_topic_subscribers{topic="`+escapeLabel(t.Name)+`"}`, uint64(max(t.Subscribers, 0)))
	}
	metrics.WriteGaugeUint64(w, "tinysse_topic_subscribers_other", uint64(max(s.Other.Subscribers, 0)))
	metrics.WriteGaugeUint64(w, "tinysse_topics_other", uint64(s.OtherTopics))
	metrics.WriteGaugeUint64(w, "tinysse_ring_capacity", uint64(e.Capacity))
	for _, t := range s.Top {
		metrics.WriteGaugeUint64(w, `tinysse_ring_buffered{topic="`+escapeLabel(t.Name)+`"}`, uint64(t.Buffered))
	}
	metrics.WriteGaugeUint64(w, "tinysse_ring_buffered_other", uint64(s.Other.Buffered))
	metrics.WriteGaugeUint64(w, "tinysse_history_bytes", uint64(max(e.HistoryBytes, 0)))
	metrics.WriteGaugeUint64(w, "tinysse_history_bytes_max", uint64(max(e.MaxHistoryBytes, 0)))
	metrics.WriteCounterUint64(w, "tinysse_history_evicted_total", e.HistoryEvicted)

	if m.cfg.Transport != nil {
		tr := &s.Transport
		for i, name := range transport.RejectReasons {
			metrics.WriteCounterUint64(w, `tinysse_publish_rejected_total{reason="`+name+`"}`, tr.PublishRejected[i])
		}
		for i, name := range transport.RejectReasons {
			metrics.WriteCounterUint64(w, `tinysse_subscribe_rejected_total{reason="`+name+`"}`, tr.SubscribeRejected[i])
		}
		metrics.WriteCounterUint64(w, "tinysse_connections_refused_total", tr.ConnsRefused)
		metrics.WriteCounterUint64(w, "tinysse_connections_refused_per_ip_total", tr.ConnsRefusedPerIP)
		metrics.WriteGaugeUint64(w, "tinysse_open_connections", uint64(max(tr.OpenConns, 0)))
		// By protocol: a connection that has not said yet counts as http1.
		metrics.WriteGaugeUint64(w, `tinysse_connections{protocol="http1"}`, uint64(max(tr.OpenConns-tr.H2Conns, 0)))
		metrics.WriteGaugeUint64(w, `tinysse_connections{protocol="h2"}`, uint64(max(tr.H2Conns, 0)))
		metrics.WriteGaugeUint64(w, `tinysse_streams{protocol="http1"}`, uint64(max(tr.Streams-tr.H2Streams, 0)))
		metrics.WriteGaugeUint64(w, `tinysse_streams{protocol="h2"}`, uint64(max(tr.H2Streams, 0)))
		metrics.WriteCounterUint64(w, `tinysse_h2_connections_cut_total{reason="rapid_reset"}`, tr.H2ResetCuts)
		metrics.WriteCounterUint64(w, `tinysse_h2_connections_cut_total{reason="continuation_flood"}`, tr.H2ContinuationCuts)
	}
	if m.cfg.Hooks != nil {
		for _, h := range s.Hooks {
			if h.Name != "tick" {
				metrics.WriteCounterUint64(w, `tinysse_hook_calls_total{hook="`+h.Name+`"}`, h.Calls)
			}
		}
		for _, h := range s.Hooks {
			metrics.WriteCounterUint64(w, `tinysse_hook_errors_total{hook="`+h.Name+`"}`, h.Errors)
		}
		m.cfg.Hooks.set.WritePrometheus(w)
	}
	if m.cfg.Extra != nil {
		m.cfg.Extra(w)
	}
	metrics.WriteProcessMetrics(w)
}

// escapeLabel escapes a label value as the text format requires:
// backslash, double quote and line feed.
func escapeLabel(s string) string {
	if !strings.ContainsAny(s, "\\\"\n") {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

func rejectName(i int) string { return transport.RejectReasons[i] }
