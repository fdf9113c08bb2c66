package cluster_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/tinysse/tinysse/cluster"
	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/promtext"
)

// TestNodeMetricsMetadata: every family a node writes has its # HELP and
// # TYPE, none is left undescribed, and promtool (when installed) finds
// nothing to say.
func TestNodeMetricsMetadata(t *testing.T) {
	ns := startNATS(t)
	n := startNode(t, ns, cluster.Config{}, engine.Config{})
	n.mustPublish("x")
	var buf bytes.Buffer
	n.cl.WritePrometheus(&buf)
	fams, err := promtext.Check(buf.Bytes())
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	for _, want := range []string{"tinysse_nats_publish_duration_seconds", "tinysse_nats_connected", "tinysse_nats_reconnects_total", "tinysse_nats_applied_seq"} {
		if !slices.Contains(fams, want) {
			t.Errorf("family %s missing from\n%s", want, buf.String())
		}
	}
	if strings.Contains(buf.String(), promtext.UndescribedHelp) {
		t.Errorf("a family is not described in cluster/metrics.go:\n%s", buf.String())
	}
	if found, out, err := promtext.Promtool(buf.Bytes()); found && (err != nil || strings.TrimSpace(out) != "") {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
