package ops

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/promtext"
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
	// mode's: cluster.Node.WritePrometheus), each family with its own
	// # HELP and # TYPE lines.
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
// histograms, Extra's, and the Go runtime's and process's (go_*,
// process_*), each family with its # HELP and # TYPE lines
// (families.go).
func (m *Metrics) WritePrometheus(w io.Writer) {
	s := m.Snapshot()
	e := &s.Engine
	pw := promtext.NewWriter(w)
	pw.Uint(&famBuildInfo, `{version="`+promtext.Label(m.cfg.Version)+`"}`, 1)
	pw.Float(&famUptime, "", time.Since(m.start).Seconds())
	pw.Uint(&famPublishes, "", e.Publishes)
	pw.Uint(&famDeliveries, "", e.Deliveries)
	pw.Uint(&famSubscribers, "", uint64(max(e.Subscribers, 0)))
	pw.Uint(&famSubscribes, "", e.Subscribes)
	for _, r := range []struct {
		name string
		n    uint64
	}{{"left", e.Closed.Left}, {"lagged", e.Closed.Lagged}, {"slow", e.Closed.Slow}, {"timeout", e.Closed.Timeout}, {"shutdown", e.Closed.Shutdown}, {"expired", e.Closed.Expired}, {"disconnected", e.Closed.Disconnected}} {
		pw.Uint(&famDisconnects, `{reason="`+r.name+`"}`, r.n)
	}
	pw.Uint(&famReplays, "", e.Replays)
	pw.Uint(&famReplayGaps, "", e.ReplayGaps)

	pw.Uint(&famTopics, "", uint64(len(e.Topics)))
	for _, t := range s.Top {
		pw.Uint(&famTopicSubs, `{topic="`+promtext.Label(t.Name)+`"}`, uint64(max(t.Subscribers, 0)))
	}
	pw.Uint(&famTopicSubsOther, "", uint64(max(s.Other.Subscribers, 0)))
	pw.Uint(&famTopicsOther, "", uint64(s.OtherTopics))
	pw.Uint(&famRingCapacity, "", uint64(e.Capacity))
	for _, t := range s.Top {
		pw.Uint(&famRingBuffered, `{topic="`+promtext.Label(t.Name)+`"}`, uint64(t.Buffered))
	}
	pw.Uint(&famRingOther, "", uint64(s.Other.Buffered))
	pw.Uint(&famHistoryBytes, "", uint64(max(e.HistoryBytes, 0)))
	pw.Uint(&famHistoryMax, "", uint64(max(e.MaxHistoryBytes, 0)))
	pw.Uint(&famHistoryEvicted, "", e.HistoryEvicted)

	if m.cfg.Transport != nil {
		tr := &s.Transport
		for i, name := range transport.RejectReasons {
			pw.Uint(&famPubRejected, `{reason="`+name+`"}`, tr.PublishRejected[i])
		}
		for i, name := range transport.RejectReasons {
			pw.Uint(&famSubRejected, `{reason="`+name+`"}`, tr.SubscribeRejected[i])
		}
		pw.Uint(&famConnsRefused, "", tr.ConnsRefused)
		pw.Uint(&famConnsRefusedIP, "", tr.ConnsRefusedPerIP)
		pw.Uint(&famOpenConns, "", uint64(max(tr.OpenConns, 0)))
		// By protocol: a connection that has not said yet counts as http1.
		pw.Uint(&famConns, `{protocol="http1"}`, uint64(max(tr.OpenConns-tr.H2Conns, 0)))
		pw.Uint(&famConns, `{protocol="h2"}`, uint64(max(tr.H2Conns, 0)))
		pw.Uint(&famStreams, `{protocol="http1"}`, uint64(max(tr.Streams-tr.H2Streams, 0)))
		pw.Uint(&famStreams, `{protocol="h2"}`, uint64(max(tr.H2Streams, 0)))
		pw.Uint(&famH2Cuts, `{reason="rapid_reset"}`, tr.H2ResetCuts)
		pw.Uint(&famH2Cuts, `{reason="continuation_flood"}`, tr.H2ContinuationCuts)
	}
	var buf bytes.Buffer
	if m.cfg.Hooks != nil {
		for _, h := range s.Hooks {
			if h.Name != "tick" {
				pw.Uint(&famHookCalls, `{hook="`+h.Name+`"}`, h.Calls)
			}
		}
		for _, h := range s.Hooks {
			pw.Uint(&famHookErrors, `{hook="`+h.Name+`"}`, h.Errors)
		}
		m.cfg.Hooks.set.WritePrometheus(&buf)
		pw.Copy(buf.Bytes(), hookDurationFamily)
	}
	if m.cfg.Extra != nil {
		m.cfg.Extra(pw)
	}
	buf.Reset()
	metrics.WriteProcessMetrics(&buf)
	pw.Copy(buf.Bytes(), processFamilies)
}

func rejectName(i int) string { return transport.RejectReasons[i] }
