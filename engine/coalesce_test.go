package engine_test

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
)

// With WriteCoalesce, a burst published inside the window reaches the
// subscriber in one write, in order, no earlier than the window and not
// much later.
func TestEngineWriteCoalesceBatches(t *testing.T) {
	const hold, n = 150 * time.Millisecond, 20
	eng := newEngine(t, engine.Config{Shards: 1, WriteCoalesce: hold})
	s := serve(t, eng, listen(t), &engine.Subscriber{})
	s.expect(okFrame)
	// The window opens when the shard wakes, and a new subscriber wakes
	// it too (Start's letGo marks its topics dirty after ": ok" is out):
	// a burst published right after ": ok" could fall in a window opened
	// before start and go out early. A first message read proves letGo
	// ran; the pause lets any window opened meanwhile end in its own pass.
	publish(t, eng, msg("warm", "up"))
	s.expect(frame("warm", "up"))
	time.Sleep(2 * hold)

	var want strings.Builder
	start := time.Now()
	for i := range n {
		id := strconv.Itoa(i)
		publish(t, eng, msg(id, "m"+id))
		want.WriteString(frame(id, "m"+id))
	}
	burst := time.Since(start)

	_ = s.conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 64<<10)
	k, err := s.br.Read(buf)
	first := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if first < hold {
		t.Errorf("first bytes after %v, before the %v window ended", first, hold)
	}
	// The upper bound is loose: this machine is shared and runs -race.
	if first > hold+time.Second {
		t.Errorf("first bytes after %v: the window is %v", first, hold)
	}
	got := string(buf[:k])
	if burst < hold/2 && got != want.String() {
		// Published well inside the window: one pass, one writev, one read.
		t.Errorf("first read has %d of %d bytes: the burst was not coalesced", len(got), want.Len())
	}
	for len(got) < want.Len() {
		k, err := s.br.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got += string(buf[:k])
	}
	if got != want.String() {
		t.Errorf("got %q\nwant %q", got, want.String())
	}
}

// Under a steady stream of publishes on several shards and topics, every
// subscriber still gets every message once and in order.
func TestEngineWriteCoalesceOrder(t *testing.T) {
	const subs, msgs = 12, 400
	eng := newEngine(t, engine.Config{Shards: 3, WriteCoalesce: 3 * time.Millisecond, Capacity: 1024})
	ln := listen(t)
	topics := []string{"a", "b"}
	streams := make([]*stream, subs)
	for i := range streams {
		streams[i] = serve(t, eng, ln, &engine.Subscriber{Topics: []string{topics[i%2]}})
		streams[i].expect(okFrame)
	}
	waitSubscribers(t, eng, "a", subs/2)
	waitSubscribers(t, eng, "b", subs/2)

	go func() {
		for i := range msgs {
			id := strconv.Itoa(i)
			if _, err := eng.Publish(msg(id, "m"+id, topics...)); err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			if i%10 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	var wg sync.WaitGroup
	for _, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range msgs {
				id := strconv.Itoa(i)
				if got, err := s.next(); err != nil || got != frame(id, "m"+id) {
					t.Errorf("message %d: got %q (%v)", i, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestEngineWriteCoalesceConfig(t *testing.T) {
	if got := newEngine(t, engine.Config{}).Config().WriteCoalesce; got != 0 {
		t.Errorf("default WriteCoalesce %v, want 0", got)
	}
	for _, bad := range []time.Duration{2 * time.Second, time.Second + 1} {
		if e, err := engine.New(engine.Config{WriteCoalesce: bad}); err == nil {
			e.Close(t.Context())
			t.Errorf("WriteCoalesce %v accepted", bad)
		}
	}
}

// Negative WriteCoalesce (--write-coalesce off) is accepted: never wait.
func TestEngineWriteCoalesceOff(t *testing.T) {
	eng := newEngine(t, engine.Config{Shards: 1, WriteCoalesce: -1})
	ln := listen(t)
	s := ready(t, eng, serve(t, eng, ln, &engine.Subscriber{}), "", 1)
	for i := range 50 {
		publish(t, eng, msg(strconv.Itoa(i), "x"))
	}
	for i := range 50 {
		s.expect(frame(strconv.Itoa(i), "x"))
	}
}
