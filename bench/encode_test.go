//go:build unix

package bench

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/tinysse/tinysse/engine"
)

// encodeCases are the messages BenchmarkEncode encodes.
var encodeCases = []struct {
	name string
	m    *engine.Message
}{
	{"single", &engine.Message{ID: "42", Event: "update", Data: payload, HasData: true}},
	{"multi", &engine.Message{ID: "42", Event: "update", HasData: true,
		Data:     strings.Repeat("a line of twenty-ish\n", 3) + "then CRLF\r\nthen CR\rthen the end",
		Comments: []string{"two\nlines"}}},
}

// naiveFrame is the baseline encoder: what one writes without thinking of
// allocations.
func naiveFrame(buf *bytes.Buffer, m *engine.Message) {
	if m.ID != "" {
		fmt.Fprintf(buf, "id: %s\n", m.ID)
	}
	if m.Event != "" {
		fmt.Fprintf(buf, "event: %s\n", m.Event)
	}
	if m.HasData {
		for _, l := range splitLines(m.Data) {
			fmt.Fprintf(buf, "data: %s\n", l)
		}
	}
	for _, c := range m.Comments {
		for _, l := range splitLines(c) {
			fmt.Fprintf(buf, ": %s\n", l)
		}
	}
	buf.WriteByte('\n')
}

func splitLines(s string) []string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.Split(s, "\n")
}

// TestNaiveFrameAgrees checks the baseline writes the same bytes.
func TestNaiveFrameAgrees(t *testing.T) {
	for _, c := range encodeCases {
		var buf bytes.Buffer
		naiveFrame(&buf, c.m)
		if want := engine.AppendFrame(nil, c.m); !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("%s: naive %q, AppendFrame %q", c.name, buf.Bytes(), want)
		}
	}
}

// BenchmarkEncode is one message encoded into a reused buffer: the
// encoding alone (Publish adds one allocation, the frame it keeps).
func BenchmarkEncode(b *testing.B) {
	for _, c := range encodeCases {
		size := int64(len(engine.AppendFrame(nil, c.m)))
		b.Run(c.name, func(b *testing.B) {
			b.Run("append", func(b *testing.B) {
				dst := make([]byte, 0, 1024)
				b.ReportAllocs()
				b.SetBytes(size)
				for b.Loop() {
					dst = engine.AppendFrame(dst[:0], c.m)
				}
			})
			b.Run("naive", func(b *testing.B) {
				var buf bytes.Buffer
				b.ReportAllocs()
				b.SetBytes(size)
				for b.Loop() {
					buf.Reset()
					naiveFrame(&buf, c.m)
				}
			})
		})
	}
}
