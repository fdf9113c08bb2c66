package ops

import (
	"bytes"
	"cmp"
	"embed"
	"encoding/json"
	"fmt"
	"log/slog"
	"path"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/valyala/fasthttp"
)

// DefaultStatsTopic is the topic the dashboard's feed is published to.
const DefaultStatsTopic = "_tinysse.stats"

//go:embed dashboard
var dashboardFiles embed.FS

// DashboardConfig configures a Dashboard. The zero value of every field is
// its documented default.
type DashboardConfig struct {
	// Path is where the page is served; it ends in "/". Default "/_tinysse/".
	Path string
	// Topic is the topic the stats feed is published to. Default
	// DefaultStatsTopic.
	Topic string
	// PubPath and SubPath are the API's paths, for the page. Default "/sse".
	PubPath, SubPath string
	// APIPath is the server API's path (ending in /), whose history
	// endpoint fills the page's tail with a topic's recent messages when
	// it starts; "" when there is no API. The page does without when the
	// API refuses it (off on this address, no admin rights).
	APIPath string
	// Interval is how often the feed publishes. Default 1s. A new
	// watcher gets a message at once (within watchEvery), so that the
	// page shows the server's state on its first paint.
	Interval time.Duration
	// Metrics is where the feed reads its counters. Required.
	Metrics *Metrics
	// Version is shown on the page.
	Version string
	// Logger receives the feed's errors. Default slog.Default().
	Logger *slog.Logger
}

// watchEvery is how often Run looks for a new watcher of the feed, to
// publish at once rather than at the next Interval: one read of the
// topic's subscriber count (a read lock and an atomic load).
const watchEvery = 50 * time.Millisecond

// Dashboard serves the page and publishes its feed. Handler is safe from
// any goroutine (files is read-only); Run is called once, on a goroutine
// of its own, and is the only caller of publish.
type Dashboard struct {
	cfg   DashboardConfig
	files map[string]dashFile // immutable after NewDashboard
}

type dashFile struct {
	body  []byte
	ctype string
}

// NewDashboard checks cfg and prepares the page.
func NewDashboard(cfg DashboardConfig) (*Dashboard, error) {
	if cfg.Path == "" {
		cfg.Path = "/_tinysse/"
	}
	if !strings.HasPrefix(cfg.Path, "/") || !strings.HasSuffix(cfg.Path, "/") {
		return nil, fmt.Errorf("ops: dashboard path %q must start and end with /", cfg.Path)
	}
	if cfg.Topic == "" {
		cfg.Topic = DefaultStatsTopic
	}
	if cfg.PubPath == "" {
		cfg.PubPath = "/sse"
	}
	if cfg.SubPath == "" {
		cfg.SubPath = "/sse"
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Metrics == nil {
		return nil, fmt.Errorf("ops: the dashboard needs metrics")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := &Dashboard{cfg: cfg, files: make(map[string]dashFile)}
	page, err := json.Marshal(map[string]any{
		"pub_path": cfg.PubPath, "sub_path": cfg.SubPath, "topic": cfg.Topic, "api_path": cfg.APIPath,
		"interval_ms": cfg.Interval.Milliseconds(), "version": cfg.Version,
	})
	if err != nil {
		return nil, err
	}
	for name, ctype := range map[string]string{
		"index.html":  "text/html; charset=utf-8",
		"app.js":      "text/javascript; charset=utf-8",
		"style.css":   "text/css; charset=utf-8",
		"favicon.svg": "image/svg+xml",
	} {
		b, err := dashboardFiles.ReadFile("dashboard/" + name)
		if err != nil {
			return nil, err
		}
		// json.Marshal escapes < and >, so the config cannot close the
		// script element it sits in.
		b = bytes.Replace(b, []byte("{/*config*/}"), page, 1)
		d.files[name] = dashFile{body: b, ctype: ctype}
	}
	return d, nil
}

// Handler serves the page's files to GET and HEAD.
func (d *Dashboard) Handler() fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		p := string(ctx.Path())
		if p == strings.TrimSuffix(d.cfg.Path, "/") {
			ctx.Redirect(d.cfg.Path, fasthttp.StatusMovedPermanently)
			return
		}
		name := path.Clean("/" + strings.TrimPrefix(p, d.cfg.Path))[1:]
		if name == "" {
			name = "index.html"
		}
		f, ok := d.files[name]
		switch {
		case !ctx.IsGet() && !ctx.IsHead():
			ctx.Response.Header.Set("Allow", "GET, HEAD")
			jsonError(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed")
			return
		case !ok:
			jsonError(ctx, fasthttp.StatusNotFound, "not found")
			return
		}
		h := &ctx.Response.Header
		h.Set("Content-Type", f.ctype)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		ctx.SetBody(f.body)
	}
}

func jsonError(ctx *fasthttp.RequestCtx, status int, msg string) {
	b, _ := json.Marshal(map[string]string{"error": msg})
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// Run publishes a stats message to the feed's topic every Interval while
// the topic has subscribers, and at once when a new one comes (looked for
// every watchEvery), until stop is closed. It publishes through the
// engine, as an HTTP publish would after its hook: subscribers get it
// through the normal subscribe path (their subscribe and message hooks
// run). A page is counted among the topic's subscribers once its stream
// is registered with its shard, after its cursor is set: what Run
// publishes then reaches it.
func (d *Dashboard) Run(stop <-chan struct{}) {
	tick := min(d.cfg.Interval, watchEvery)
	t := time.NewTicker(tick)
	defer t.Stop()
	eng := d.cfg.Metrics.cfg.Engine
	watchers := 0
	var last time.Time // of the last publish
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		n := eng.Subscribers(d.cfg.Topic)
		due := n > watchers || n > 0 && time.Since(last) >= d.cfg.Interval-tick/2
		watchers = n
		if !due {
			continue
		}
		last = time.Now()
		if err := d.publish(eng); err != nil {
			if eng.Closing() {
				return
			}
			d.cfg.Logger.Warn("dashboard feed", "err", err)
		}
	}
}

func (d *Dashboard) publish(eng *engine.Engine) error {
	data, err := json.Marshal(d.feed(d.cfg.Metrics.Snapshot()))
	if err != nil {
		return err
	}
	// NoHook: the message hook is for the users' messages; a script that
	// filters by its own rules (examples/channels.lua) would drop these.
	// Who may read them is the subscribe hook's call.
	// PublishLocal: not counted as a user's publish, and in cluster mode
	// it takes no number from the stream's sequence (each node feeds its
	// own dashboard).
	m := &engine.Message{Event: "stats", Data: string(data), HasData: true, Topics: []string{d.cfg.Topic}, NoHook: true}
	_, err = eng.PublishLocal(m)
	return err
}

// feedMessage is what the page receives once per Interval.
type feedMessage struct {
	Time        int64       `json:"t"` // unix milliseconds
	Publishes   uint64      `json:"publishes"`
	Deliveries  uint64      `json:"deliveries"`
	Subscribers int64       `json:"subscribers"`
	Subscribes  uint64      `json:"subscribes"`
	Closed      feedClosed  `json:"closed"`
	Replays     uint64      `json:"replays"`
	ReplayGaps  uint64      `json:"replay_gaps"`
	Capacity    int         `json:"capacity"`
	TopicCount  int         `json:"topic_count"`
	Topics      []feedTopic `json:"topics"`
	Other       feedTopic   `json:"other"`
	OtherTopics int         `json:"other_topics"`
	// Patterns: the patterns subscribers hold, those with the most
	// subscribers first (at most feedPatterns); PatternCount all of them.
	Patterns     []feedTopic        `json:"patterns"`
	PatternCount int                `json:"pattern_count"`
	Rejected     map[string]uint64  `json:"rejected"`
	Refused      uint64             `json:"conns_refused"`
	OpenConns    int64              `json:"open_conns"`
	H2Conns      int64              `json:"h2_conns"`   // of open_conns, HTTP/2
	Streams      int64              `json:"streams"`    // event streams, both protocols
	H2Streams    int64              `json:"h2_streams"` // of streams, HTTP/2
	Hooks        []HookSnapshot     `json:"hooks"`
	Runtime      map[string]float64 `json:"runtime"`
}

type feedClosed struct {
	Left     uint64 `json:"left"`
	Lagged   uint64 `json:"lagged"`
	Slow     uint64 `json:"slow"`
	Timeout  uint64 `json:"timeout"`
	Shutdown uint64 `json:"shutdown"`
	Expired  uint64 `json:"expired"`
	// Disconnected: ended through the server API (POST disconnect).
	Disconnected uint64 `json:"disconnected"`
}

// feedPatterns bounds the patterns a stats message lists.
const feedPatterns = 10

type feedTopic struct {
	Name        string `json:"name"`
	Subscribers int64  `json:"subscribers"`
	Buffered    int    `json:"buffered"`
	Published   uint64 `json:"published"`
}

func (d *Dashboard) feed(s Snapshot) feedMessage {
	e := &s.Engine
	f := feedMessage{
		Time: time.Now().UnixMilli(), Publishes: e.Publishes, Deliveries: e.Deliveries,
		Subscribers: e.Subscribers, Subscribes: e.Subscribes, Closed: feedClosed(e.Closed),
		Replays: e.Replays, ReplayGaps: e.ReplayGaps, Capacity: e.Capacity,
		TopicCount: len(e.Topics), OtherTopics: s.OtherTopics,
		Other:    feedTopic{Subscribers: s.Other.Subscribers, Buffered: s.Other.Buffered, Published: s.Other.Published},
		Rejected: make(map[string]uint64),
		Refused:  s.Transport.ConnsRefused + s.Transport.ConnsRefusedPerIP, OpenConns: s.Transport.OpenConns,
		H2Conns: s.Transport.H2Conns, Streams: s.Transport.Streams, H2Streams: s.Transport.H2Streams,
		Hooks:   s.Hooks,
		Runtime: runtimeFigures(),
	}
	if f.Hooks == nil {
		f.Hooks = []HookSnapshot{}
	}
	// The feed's own topic is the page's plumbing, not the users'
	// traffic: left out of the table and the count.
	for _, t := range e.Topics {
		if t.Name == d.cfg.Topic {
			f.TopicCount--
			break
		}
	}
	f.Topics = make([]feedTopic, 0, len(s.Top))
	for _, t := range s.Top {
		if t.Name == d.cfg.Topic {
			continue
		}
		f.Topics = append(f.Topics, feedTopic{Name: t.Name, Subscribers: t.Subscribers, Buffered: t.Buffered, Published: t.Published})
	}
	f.PatternCount = len(e.Patterns)
	pats := slices.Clone(e.Patterns)
	slices.SortFunc(pats, func(a, b engine.TopicStats) int {
		return cmp.Or(cmp.Compare(b.Subscribers, a.Subscribers), strings.Compare(a.Name, b.Name))
	})
	f.Patterns = make([]feedTopic, 0, min(len(pats), feedPatterns))
	for _, t := range pats[:min(len(pats), feedPatterns)] {
		f.Patterns = append(f.Patterns, feedTopic{Name: t.Name, Subscribers: t.Subscribers, Buffered: t.Buffered, Published: t.Published})
	}
	for i, n := range s.Transport.PublishRejected {
		f.Rejected[rejectName(i)] = n
	}
	return f
}

// runtimeFigures are a few Go runtime figures for the page (Prometheus
// gets all of them from metrics.WriteProcessMetrics).
func runtimeFigures() map[string]float64 {
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(samples)
	value := func(s metrics.Sample) float64 {
		if s.Value.Kind() == metrics.KindUint64 {
			return float64(s.Value.Uint64())
		}
		return 0 // not supported by this Go version
	}
	return map[string]float64{
		"goroutines": float64(runtime.NumGoroutine()),
		"heap_bytes": value(samples[0]),
		"gc_cycles":  value(samples[1]),
	}
}
