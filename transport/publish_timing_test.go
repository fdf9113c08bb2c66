package transport

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// publishBodies are the JSON bodies the decoding benchmarks run on: a
// small message, and data of 4 KiB and 60 KiB (near --max-body-size).
func publishBodies() []struct {
	name string
	body []byte
} {
	var out []struct {
		name string
		body []byte
	}
	for _, n := range []int{16, 4 << 10, 60 << 10} {
		body := `{"id":"12345","event":"update","data":"` + strings.Repeat("x", n) + `","topic":["a","b"],"comment":["c"]}`
		out = append(out, struct {
			name string
			body []byte
		}{"data=" + strconv.Itoa(n), []byte(body)})
	}
	return out
}

// BenchmarkDecodePublish decodes a JSON publish body the server's way
// (decodePublish: exact keys, each once) and, as the baseline,
// encoding/json's plain Unmarshal into a struct (case-insensitive keys, the
// last duplicate wins), which is what the server did before.
func BenchmarkDecodePublish(b *testing.B) {
	ct := []byte("application/json")
	for _, c := range publishBodies() {
		b.Run("server/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.body)))
			for b.Loop() {
				if _, _, err := decodePublish(ct, c.body); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("unmarshal/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.body)))
			for b.Loop() {
				var v struct {
					ID, Event, Data *string
					Comment, Topic  stringList
				}
				if err := json.Unmarshal(c.body, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
