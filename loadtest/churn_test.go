package main

import (
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/tinysse/tinysse/internal/testserver"
)

func TestChurnTinysse(t *testing.T) {
	o := testOptions(t, "tinysse", startTinysse(t))
	o.churn, o.subscribers, o.pub.Duration, o.pid = true, 4, 400*time.Millisecond, os.Getpid()
	res, err := runChurn(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := res.Churn
	if !res.OK || c == nil || c.Cycles < 4 || c.Failed != 0 || c.PerSecond <= 0 || c.Loops != 4 {
		t.Fatalf("churn: %+v %+v %v", c, res.Latency, res.Errors)
	}
	// Every cycle's connect-to-ready time is in the histogram.
	if res.Latency == nil || res.Latency.Count != c.Cycles || res.Server == nil {
		t.Errorf("latency %+v server %+v", res.Latency, res.Server)
	}
}

func TestChurnRefused(t *testing.T) {
	o := testOptions(t, "tinysse", "http://"+testserver.FreeAddr(t)+"/sse")
	o.churn, o.subscribers, o.pub.Duration = true, 2, 200*time.Millisecond
	res, err := runChurn(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK || res.Churn.Cycles != 0 || res.Churn.Failed == 0 || len(res.Errors) == 0 {
		t.Fatalf("churn against nobody: %+v %v", res.Churn, res.Errors)
	}
}
