package promtext

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestWriterMetadataOncePerFamily(t *testing.T) {
	reqs := Family{Name: "x_requests_total", Type: Counter, Help: "Requests.\nSecond line \\ with a backslash."}
	temp := Family{Name: "x_temperature", Type: Gauge, Help: "Degrees."}
	var out bytes.Buffer
	pw := NewWriter(&out)
	pw.Uint(&reqs, `{code="200"}`, 3)
	pw.Uint(&reqs, `{code="500",path="`+Label("a\"b\\c\nd")+`"}`, 1)
	pw.Float(&temp, "", 21.5)
	want := `# HELP x_requests_total Requests.\nSecond line \\ with a backslash.
# TYPE x_requests_total counter
x_requests_total{code="200"} 3
x_requests_total{code="500",path="a\"b\\c\nd"} 1
# HELP x_temperature Degrees.
# TYPE x_temperature gauge
x_temperature 21.5
`
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
	if fams, err := Check(out.Bytes()); err != nil || !slices.Equal(fams, []string{"x_requests_total", "x_temperature"}) {
		t.Fatalf("Check: %v %v", fams, err)
	}
}

// TestCopy: text written without metadata (as VictoriaMetrics/metrics
// writes it) gets each family's metadata once; a histogram's _bucket,
// _sum and _count lines belong to it; a renamed family is written under
// its new name; comments in the copied text are dropped; an unknown
// family is reported and described as such.
func TestCopy(t *testing.T) {
	fams := Index([]Family{
		{Name: "lat_seconds", Type: Histogram, Help: "Latency."},
		{Name: "cpus", From: "cpu_count", Type: Gauge, Help: "CPUs."},
	})
	in := "# HELP lat_seconds\n# TYPE lat_seconds histogram\n" +
		"lat_seconds_bucket{h=\"a\",le=\"1\"} 1\nlat_seconds_bucket{h=\"a\",le=\"+Inf\"} 2\nlat_seconds_sum{h=\"a\"} 1.5\nlat_seconds_count{h=\"a\"} 2\n" +
		"cpu_count 2\nmystery_total 7\nmystery_total{x=\"1\"} 8\n"
	var out bytes.Buffer
	var unknown []string
	pw := NewWriter(&out)
	pw.Unknown = func(name string) { unknown = append(unknown, name) }
	pw.Copy([]byte(in), fams)
	got := out.String()
	for _, want := range []string{
		"# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\nlat_seconds_bucket{h=\"a\",le=\"1\"} 1\n",
		"lat_seconds_count{h=\"a\"} 2\n# HELP cpus CPUs.\n# TYPE cpus gauge\ncpus 2\n",
		"# HELP mystery_total " + UndescribedHelp + "\n# TYPE mystery_total counter\nmystery_total 7\nmystery_total{x=\"1\"} 8\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks\n%s\ngot\n%s", want, got)
		}
	}
	if strings.Count(got, "# HELP lat_seconds") != 1 || strings.Contains(got, "cpu_count") {
		t.Errorf("metadata repeated or old name kept:\n%s", got)
	}
	if !slices.Equal(unknown, []string{"mystery_total"}) {
		t.Errorf("Unknown called with %v, want mystery_total once", unknown)
	}
	if _, err := Check(out.Bytes()); err != nil {
		t.Errorf("Check: %v", err)
	}
}

// TestCheckRefuses: each rule Check holds text to, broken once.
func TestCheckRefuses(t *testing.T) {
	for name, text := range map[string]string{
		"no metadata":      "a 1\n",
		"empty help":       "# HELP a \n# TYPE a gauge\na 1\n",
		"no type":          "# HELP a A.\na 1\n",
		"bad type":         "# HELP a A.\n# TYPE a meter\na 1\n",
		"help twice":       "# HELP a A.\n# TYPE a gauge\na 1\n# HELP a A.\na 2\n",
		"split family":     "# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n",
		"counter name":     "# HELP a A.\n# TYPE a counter\na 1\n",
		"histogram no sfx": "# HELP h H.\n# TYPE h histogram\nh 1\n",
	} {
		if _, err := Check([]byte(text)); err == nil {
			t.Errorf("%s: Check accepted\n%s", name, text)
		}
	}
}
