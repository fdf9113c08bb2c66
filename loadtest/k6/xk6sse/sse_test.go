package sse

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.k6.io/k6/metrics"
)

func testMetrics() (*metrics.Registry, *sseMetrics) {
	r := metrics.NewRegistry()
	return r, &sseMetrics{
		streams: r.MustNewMetric("sse_streams", metrics.Counter),
		errors:  r.MustNewMetric("sse_stream_errors", metrics.Counter),
		events:  r.MustNewMetric("sse_events", metrics.Counter),
		latency: r.MustNewMetric("sse_delivery_latency", metrics.Trend, metrics.Time),
	}
}

// A stream's events become samples: one sse_events per dispatched event,
// one sse_delivery_latency per event with a JSON "ts".
func TestRead(t *testing.T) {
	r, m := testMetrics()
	samples := make(chan metrics.SampleContainer, 100)
	s := &stream{mi: &ModuleInstance{metrics: m}, ctx: context.Background(), samples: samples, tags: r.RootTagSet()}
	sent := float64(time.Now().Add(-50*time.Millisecond).UnixNano()) / 1e6
	body := ": ok\n\n" +
		fmt.Sprintf("id: 1\nevent: load\ndata: {\"ts\":%f,\"pad\":\"x\"}\n\n", sent) +
		"data: two\r\ndata: lines\r\n\r\n" + // CRLF, two data lines: one event
		"data\n\n" + // a data field with no colon: an empty line of data, still an event
		"event: no data\n\n" + // no data: not dispatched
		"data-x: not a data field\n\n"
	res := &Result{}
	if err := s.read(strings.NewReader(body), res); err != nil {
		t.Fatal(err)
	}
	close(samples)
	var events, lat []float64
	for c := range samples {
		for _, sm := range c.GetSamples() {
			switch sm.Metric {
			case m.events:
				events = append(events, sm.Value)
			case m.latency:
				lat = append(lat, sm.Value)
			}
		}
	}
	if res.Events != 3 || len(events) != 3 {
		t.Errorf("events: result %d, samples %v; want 3", res.Events, events)
	}
	if len(lat) != 1 || lat[0] < 50 || lat[0] > 5000 {
		t.Errorf("latency samples %v, want one of about 50 ms", lat)
	}
}

func TestMaxEvents(t *testing.T) {
	r, m := testMetrics()
	s := &stream{mi: &ModuleInstance{metrics: m}, ctx: context.Background(), samples: make(chan metrics.SampleContainer, 10), tags: r.RootTagSet(), max: 2}
	res := &Result{}
	if err := s.read(strings.NewReader(strings.Repeat("data: x\n\n", 5)), res); err != nil || res.Events != 2 {
		t.Errorf("maxEvents 2: %d events, %v", res.Events, err)
	}
}

func TestSentAt(t *testing.T) {
	for in, want := range map[string]float64{`{"ts":1700000000123}`: 1700000000123, `{"ts":1.5,"x":[1]}`: 1.5} {
		if got, ok := sentAt([]byte(in)); !ok || got != want {
			t.Errorf("sentAt(%s) = %v, %v", in, got, ok)
		}
	}
	for _, in := range []string{``, `plain`, `{"t":1}`, `{"ts":"1"}`, `{bad`, `[1]`} {
		if _, ok := sentAt([]byte(in)); ok {
			t.Errorf("sentAt(%s) found a time", in)
		}
	}
}

// The stream is read by internal/sseparse, by the Standard's rules: lines
// may end with a lone CR, a leading BOM is dropped, and an event the
// stream ends in the middle of is not counted.
func TestReadStandard(t *testing.T) {
	r, m := testMetrics()
	samples := make(chan metrics.SampleContainer, 100)
	s := &stream{mi: &ModuleInstance{metrics: m}, ctx: context.Background(), samples: samples, tags: r.RootTagSet()}
	res := &Result{}
	if err := s.read(strings.NewReader("\uFEFFdata: a\rdata: b\r\rdata: c\n\ndata: cut off"), res); err != nil {
		t.Fatal(err)
	}
	if res.Events != 2 {
		t.Errorf("events %d, want 2 (CR-ended, then LF-ended; the last unfinished)", res.Events)
	}
}
