package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestCheckLoopback(t *testing.T) {
	for _, c := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:1983/sse", true},
		{"http://127.9.9.9/sse", true},
		{"http://[::1]:1983/sse", true},
		{"http://localhost:1983/sse", true},
		{"http://10.0.0.1:1983/sse", false},
		{"http://8.8.8.8/sse", false},
		{"http://[2001:db8::1]/sse", false},
	} {
		u, err := targetURL(c.url, "/sse")
		if err != nil {
			t.Fatal(err)
		}
		if err := checkLoopback(u); (err == nil) != c.ok {
			t.Errorf("checkLoopback(%s) = %v", c.url, err)
		}
	}
}

func TestTargetURL(t *testing.T) {
	u, err := targetURL("http://127.0.0.1", "/events")
	if err != nil || u.Host != "127.0.0.1:80" || u.Path != "/events" {
		t.Errorf("targetURL = %v, %v", u, err)
	}
	for _, bad := range []string{"https://127.0.0.1/", "127.0.0.1:80", "http:///x"} {
		if _, err := targetURL(bad, "/"); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// The requests a target writes must be what a real HTTP server reads.
func TestTinysseRequests(t *testing.T) {
	tg := targets["tinysse"]
	u, _ := targetURL("http://127.0.0.1:1983/sse?topic=a", "/sse")

	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(tg.AppendSubscribe(nil, u))))
	if err != nil || req.Method != "GET" || req.URL.RequestURI() != "/sse?topic=a" || req.Host != "127.0.0.1:1983" {
		t.Fatalf("subscribe request: %v %+v", err, req)
	}

	for _, id := range []string{"", "0-1"} {
		data := appendPayload(nil, 0, 1, 2, 100)
		req, err = http.ReadRequest(bufio.NewReader(bytes.NewReader(tg.AppendPublish(nil, u, []byte(id), data))))
		if err != nil || req.Method != "POST" || !strings.HasPrefix(req.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("publish request: %v %+v", err, req)
		}
		body, _ := io.ReadAll(req.Body)
		var m map[string]string
		if err := json.Unmarshal(body, &m); err != nil || m["data"] != string(data) || m["id"] != id {
			t.Fatalf("publish body %q: %v %v", body, m, err)
		}
		if _, ok := m["id"]; ok != (id != "") {
			t.Errorf("id present = %v for id %q", ok, id)
		}
	}
}
