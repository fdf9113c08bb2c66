package engine_test

import (
	"errors"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
)

func TestPublishSeq(t *testing.T) {
	eng := newEngine(t, engine.Config{AutoID: true})
	ln := listen(t)
	s := ready(t, eng, serve(t, eng, ln, &engine.Subscriber{}), "", 1)
	if _, err := eng.PublishSeq(&engine.Message{Data: "a", HasData: true}, 10); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{0, 5, 10} {
		if _, err := eng.PublishSeq(&engine.Message{Data: "no", HasData: true}, seq); !errors.Is(err, engine.ErrSeqOrder) {
			t.Errorf("PublishSeq(%d) after 10: %v, want ErrSeqOrder", seq, err)
		}
	}
	publish(t, eng, &engine.Message{Data: "b", HasData: true})
	eng.AdvanceSeq(20)
	eng.AdvanceSeq(3) // lower: no effect
	if got := eng.LastSeq(); got != 20 {
		t.Errorf("LastSeq %d, want 20", got)
	}
	publish(t, eng, &engine.Message{Data: "c", HasData: true})
	s.expect(frame("10", "a"), frame("11", "b"), frame("21", "c"))
}

// outsideLog stands for a cluster's stream: every message by Seq, written
// before the engine gets it, as a JetStream acknowledgement comes before
// the node's consumer applies the message.
type outsideLog struct {
	mu    sync.Mutex
	msgs  []engine.Message // index Seq-1
	calls atomic.Int32
	first uint64 // messages below it are gone (retention)
}

func (l *outsideLog) publish(t testing.TB, eng *engine.Engine, data string, topics ...string) {
	l.mu.Lock()
	m := engine.Message{Data: data, HasData: true, Topics: topics}
	l.msgs = append(l.msgs, m)
	seq := uint64(len(l.msgs))
	l.mu.Unlock()
	if _, err := eng.PublishSeq(&m, seq); err != nil {
		t.Errorf("PublishSeq: %v", err)
	}
}

func (l *outsideLog) replay(topics []string, after, upTo uint64) ([]*engine.Message, bool, error) {
	l.calls.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*engine.Message
	for seq := max(after+1, l.first); seq <= upTo; seq++ {
		m := l.msgs[seq-1]
		names := m.Topics
		if len(names) == 0 {
			names = []string{""}
		}
		for _, n := range names {
			if contains(topics, n) {
				m.Seq = seq
				out = append(out, &m)
				break
			}
		}
	}
	return out, l.first > after+1, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestReplayFromOutside(t *testing.T) {
	log := &outsideLog{first: 1}
	eng := newEngine(t, engine.Config{AutoID: true, Capacity: 4, Replay: log.replay})
	ln := listen(t)
	for i := 1; i <= 20; i++ {
		topic := "a"
		if i%4 == 0 {
			topic = "b"
		}
		log.publish(t, eng, "m"+strconv.Itoa(i), topic)
	}

	// Older than the ring: 11..20 of topic a, from the log, then live.
	s := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"a"}}, withLastEventID("10"))
	s.expect(okFrame, frame("11", "m11"), frame("13", "m13"), frame("14", "m14"), frame("15", "m15"),
		frame("17", "m17"), frame("18", "m18"), frame("19", "m19"))
	if log.calls.Load() != 1 {
		t.Errorf("%d replay calls, want 1", log.calls.Load())
	}
	// Covered by the ring (a holds 15, 17, 18, 19): the log is not asked.
	r := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"a"}}, withLastEventID("16"))
	r.expect(okFrame, frame("17", "m17"), frame("18", "m18"), frame("19", "m19"))
	if log.calls.Load() != 1 {
		t.Errorf("%d replay calls, want still 1", log.calls.Load())
	}
	// Several topics: one order.
	both := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"a", "b"}}, withLastEventID("15"))
	both.expect(okFrame, frame("16", "m16"), frame("17", "m17"), frame("18", "m18"), frame("19", "m19"), frame("20", "m20"))
	// Not an auto id, and a retention gap.
	gap := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"a"}}, withLastEventID("x"))
	gap.expect(okFrame, ": replay-gap\n\n")
	log.mu.Lock()
	log.first = 18
	log.mu.Unlock()
	lost := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"a"}}, withLastEventID("2"))
	lost.expect(okFrame, ": replay-gap\n\n", frame("18", "m18"), frame("19", "m19"))

	waitSubscribers(t, eng, "a", 5)
	log.publish(t, eng, "live", "a")
	for _, st := range []*stream{s, r, both, gap, lost} {
		st.expect(frame("21", "live"))
	}
}

// A subscriber joins with an old id while messages are being published:
// the part from the log and the live part meet with no gap and no
// duplicate.
func TestReplayFromOutsideSeam(t *testing.T) {
	const total = 600
	log := &outsideLog{first: 1}
	// Rings big enough not to lap while the log is read: this is about
	// the seam (a lapped subscriber gets ": lagged", tested elsewhere).
	eng := newEngine(t, engine.Config{AutoID: true, Capacity: 1024, Replay: log.replay})
	ln := listen(t)
	// 1..50 were published before this engine started: only the log has
	// them, so the replay of 21.. must come from it.
	for range 50 {
		log.msgs = append(log.msgs, engine.Message{HasData: true})
	}
	eng.AdvanceSeq(50)
	reached := make(chan struct{})
	published := make(chan struct{})
	defer func() { <-published }()
	go func() {
		defer close(published)
		for i := 51; i <= total; i++ {
			log.publish(t, eng, "")
			if i == 100 {
				close(reached)
			}
		}
	}()
	<-reached
	s := serve(t, eng, ln, &engine.Subscriber{}, withLastEventID("20"))
	s.expect(okFrame)
	for i := 21; i <= total; i++ {
		s.expect(frame(strconv.Itoa(i), ""))
	}
	if log.calls.Load() != 1 {
		t.Errorf("%d replay calls, want 1", log.calls.Load())
	}
}

// When the messages after a Last-Event-ID exist but cannot be had now (the
// outside log is unreachable, or this engine has not reached the id), the
// stream ends with a retry hint: a gap would say they are lost, and live
// delivery from the heads would repeat what the client has. The client
// comes back with the same id and gets them.
func TestReplayLater(t *testing.T) {
	log := &outsideLog{first: 1}
	var down atomic.Bool
	replay := func(topics []string, after, upTo uint64) ([]*engine.Message, bool, error) {
		if down.Load() {
			return nil, false, errors.New("log unreachable")
		}
		return log.replay(topics, after, upTo)
	}
	var unsub unsubscribes
	eng := newEngine(t, engine.Config{AutoID: true, Capacity: 2, Replay: replay, ReplayWait: 50 * time.Millisecond,
		TimeoutRetry: 300 * time.Millisecond, Hooks: engine.Hooks{Unsubscribe: unsub.hook}})
	ln := listen(t)
	for i := 1; i <= 6; i++ {
		log.publish(t, eng, "m"+strconv.Itoa(i), "a")
	}
	retry := regexp.MustCompile(`^: replay-unavailable\nretry: \d+\n\n$`)
	later := func(s *stream) {
		t.Helper()
		s.expect(okFrame)
		if f, err := s.next(); err != nil || !retry.MatchString(f) {
			t.Fatalf("got %q (%v), want a replay-unavailable retry hint", f, err)
		}
		s.expectEOF()
		if err := s.served(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}

	down.Store(true)
	gone := &engine.Subscriber{Topics: []string{"a"}}
	later(serve(t, eng, ln, gone, withLastEventID("2")))
	ahead := &engine.Subscriber{Topics: []string{"a"}}
	later(serve(t, eng, ln, ahead, withLastEventID("9")))
	unsub.check(t, gone, ahead)
	if st := eng.Stats(); st.ReplayGaps != 0 || st.Subscribers != 0 {
		t.Errorf("replay gaps %d, subscribers %d; want 0 and 0", st.ReplayGaps, st.Subscribers)
	}

	// Back with the same id once the log answers: nothing lost, nothing twice.
	down.Store(false)
	s := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"a"}}, withLastEventID("2"))
	s.expect(okFrame, frame("3", "m3"), frame("4", "m4"), frame("5", "m5"), frame("6", "m6"))
	waitSubscribers(t, eng, "a", 1)
	log.publish(t, eng, "m7", "a")
	s.expect(frame("7", "m7"))
}
