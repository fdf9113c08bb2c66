package testserver

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Client is the tests' HTTP client: every request is bounded by Wait.
var Client = &http.Client{Timeout: Wait}

// Answer is a complete HTTP response.
type Answer struct {
	Status int
	Header http.Header
	Body   string
}

// Do sends one request with Client; headers are name, value pairs.
func Do(t testing.TB, method, url, body string, headers ...string) Answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return Answer{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

// Post sends body with content type ctype (none when "") to
// http://addr+target; headers are more name, value pairs.
func Post(t testing.TB, addr, target, ctype, body string, headers ...string) Answer {
	t.Helper()
	if ctype != "" {
		headers = append([]string{"Content-Type", ctype}, headers...)
	}
	return Do(t, http.MethodPost, "http://"+addr+target, body, headers...)
}

// Published is the JSON answer of an accepted publish.
type Published struct {
	Queued      int `json:"queued"`
	Subscribers int `json:"subscribers"`
}

// Publish posts a JSON body to target and requires a 202 with the publish
// answer's JSON (and nothing else in it).
func Publish(t testing.TB, addr, target, body string, headers ...string) Published {
	t.Helper()
	return CheckPublished(t, target, body, Post(t, addr, target, "application/json", body, headers...))
}

// CheckPublished requires a to be a 202 with the publish answer's JSON.
func CheckPublished(t testing.TB, target, body string, a Answer) Published {
	t.Helper()
	if a.Status != http.StatusAccepted {
		t.Fatalf("POST %s %s: status %d %s, want 202", target, body, a.Status, a.Body)
	}
	if ct := a.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("POST %s: content type %q, want application/json", target, ct)
	}
	var r Published
	dec := json.NewDecoder(strings.NewReader(a.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("POST %s: 202 body %q: %v", target, a.Body, err)
	}
	return r
}

// WantError checks a refusal: status, JSON content type and a body that
// is exactly one object {"error": "<non-empty>"}.
func WantError(t testing.TB, a Answer, status int) {
	t.Helper()
	if a.Status != status {
		t.Errorf("status %d (body %s), want %d", a.Status, a.Body, status)
	}
	if ct := a.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q, want application/json", ct)
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(a.Body), &e); err != nil {
		t.Errorf("error body %q is not JSON: %v", a.Body, err)
		return
	}
	msg, ok := e["error"].(string)
	if len(e) != 1 || !ok || msg == "" {
		t.Errorf("error body %q, want {\"error\": \"...\"}", a.Body)
	}
}

// Dial connects to addr; the connection is closed when the test ends.
func Dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, Wait)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Pair connects a client to ln and returns both ends: the client and the
// connection ln accepted for it. Closing them is the caller's.
func Pair(t testing.TB, ln net.Listener) (client, server net.Conn) {
	t.Helper()
	client, err := net.DialTimeout("tcp", ln.Addr().String(), Wait)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	server, err = ln.Accept()
	if err != nil {
		client.Close()
		t.Fatalf("accept: %v", err)
	}
	return client, server
}

// RawExchange writes req as is on a new connection and reads one response.
func RawExchange(t testing.TB, addr, req string) Answer {
	t.Helper()
	c := Dial(t, addr)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(Wait))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("write: %v", err)
	}
	return ReadAnswer(t, bufio.NewReader(c))
}

// ReadAnswer reads one whole response from br.
func ReadAnswer(t testing.TB, br *bufio.Reader) Answer {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return Answer{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}
