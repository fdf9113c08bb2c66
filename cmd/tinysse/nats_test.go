package main

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestNATSOptions(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  []string
		name string
	}{
		{[]string{"--nats-replicas", "0"}, nil, "--nats-replicas"},
		{[]string{"--nats-stream", "a.b"}, nil, "--nats-stream"},
		{[]string{"--nats-stream", ""}, nil, "--nats-stream"},
		{[]string{"--nats-max-msgs=-1"}, nil, "--nats-max-msgs"},
		{[]string{"--nats-max-age", "long"}, nil, "--nats-max-age"},
		{[]string{"--nats-tls-cert", "c.pem"}, nil, "--nats-tls-cert"},
		{nil, []string{"TINYSSE_NATS_MAX_MSGS=many"}, "--nats-max-msgs"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(c.args, env(c.env...), &stdout, &stderr, nil); code != 2 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), c.name) {
			t.Errorf("%q %q: exit %d, stderr %q; want 2 and one line naming %s", c.args, c.env, code, stderr.String(), c.name)
		}
	}
	o, err := parseOptions([]string{"--nats-max-age", "1h"}, env("TINYSSE_NATS=nats://127.0.0.1:4222", "TINYSSE_NATS_STREAM=feed", "TINYSSE_NATS_MAX_MSGS=1000"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.nats.url != "nats://127.0.0.1:4222" || o.nats.stream != "feed" || o.nats.maxMsgs != 1000 || o.nats.maxAge != time.Hour || o.nats.replicas != 1 {
		t.Errorf("nats options %+v", o.nats)
	}
	var help bytes.Buffer
	run([]string{"--help"}, env(), &help, &help, nil)
	for _, f := range []string{"nats", "nats-stream", "nats-max-age", "nats-max-msgs", "nats-replicas", "nats-creds", "nats-token", "nats-tls-ca", "nats-tls-cert", "nats-tls-key"} {
		if !strings.Contains(help.String(), "--"+f+" ") || !strings.Contains(help.String(), "[env "+envName(f)+"]") {
			t.Errorf("--help does not list --%s with %s", f, envName(f))
		}
	}

	// NATS unreachable at start: the node does not start.
	var stderr bytes.Buffer
	ready := make(chan string, 1)
	if code := run([]string{"--listen", "127.0.0.1:0", "--nats", "nats://127.0.0.1:1"}, env(), &bytes.Buffer{}, &stderr, ready); code != 1 || !strings.Contains(stderr.String(), "--nats") || len(ready) != 0 {
		t.Errorf("unreachable NATS: exit %d, stderr %q; want 1 naming --nats", code, stderr.String())
	}
}

// TestRunCluster runs two nodes through run against an in-process NATS
// server: a publish to one reaches a subscriber of the other with the
// stream sequence as id.
func TestRunCluster(t *testing.T) {
	url := startNATS(t)

	var addrs []string
	exited := make(chan int, 2)
	for range 2 {
		var stderr syncBuffer
		ready := make(chan string, 1)
		go func() {
			exited <- run([]string{"--listen", "127.0.0.1:0", "--auto-id", "--shutdown-timeout", "2s"}, env("TINYSSE_NATS="+url), &bytes.Buffer{}, &stderr, ready)
		}()
		select {
		case a := <-ready:
			addrs = append(addrs, a)
		case code := <-exited:
			t.Fatalf("run exited %d: %s", code, stderr.String())
		case <-time.After(wait):
			t.Fatal("run did not get ready")
		}
	}
	sub := openStream(t, addrs[1], "/sse?topic=news")
	sub.readUntil(t, ": ok\n\n")
	if a := request(t, http.MethodPost, "http://"+addrs[0]+"/sse?topic=news", `{"data":"across"}`); a.status != http.StatusAccepted {
		t.Fatalf("publish: %d %s", a.status, a.body)
	}
	if b := sub.readUntil(t, "\n\n"); b != "id: 1\ndata: across\n\n" {
		t.Fatalf("other node got %q", b)
	}
	interruptRuns(t, exited, 2, 2*time.Second+wait)
}
