package transport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// batchBody is a JSON array of n messages with size bytes of data each,
// as the load tool's --batch sends them.
func batchBody(n, size int) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"topic":["bench"],"data":"%d %s"}`, i, strings.Repeat("x", size))
	}
	b.WriteByte(']')
	return b.Bytes()
}

// BenchmarkDecodeBatch: decoding a batch of 100 messages of 200 bytes,
// per batch (allocs/op are the batch's: a few per message), beside the
// naive baseline: encoding/json into a slice of structs (which would
// match member names without regard to case and let a repeated name win).
func BenchmarkDecodeBatch(b *testing.B) {
	body := batchBody(100, 200)
	b.Run("decodeBatch", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			ms, _, _, err := decodeBatch("application/json", body, 1000)
			if err != nil || len(ms) != 100 {
				b.Fatal(len(ms), err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		type message struct {
			ID      string   `json:"id"`
			Event   string   `json:"event"`
			Data    *string  `json:"data"`
			Comment []string `json:"comment"`
			Topic   []string `json:"topic"`
		}
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			var ms []message
			if err := json.Unmarshal(body, &ms); err != nil || len(ms) != 100 {
				b.Fatal(len(ms), err)
			}
		}
	})
}
