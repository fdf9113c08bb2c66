package transport

import (
	"bytes"
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
// per batch (allocs/op are the batch's: a few per message).
func BenchmarkDecodeBatch(b *testing.B) {
	body := batchBody(100, 200)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		ms, _, _, err := decodeBatch("application/json", body, 1000)
		if err != nil || len(ms) != 100 {
			b.Fatal(len(ms), err)
		}
	}
}
