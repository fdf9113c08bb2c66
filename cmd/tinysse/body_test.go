package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tinysse/tinysse/internal/testserver"
)

// TestBodyLimitMetrics: every body refused for its size counts in
// tinysse_publish_rejected_total{reason="too_large"}, whether its length
// was announced (with or without Expect: 100-continue, which gets the 413
// without an invitation) or it was chunked and grew past --max-body-size.
func TestBodyLimitMetrics(t *testing.T) {
	addr, _, _ := runServer(t, []string{"--max-body-size", "1KB"})
	const head = "POST /sse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
	chunk := strings.Repeat("c", 700)
	for name, req := range map[string]string{
		"announced":           head + "Content-Length: 2000\r\n\r\n",
		"announced, expected": head + "Expect: 100-continue\r\nContent-Length: 2000\r\n\r\n",
		"chunked":             head + "Transfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", len(chunk), chunk, len(chunk), chunk),
	} {
		if a := testserver.RawExchange(t, addr, req); a.Status != http.StatusRequestEntityTooLarge || !strings.HasPrefix(a.Body, `{"error":`) {
			t.Errorf("%s: %d %s, want a JSON 413", name, a.Status, a.Body)
		}
	}
	body := get(t, "http://"+addr+"/metrics").body
	if v := metricValue(t, body, `tinysse_publish_rejected_total{reason="too_large"}`); v != 3 {
		t.Errorf(`tinysse_publish_rejected_total{reason="too_large"} %v, want 3`, v)
	}
}
