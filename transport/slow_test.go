package transport

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
)

// bigMessage is a 16 KiB message with id i: kernel socket buffers hold
// megabytes, so it takes big messages to fill them.
func bigMessage(i int) string {
	return fmt.Sprintf(`{"id":"%d","data":"%s"}`, i, strings.Repeat("z", 16<<10))
}

// readID reads the next message of s and requires id want.
// publishUntilCut publishes big messages to topic (at most most of them)
// while its subscribers number n, each read by reader within a generous
// 2 s (the others must not wait for a stalled one), then waits until
// reader is the topic's only subscriber. It returns how many were
// published and how long it all took.
func publishUntilCut(t *testing.T, p proto, addr string, eng *engine.Engine, topic string, n, most int, reader *sseClient) (published int, took time.Duration) {
	t.Helper()
	begin := time.Now()
	for published < most && eng.Subscribers(topic) == n {
		published++
		start := time.Now()
		p.publishTo(t, addr, "/sse?topic="+topic, bigMessage(published))
		readID(t, reader, published)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("message %d took %v to reach the reader", published, d)
		}
	}
	waitSubscribers(t, eng, topic, 1)
	return published, time.Since(begin)
}

func readID(t *testing.T, s *sseClient, want int) {
	t.Helper()
	b := s.mustNext()
	if b.Event == nil || b.Event.LastEventID != strconv.Itoa(want) {
		t.Fatalf("got %.60q, want the message with id %d", b.Raw, want)
	}
}

// TestLapped: a subscriber that stops reading is lapped by the ring (its
// messages are overwritten before it could take them); when it reads again
// it gets what the socket held, ": lagged" and a retry hint, and the stream
// closes. A subscriber that keeps reading gets every message meanwhile.
func TestLapped(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		addr, eng, _ := p.startServer(t, engine.Config{
			Capacity:     4,
			WriteTimeout: time.Minute, // lag, not a slow write, must be the cause
			TimeoutRetry: 700 * time.Millisecond,
			KeepAlive:    -1, // TestKeepAliveWhileSlow has them
		}, Config{})
		stalled, reader := stalledAndReader(t, p, addr, eng, "lap")

		// The reader takes each message before the next is published, so only
		// the stalled subscriber can fall behind.
		const total = 1000
		for i := 1; i <= total; i++ {
			if r := p.publishTo(t, addr, "/sse?topic=lap", bigMessage(i)); r.Subscribers < 1 {
				t.Fatalf("message %d: no subscribers", i)
			}
			readID(t, reader, i)
		}

		blocks := stalled.drain(10 * time.Second)
		if len(blocks) == 0 {
			t.Fatal("the stalled subscriber got nothing before the stream closed")
		}
		last := blocks[len(blocks)-1]
		if last.Raw != ": lagged\nretry: 700\n\n" {
			t.Fatalf("stream ended with %.80q, want \": lagged\\nretry: 700\\n\\n\"", last.Raw)
		}
		// What it got before is a gapless prefix of what was published.
		got := 0
		for _, b := range blocks[:len(blocks)-1] {
			if b.Event == nil {
				t.Fatalf("unexpected block %.60q", b.Raw)
			}
			got++
			if b.Event.LastEventID != strconv.Itoa(got) {
				t.Fatalf("message %d has id %q", got, b.Event.LastEventID)
			}
		}
		if got >= total-4 {
			t.Fatalf("the stalled subscriber got %d of %d messages: it never fell behind, the test proves nothing", got, total)
		}
		t.Logf("the stalled subscriber got %d of %d messages before it lagged", got, total)
		waitSubscribers(t, eng, "lap", 1)

		// Coming back with its last id, it is past the ring: a replay gap,
		// then live messages.
		again := p.subscribe(t, addr, "/sse?topic=lap", "Last-Event-ID", strconv.Itoa(got))
		again.expectOK()
		again.expectLines(": replay-gap")
		p.publishTo(t, addr, "/sse?topic=lap", bigMessage(total+1))
		readID(t, again, total+1)
		readID(t, reader, total+1)
	})
}

// TestSlowSubscriber: a subscriber whose socket takes nothing for
// WriteTimeout is closed, and the others do not wait for it.
func TestSlowSubscriber(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		addr, eng, _ := p.startServer(t, engine.Config{
			Capacity:     4096, // never lapped: the write timeout must be the cause
			WriteTimeout: 500 * time.Millisecond,
			KeepAlive:    -1, // TestKeepAliveWhileSlow has them
		}, Config{})
		stalled, reader := stalledAndReader(t, p, addr, eng, "slow")

		published, took := publishUntilCut(t, p, addr, eng, "slow", 2, 2000, reader)
		t.Logf("the stalled subscriber was dropped after %d messages, %v", published, took)
		if took > 5*time.Second {
			t.Errorf("dropping the stalled subscriber took %v, want a few times WriteTimeout", took)
		}

		// The stalled client finds what its socket held, then the end.
		blocks := stalled.drain(10 * time.Second)
		for _, b := range blocks {
			if strings.HasPrefix(b.Raw, ": lagged") {
				t.Fatalf("the subscriber lagged; it should have been closed by the write timeout")
			}
		}
		if len(blocks) >= published {
			t.Errorf("the stalled subscriber got all %d messages; it should have been cut off", published)
		}

		p.publishTo(t, addr, "/sse?topic=slow", bigMessage(published+1))
		readID(t, reader, published+1)
	})
}

// TestKeepAliveWhileSlow: keep-alives go on while a subscriber's socket is
// full and after it catches up, and the slow path shares nothing with the
// shard's keep-alive sweep that the race detector could flag.
func TestKeepAliveWhileSlow(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		const every = 50 * time.Millisecond
		addr, eng, _ := p.startServer(t, engine.Config{KeepAlive: every, WriteTimeout: time.Minute}, Config{})
		stalled := p.subscribeStalling(t, addr, "/sse")
		stalled.expectOK()
		waitSubscribers(t, eng, "", 1)
		// Fewer than the ring holds, and enough to fill what the socket
		// takes (HTTP/1.1: the kernel holds little for a socket whose reader
		// stopped, engine's unsentLimit) or, over HTTP/2, the stream's
		// window (16 KiB here): the subscriber is stuck, not lapped.
		n := 200
		if p.h2 {
			n = 60
		}
		for i := 1; i <= n; i++ {
			p.publishJSON(t, addr, bigMessage(i))
		}
		time.Sleep(10 * every) // several sweeps while the subscriber is stuck
		for i := 1; i <= n; i++ {
			b := stalled.nextSkipping(isKeepAlive)
			if b.Event == nil || b.Event.LastEventID != strconv.Itoa(i) {
				t.Fatalf("got %.60q, want the message with id %d", b.Raw, i)
			}
		}
		for range 3 {
			if b := stalled.mustNext(); !isKeepAlive(b) {
				t.Fatalf("got %.60q, want keep-alives once caught up", b.Raw)
			}
		}
	})
}

// stalledAndReader opens two streams on topic: one that the test will not
// read (stalled: through a tiny receive buffer, or over HTTP/2 a small
// stream window), one it reads (reader), and waits until both are
// registered. Over HTTP/2 both are streams of the same connection: a
// stalled stream must not hold up its neighbour.
func stalledAndReader(t *testing.T, p proto, addr string, eng *engine.Engine, topic string) (stalled, reader *sseClient) {
	t.Helper()
	stalled = p.subscribeStalling(t, addr, "/sse?topic="+topic)
	stalled.expectOK()
	if p.h2 {
		reader = p.subscribeWith(t, h2TinyClient, addr, "/sse?topic="+topic) // the same connection
	} else {
		reader = p.subscribe(t, addr, "/sse?topic="+topic)
	}
	reader.expectOK()
	waitSubscribers(t, eng, topic, 2)
	return stalled, reader
}
