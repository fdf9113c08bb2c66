// Package promtext writes the Prometheus text format with its metadata:
// every metric family's `# HELP` and `# TYPE` lines, once, before the
// family's first series.
//
// github.com/VictoriaMetrics/metrics writes the values (its Write*
// helpers, Sets and process metrics) but no help text: with its metadata
// switch on (metrics.ExposeMetadata) it writes an empty `# HELP` before
// every series, so a family with labels gets several, which the format
// forbids. Here each family is described once, next to where its series
// are written (a Family), and Writer puts the metadata in: Uint and Float
// for values written by hand, Copy for what a metrics.Set or
// metrics.WriteProcessMetrics wrote (without metadata) into a buffer.
// Check holds a text to the format's rules, and Promtool runs
// `promtool check metrics` when it is installed (for tests and CI).
//
// A Writer belongs to one scrape, on one goroutine. Families are
// read-only once built and may be shared.
package promtext

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Metric types, as the # TYPE line names them.
const (
	Counter   = "counter"
	Gauge     = "gauge"
	Histogram = "histogram"
	Summary   = "summary"
)

// Family describes one metric family.
type Family struct {
	Name string // what its series are called (histograms: before _bucket, _sum, _count)
	Type string // Counter, Gauge, Histogram or Summary
	Help string // one line: what is counted, in which unit, when it moves
	// From, when set, is the name the copied text uses for this family;
	// Copy writes Name instead (a library's name that Prometheus's
	// naming rules refuse, such as a counter without _total).
	From string
}

// Families indexes families by the name the copied text uses (From, or
// Name) for Copy.
type Families map[string]*Family

// Index returns fams indexed for Copy.
func Index(fams ...[]Family) Families {
	m := make(Families)
	for _, list := range fams {
		for i := range list {
			f := &list[i]
			key := f.Name
			if f.From != "" {
				key = f.From
			}
			m[key] = f
		}
	}
	return m
}

// Writer writes series, each family's metadata once before its first
// series. Series of one family must be written one after the other.
type Writer struct {
	w       io.Writer
	seen    map[string]bool    // families whose metadata was written
	unknown map[string]*Family // families Copy met that its table lacks
	buf     []byte
	// Unknown is called with a family that Copy met and fams did not
	// describe, once per family; it is written with a help text that
	// says so and the type its name suggests. Nil: ignored.
	Unknown func(name string)
}

// NewWriter returns a Writer writing to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, seen: make(map[string]bool)}
}

// Write writes p as it is (text that carries its own metadata). It makes
// Writer an io.Writer, for writers such as ops.Config.Extra.
func (pw *Writer) Write(p []byte) (int, error) { return pw.w.Write(p) }

// Uint writes one series of f: labels is "" or `{name="value",...}`
// with values escaped (Label).
func (pw *Writer) Uint(f *Family, labels string, v uint64) {
	pw.meta(f)
	b := append(pw.buf[:0], f.Name...)
	b = append(b, labels...)
	b = append(b, ' ')
	b = strconv.AppendUint(b, v, 10)
	pw.buf = append(b, '\n')
	_, _ = pw.w.Write(pw.buf)
}

// Float writes one series of f, as Uint.
func (pw *Writer) Float(f *Family, labels string, v float64) {
	pw.meta(f)
	b := append(pw.buf[:0], f.Name...)
	b = append(b, labels...)
	b = append(b, ' ')
	b = strconv.AppendFloat(b, v, 'g', -1, 64)
	pw.buf = append(b, '\n')
	_, _ = pw.w.Write(pw.buf)
}

func (pw *Writer) meta(f *Family) {
	if pw.seen[f.Name] {
		return
	}
	pw.seen[f.Name] = true
	fmt.Fprintf(pw.w, "# HELP %s %s\n# TYPE %s %s\n", f.Name, escapeHelp(f.Help), f.Name, f.Type)
}

// Copy writes text, exposition lines without metadata (as
// VictoriaMetrics/metrics writes them with its metadata switch off),
// with each family's metadata from fams before its first line. Lines
// that already are metadata or comments are dropped: fams says it.
func (pw *Writer) Copy(text []byte, fams Families) {
	for len(text) > 0 {
		line := text
		if i := bytes.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = nil
		}
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		name := string(line[:nameEnd(line)])
		f, suffix := pw.familyOf(name, fams)
		pw.meta(f)
		b := append(pw.buf[:0], f.Name...)
		b = append(b, suffix...)
		b = append(b, line[len(name):]...)
		pw.buf = append(b, '\n')
		_, _ = pw.w.Write(pw.buf)
	}
}

// familyOf finds the family of a series name: the name itself, or for
// a histogram or summary the name without _bucket, _sum or _count (the
// suffix is returned, to be written after the family's name).
func (pw *Writer) familyOf(name string, fams Families) (*Family, string) {
	if f := fams[name]; f != nil {
		return f, ""
	}
	for _, suffix := range [...]string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if f := fams[base]; f != nil && (f.Type == Histogram || f.Type == Summary) {
				return f, suffix
			}
		}
	}
	if f := pw.unknown[name]; f != nil {
		return f, ""
	}
	if pw.Unknown != nil {
		pw.Unknown(name)
	}
	typ := Gauge
	if strings.HasSuffix(name, "_total") {
		typ = Counter
	}
	if pw.unknown == nil {
		pw.unknown = make(map[string]*Family)
	}
	f := &Family{Name: name, Type: typ, Help: UndescribedHelp}
	pw.unknown[name] = f
	return f, ""
}

// UndescribedHelp is the help text of a family Copy met that its table
// does not describe (a newer library's series; another platform's).
const UndescribedHelp = "Not described by tinysse: written by github.com/VictoriaMetrics/metrics."

// nameEnd is the length of the metric name at the start of line.
func nameEnd(line []byte) int {
	for i, c := range line {
		if c == '{' || c == ' ' || c == '\t' {
			return i
		}
	}
	return len(line)
}

// Label is a label value escaped as the text format requires: backslash,
// double quote and line feed.
func Label(s string) string {
	if !strings.ContainsAny(s, "\\\"\n") {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// escapeHelp escapes a help text: backslash and line feed.
func escapeHelp(s string) string {
	if !strings.ContainsAny(s, "\\\n") {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}
