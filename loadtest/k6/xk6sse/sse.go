// Package sse is a k6 extension (JS import "k6/x/sse") that opens
// Server-Sent Events streams and reports what arrives as k6 metrics, so a
// k6 script can load an SSE server with subscribers. Stock k6 has no SSE
// client. Build a k6 with it (see loadtest/k6/README.md):
//
//	xk6 build v1.8.1 --with github.com/tinysse/tinysse/loadtest/k6/xk6sse=.
//
// In a script:
//
//	import sse from "k6/x/sse";
//	const res = sse.open("http://127.0.0.1:1983/sse", { duration: "10s" });
//	// res.status, res.events, res.error
//
// open blocks the VU for the stream's life: until duration passes, maxEvents
// events arrived, the server closed the stream or the test ends. Metrics:
//
//	sse_streams          counter  streams that answered 200 text/event-stream
//	sse_stream_errors    counter  streams that failed (connect, status, read)
//	sse_events           counter  events received (a blank line dispatched data)
//	sse_delivery_latency trend    now - ts, for events whose data is a JSON
//	                              object with "ts" (unix ms, the publisher's
//	                              Date.now()): publish-to-delivery latency
//
// Each VU's streams run on that VU's goroutine; the metrics are pushed to
// the VU's sample channel as events arrive.
package sse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/tinysse/tinysse/internal/sseparse"
	"go.k6.io/k6/js/modules"
	"go.k6.io/k6/metrics"
)

func init() {
	modules.Register("k6/x/sse", new(RootModule))
}

// RootModule is the global module; it makes one ModuleInstance per VU.
type RootModule struct{}

// ModuleInstance is the module as one VU sees it.
type ModuleInstance struct {
	vu      modules.VU
	metrics *sseMetrics
}

type sseMetrics struct {
	streams, errors, events, latency *metrics.Metric
}

var (
	_ modules.Module   = &RootModule{}
	_ modules.Instance = &ModuleInstance{}
)

// NewModuleInstance registers the metrics (the registry returns the same
// metric to every VU) and binds the module to vu.
func (*RootModule) NewModuleInstance(vu modules.VU) modules.Instance {
	r := vu.InitEnv().Registry
	return &ModuleInstance{vu: vu, metrics: &sseMetrics{
		streams: r.MustNewMetric("sse_streams", metrics.Counter),
		errors:  r.MustNewMetric("sse_stream_errors", metrics.Counter),
		events:  r.MustNewMetric("sse_events", metrics.Counter),
		latency: r.MustNewMetric("sse_delivery_latency", metrics.Trend, metrics.Time),
	}}
}

// Exports makes open the default export's method: sse.open(url, options).
func (mi *ModuleInstance) Exports() modules.Exports {
	return modules.Exports{Default: map[string]any{"open": mi.open}}
}

// Options of open, from the script's object.
type Options struct {
	Duration  string            `js:"duration"`  // Go or k6 duration; default 10s
	MaxEvents int64             `js:"maxEvents"` // 0: no limit
	Headers   map[string]string `js:"headers"`
	Tags      map[string]string `js:"tags"` // added to the metrics' tags
}

// Result is what open returns to the script.
type Result struct {
	Status int    `js:"status"`
	Events int64  `js:"events"`
	Error  string `js:"error"`
}

func (mi *ModuleInstance) open(url string, opts *Options) (*Result, error) {
	state := mi.vu.State()
	if state == nil {
		return nil, errors.New("sse.open: only in the VU code, not the init context")
	}
	if opts == nil {
		opts = &Options{}
	}
	d := 10 * time.Second
	if opts.Duration != "" {
		var err error
		if d, err = time.ParseDuration(opts.Duration); err != nil || d <= 0 {
			return nil, fmt.Errorf("sse.open: duration %q: want a positive duration like 10s", opts.Duration)
		}
	}
	tags := state.Tags.GetCurrentValues().Tags.With("url", url)
	for k, v := range opts.Tags {
		tags = tags.With(k, v)
	}
	s := &stream{mi: mi, ctx: mi.vu.Context(), samples: state.Samples, tags: tags, max: opts.MaxEvents}
	ctx, cancel := context.WithTimeout(mi.vu.Context(), d)
	defer cancel()
	res := s.run(ctx, state.Transport, url, opts.Headers)
	if res.Error != "" {
		s.push(mi.metrics.errors, 1, time.Now())
	}
	return res, nil
}

// stream is one open call: owned by the VU's goroutine.
type stream struct {
	mi      *ModuleInstance
	ctx     context.Context // the VU's: samples are pushed until it ends
	samples chan<- metrics.SampleContainer
	tags    *metrics.TagSet
	max     int64
}

func (s *stream) push(m *metrics.Metric, v float64, at time.Time) {
	metrics.PushIfNotDone(s.ctx, s.samples, metrics.Sample{
		TimeSeries: metrics.TimeSeries{Metric: m, Tags: s.tags},
		Time:       at,
		Value:      v,
	})
}

func (s *stream) run(ctx context.Context, rt http.RoundTripper, url string, headers map[string]string) *Result {
	res := &Result{}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if rt == nil {
		rt = http.DefaultTransport
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer resp.Body.Close()
	res.Status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		res.Error = fmt.Sprintf("status %d", resp.StatusCode)
		return res
	}
	s.push(s.mi.metrics.streams, 1, time.Now())
	err = s.read(resp.Body, res)
	if err != nil && ctx.Err() == nil {
		res.Error = err.Error()
	}
	return res
}

// read parses the event stream with internal/sseparse, the module's one
// reader of the HTML Standard's rules, until the body ends or maxEvents
// is reached.
func (s *stream) read(body io.Reader, res *Result) error {
	p := sseparse.New()
	buf := make([]byte, 4096)
	for {
		n, err := body.Read(buf)
		p.Feed(buf[:n])
		for b, ok := p.Next(); ok; b, ok = p.Next() {
			if b.Event == nil {
				continue
			}
			now := time.Now()
			res.Events++
			s.push(s.mi.metrics.events, 1, now)
			if ms, ok := sentAt([]byte(b.Event.Data)); ok {
				s.push(s.mi.metrics.latency, max(0, float64(now.UnixNano())/1e6-ms), now)
			}
			if s.max > 0 && res.Events >= s.max {
				return nil
			}
		}
		p.Events, p.Comments = p.Events[:0], p.Comments[:0] // it keeps them all otherwise
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil // the server ended the stream
			}
			return err
		}
	}
}

// sentAt is the "ts" (unix ms) of a JSON object event, if it has one.
func sentAt(data []byte) (float64, bool) {
	if len(data) == 0 || data[0] != '{' {
		return 0, false
	}
	var v struct {
		TS *float64 `json:"ts"`
	}
	if json.Unmarshal(data, &v) != nil || v.TS == nil {
		return 0, false
	}
	return *v.TS, true
}
