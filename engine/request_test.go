package engine_test

import (
	"strings"
	"testing"

	"github.com/tinysse/tinysse/engine"
)

func TestRequestSize(t *testing.T) {
	var none *engine.Request
	if none.Size() != 0 {
		t.Fatal("a nil request holds bytes")
	}
	small := (&engine.Request{Method: "POST"}).Size()
	big := (&engine.Request{Method: "POST", Headers: map[string]string{"cookie": strings.Repeat("c", 5000)}}).Size()
	if small <= 0 || big-small < 5000+len("cookie") {
		t.Fatalf("sizes %d and %d: a 5,000-byte header must count", small, big)
	}
}
