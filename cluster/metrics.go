package cluster

import (
	"bytes"
	"io"

	"github.com/VictoriaMetrics/metrics"
	"github.com/tinysse/tinysse/internal/promtext"
)

// publishBuckets are the upper bounds (seconds) of the JetStream publish
// latency histogram: an acknowledgement takes a millisecond or so on a
// healthy cluster, seconds while it elects a leader.
var publishBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// nodeMetrics are a Node's series, in a set of its own (several nodes may
// live in one process: the tests). Counters and the histogram are safe
// from any goroutine; the gauges read the node when written.
type nodeMetrics struct {
	set            *metrics.Set
	publishSeconds *metrics.PrometheusHistogram // Publish: from the first attempt to JetStream's acknowledgement
	retries        *metrics.Counter             // Publish: attempts after the first
	duplicates     *metrics.Counter             // Publish: acknowledgements of a copy already stored
	redeliveries   *metrics.Counter             // deliveries skipped: from a consumer given up, or already applied
	consumerErrors *metrics.Counter             // consumers lost (follow.go), each replaced
	fetches        *metrics.Counter             // Replay: pull requests to JetStream
	replayed       *metrics.Counter             // Replay: messages read from the stream
	replayReads    *metrics.Counter             // Replay: reads of the stream (consumers made), a shared one once
	replayShared   *metrics.Counter             // Replay: replays answered by a read another replay started
}

func newNodeMetrics(n *Node) *nodeMetrics {
	s := metrics.NewSet()
	m := &nodeMetrics{
		set:            s,
		publishSeconds: s.NewPrometheusHistogramExt("tinysse_nats_publish_duration_seconds", publishBuckets),
		retries:        s.NewCounter("tinysse_nats_publish_retries_total"),
		duplicates:     s.NewCounter("tinysse_nats_publish_duplicates_total"),
		redeliveries:   s.NewCounter("tinysse_nats_redeliveries_total"),
		consumerErrors: s.NewCounter("tinysse_nats_consumer_errors_total"),
		fetches:        s.NewCounter("tinysse_nats_fetches_total"),
		replayed:       s.NewCounter("tinysse_nats_replayed_messages_total"),
		replayReads:    s.NewCounter("tinysse_nats_replay_reads_total"),
		replayShared:   s.NewCounter("tinysse_nats_replays_shared_total"),
	}
	s.NewGauge("tinysse_nats_connected", func() float64 {
		if n.Connected() {
			return 1
		}
		return 0
	})
	s.NewGauge("tinysse_nats_reconnects_total", func() float64 { return float64(n.nc.Stats().Reconnects) })
	s.NewGauge("tinysse_nats_applied_seq", func() float64 {
		n.resultsMu.Lock()
		defer n.resultsMu.Unlock()
		return float64(n.applied)
	})
	return m
}

// nodeFamilies describes the node's series for their # HELP and # TYPE
// lines. tinysse_nats_reconnects_total is a counter that the set
// computes when written (a gauge function to the library).
var nodeFamilies = promtext.Index([]promtext.Family{
	{Name: "tinysse_nats_publish_duration_seconds", Type: promtext.Histogram, Help: "Time from a publish's first attempt to JetStream's acknowledgement."},
	{Name: "tinysse_nats_publish_retries_total", Type: promtext.Counter, Help: "Publish attempts after the first."},
	{Name: "tinysse_nats_publish_duplicates_total", Type: promtext.Counter, Help: "Acknowledgements of a message the stream already held (a retried publish)."},
	{Name: "tinysse_nats_redeliveries_total", Type: promtext.Counter, Help: "Stream messages skipped: from a consumer given up, or already applied."},
	{Name: "tinysse_nats_consumer_errors_total", Type: promtext.Counter, Help: "Stream consumers lost, each replaced."},
	{Name: "tinysse_nats_fetches_total", Type: promtext.Counter, Help: "Pull requests to JetStream for replay."},
	{Name: "tinysse_nats_replayed_messages_total", Type: promtext.Counter, Help: "Messages read from the stream for replay."},
	{Name: "tinysse_nats_replay_reads_total", Type: promtext.Counter, Help: "Reads of the stream made for replays (consumers made); a read shared by several replays counts once."},
	{Name: "tinysse_nats_replays_shared_total", Type: promtext.Counter, Help: "Replays answered by a read of the stream that another replay started."},
	{Name: "tinysse_nats_connected", Type: promtext.Gauge, Help: "1 while the node is connected to NATS, else 0."},
	{Name: "tinysse_nats_reconnects_total", Type: promtext.Counter, Help: "Reconnections to NATS."},
	{Name: "tinysse_nats_applied_seq", Type: promtext.Gauge, Help: "The last stream sequence applied on this node."},
})

// WritePrometheus writes the node's series in the Prometheus text format,
// each family with its # HELP and # TYPE lines: the JetStream publish
// latency, retries and duplicates, the consumer's redeliveries and
// errors, replay fetches, the link to NATS and the last stream sequence
// applied here. Safe from any goroutine.
func (n *Node) WritePrometheus(w io.Writer) {
	var buf bytes.Buffer
	n.metrics.set.WritePrometheus(&buf)
	promtext.NewWriter(w).Copy(buf.Bytes(), nodeFamilies)
}
