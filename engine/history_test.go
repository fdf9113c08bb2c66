package engine_test

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"weak"

	"github.com/tinysse/tinysse/engine"
)

// bigMsg is a message of about 10 KiB of data (so about 20 KiB held: the
// data and its frame) with id i, on topic.
func bigMsg(i int, topic string) *engine.Message {
	return &engine.Message{ID: strconv.Itoa(i), Data: strings.Repeat("h", 10<<10), HasData: true, Topics: []string{topic}}
}

// heldEach publishes one bigMsg on a scratch engine and returns what it
// holds, as the history counts it. Messages of other tests differ from it
// by a few bytes of id and topic name: near compares within slack.
func heldEach(t *testing.T) int64 {
	t.Helper()
	e := newEngine(t, engine.Config{})
	publish(t, e, bigMsg(0, "probe"))
	return e.Stats().HistoryBytes
}

// TestHistoryBudget: the rings together stay under MaxHistoryBytes; past
// it the globally oldest messages go, across topics, and are freed (no
// slot keeps them); topics left empty and unheld are removed.
// near reports whether got is want give or take slack bytes per message.
func near(got, want int64, msgs int) bool {
	const slack = 32
	return got >= want-slack*int64(msgs) && got <= want+slack*int64(msgs)
}

func TestHistoryBudget(t *testing.T) {
	each := heldEach(t)
	if each < 20<<10 || each > 24<<10 {
		t.Fatalf("a 10 KiB message holds %d bytes: data and frame should be counted", each)
	}
	const keep = 7
	limit := keep*each + each/2
	e := newEngine(t, engine.Config{MaxHistoryBytes: limit})
	const n, topics = 40, 5
	refs := make([]weak.Pointer[engine.Message], n)
	for i := range n {
		m := bigMsg(i, fmt.Sprintf("t%d", i%topics))
		refs[i] = weak.Make(m)
		publish(t, e, m)
		if b := e.Stats().HistoryBytes; b > limit {
			t.Fatalf("after %d publishes the rings hold %d bytes, over the budget %d", i+1, b, limit)
		}
	}
	st := e.Stats()
	if st.HistoryEvicted != n-keep || st.MaxHistoryBytes != limit {
		t.Fatalf("evicted %d (want %d), MaxHistoryBytes %d (want %d)", st.HistoryEvicted, n-keep, st.MaxHistoryBytes, limit)
	}
	held := 0
	for _, ts := range st.Topics {
		held += ts.Buffered
	}
	if held != keep || !near(st.HistoryBytes, keep*each, keep) {
		t.Fatalf("rings hold %d messages and %d bytes, want the newest %d and %d bytes", held, st.HistoryBytes, keep, keep*each)
	}
	// Globally oldest first: exactly the first n-keep are gone, and freed.
	for range 5 {
		runtime.GC()
	}
	for i, r := range refs {
		if alive := r.Value() != nil; alive != (i >= n-keep) {
			t.Errorf("message %d alive=%v, want only the newest %d alive", i, alive, keep)
		}
	}
}

// TestHistoryDropsEmptyTopics: topics whose messages the budget dropped
// are removed, so that MaxTopics does not fill with topics that hold
// nothing; a topic someone subscribes to stays.
func TestHistoryDropsEmptyTopics(t *testing.T) {
	each := heldEach(t)
	e := newEngine(t, engine.Config{MaxHistoryBytes: 2*each + each/2, MaxTopics: 4})
	ln := listen(t)
	s := serve(t, e, ln, &engine.Subscriber{Topics: []string{"watched"}})
	s.expect(okFrame)
	waitSubscribers(t, e, "watched", 1)
	publish(t, e, bigMsg(0, "watched"))
	s.expect(frame("0", strings.Repeat("h", 10<<10)))
	for i := 1; i <= 50; i++ {
		// Without the drop, the fourth new name would be refused.
		publish(t, e, bigMsg(i, fmt.Sprintf("name-%d", i)))
	}
	if n := e.Topics(); n != 3 {
		t.Fatalf("%d topics, want 3: the watched one and the two whose messages are kept", n)
	}
	if e.Subscribers("watched") != 1 {
		t.Fatal("the watched topic lost its subscriber")
	}
	// The watched topic was emptied but kept: its subscriber still gets
	// what is published there.
	publish(t, e, bigMsg(99, "watched"))
	s.expect(frame("99", strings.Repeat("h", 10<<10)))
}

// TestHistoryReplayGap: a Last-Event-ID whose message the budget dropped
// answers ": replay-gap", as one lapped by the ring; a kept one replays.
func TestHistoryReplayGap(t *testing.T) {
	each := heldEach(t)
	e := newEngine(t, engine.Config{MaxHistoryBytes: 3*each + each/2})
	ln := listen(t)
	for i := range 6 {
		publish(t, e, bigMsg(i, "r"))
	}
	gone := serve(t, e, ln, &engine.Subscriber{Topics: []string{"r"}}, withLastEventID("1"))
	gone.expect(okFrame, ": replay-gap\n\n")
	kept := serve(t, e, ln, &engine.Subscriber{Topics: []string{"r"}}, withLastEventID("3"))
	kept.expect(okFrame, frame("4", strings.Repeat("h", 10<<10)), frame("5", strings.Repeat("h", 10<<10)))
	if st := e.Stats(); st.ReplayGaps != 1 || st.Replays != 1 {
		t.Fatalf("replays %d, gaps %d; want 1 and 1", st.Replays, st.ReplayGaps)
	}
}

// TestHistoryEvictionLaps: a live subscriber whose unread messages the
// budget dropped (here: publishes on another topic pushed them out while
// its shard was held up) is treated as lapped.
func TestHistoryEvictionLaps(t *testing.T) {
	each := heldEach(t)
	g := newGate()
	e := newEngine(t, engine.Config{Shards: 1, MaxHistoryBytes: 4*each + each/2, TimeoutRetry: 300_000_000,
		Hooks: engine.Hooks{Message: g.hook}})
	ln := listen(t)
	s := serve(t, e, ln, &engine.Subscriber{Topics: []string{"slow"}})
	s.expect(okFrame)
	waitSubscribers(t, e, "slow", 1)
	publish(t, e, &engine.Message{ID: "gate", Data: "g", HasData: true, Topics: []string{"slow"}})
	g.wait(t)
	for i := range 3 {
		publish(t, e, bigMsg(i, "slow"))
	}
	// Far fewer than the ring's 256, but the budget holds four.
	for i := 3; i < 10; i++ {
		publish(t, e, bigMsg(i, "other"))
	}
	close(g.release)
	// What the shard gathered before it found the lap (the gate) goes
	// unwritten, as for any lapped subscriber.
	s.expect(": lagged\nretry: 300\n\n")
	s.expectEOF()
	waitFor(t, "the lagged close to be counted", func() bool { return e.Stats().Closed.Lagged == 1 })
}

// TestHistoryTooLarge: a message that alone holds more than the budget is
// refused whole: no topic created, nothing published, the next message
// fine. With AutoID too (its frame is built under the publish lock).
func TestHistoryTooLarge(t *testing.T) {
	for _, auto := range []bool{false, true} {
		t.Run(fmt.Sprintf("auto=%v", auto), func(t *testing.T) {
			e := newEngine(t, engine.Config{MaxHistoryBytes: 64 << 10, AutoID: auto})
			big := &engine.Message{Data: strings.Repeat("x", 40<<10), HasData: true, Topics: []string{"new"}}
			if _, err := e.Publish(big); !errors.Is(err, engine.ErrTooLarge) {
				t.Fatalf("Publish of an 80 KiB message under a 64 KiB budget: %v, want ErrTooLarge", err)
			}
			if st := e.Stats(); st.Publishes != 0 || e.Topics() != 0 || st.HistoryBytes != 0 || e.LastSeq() != 0 {
				t.Fatalf("after the refusal: %d publishes, %d topics, %d bytes, last seq %d", st.Publishes, e.Topics(), st.HistoryBytes, e.LastSeq())
			}
			publish(t, e, &engine.Message{Data: strings.Repeat("x", 20<<10), HasData: true, Topics: []string{"new"}})
			if st := e.Stats(); st.Publishes != 1 || e.LastSeq() != 1 {
				t.Fatalf("the next publish: %d publishes, last seq %d", st.Publishes, e.LastSeq())
			}
		})
	}
}

// TestHistoryPublishSeq: cluster mode applies the stream through
// PublishSeq, which evicts the same way; a message over the budget, which
// PublishSeq may not refuse, is kept alone while it is the newest.
func TestHistoryPublishSeq(t *testing.T) {
	each := heldEach(t)
	limit := 3*each + each/2
	e := newEngine(t, engine.Config{MaxHistoryBytes: limit, AutoID: true})
	for i := 1; i <= 10; i++ {
		m := bigMsg(0, fmt.Sprintf("t%d", i%4))
		m.ID = ""
		if _, err := e.PublishSeq(m, uint64(10*i)); err != nil {
			t.Fatal(err)
		}
		if b := e.Stats().HistoryBytes; b > limit {
			t.Fatalf("after PublishSeq %d: %d bytes held, over %d", i, b, limit)
		}
	}
	if st := e.Stats(); st.HistoryEvicted != 7 {
		t.Fatalf("evicted %d, want 7", st.HistoryEvicted)
	}
	huge := &engine.Message{Data: strings.Repeat("x", 200<<10), HasData: true}
	if _, err := e.PublishSeq(huge, 1000); err != nil {
		t.Fatalf("PublishSeq of a message over the budget: %v", err)
	}
	st := e.Stats()
	if st.HistoryEvicted != 10 || st.HistoryBytes <= limit {
		t.Fatalf("after the huge one: evicted %d (want 10), %d bytes held", st.HistoryEvicted, st.HistoryBytes)
	}
	if _, err := e.PublishSeq(bigMsg(0, "t1"), 1001); err != nil {
		t.Fatal(err)
	}
	if st := e.Stats(); st.HistoryEvicted != 11 || !near(st.HistoryBytes, each, 1) {
		t.Fatalf("after the next one: evicted %d (want 11), %d bytes held (want %d)", st.HistoryEvicted, st.HistoryBytes, each)
	}
}

// TestHistoryMultiTopic: a message in several topics is one message in
// memory: counted once, and dropped from every ring at once.
func TestHistoryMultiTopic(t *testing.T) {
	each := heldEach(t)
	e := newEngine(t, engine.Config{MaxHistoryBytes: 2*each + each/2})
	m := bigMsg(0, "a")
	m.Topics = []string{"a", "b", "c"}
	publish(t, e, m)
	if b := e.Stats().HistoryBytes; b >= each+each/4 {
		t.Fatalf("a message in three topics holds %d bytes, a single-topic one %d: counted more than once", b, each)
	}
	publish(t, e, bigMsg(1, "b"))
	publish(t, e, bigMsg(2, "d"))
	st := e.Stats()
	if st.HistoryEvicted != 1 {
		t.Fatalf("evicted %d, want 1", st.HistoryEvicted)
	}
	for _, name := range []string{"a", "c"} {
		if _, ok := topicStats(st, name); ok {
			t.Errorf("topic %q still there after its only message was dropped", name)
		}
	}
	if b, _ := topicStats(st, "b"); b.Buffered != 1 {
		t.Errorf("topic b holds %d, want 1 (the multi-topic message left it too)", b.Buffered)
	}
}

// TestHistoryOverwriteUncounts: messages a ring laps leave the history's
// count (here nothing is ever evicted for the budget).
func TestHistoryOverwriteUncounts(t *testing.T) {
	each := heldEach(t)
	e := newEngine(t, engine.Config{Capacity: 4})
	for i := range 100 {
		publish(t, e, bigMsg(i, "x"))
	}
	if st := e.Stats(); !near(st.HistoryBytes, 4*each, 4) || st.HistoryEvicted != 0 {
		t.Fatalf("a ring of 4 after 100 publishes: %d bytes held (want %d), %d evicted (want 0)", st.HistoryBytes, 4*each, st.HistoryEvicted)
	}
}

// TestHistoryKeepsUp: a subscriber that keeps up loses nothing to the
// budget while other topics churn through it.
func TestHistoryKeepsUp(t *testing.T) {
	each := heldEach(t)
	e := newEngine(t, engine.Config{MaxHistoryBytes: 8 * each})
	ln := listen(t)
	s := serve(t, e, ln, &engine.Subscriber{Topics: []string{"live"}})
	s.expect(okFrame)
	waitSubscribers(t, e, "live", 1)
	data := strings.Repeat("h", 10<<10)
	for i := range 300 {
		publish(t, e, bigMsg(i, fmt.Sprintf("churn-%d", i%40)))
		if i%3 == 0 {
			publish(t, e, bigMsg(i, "live"))
			s.expect(frame(strconv.Itoa(i), data))
		}
	}
	if st := e.Stats(); st.HistoryEvicted == 0 || st.Closed.Lagged != 0 {
		t.Fatalf("evicted %d (want some), lagged %d (want 0)", st.HistoryEvicted, st.Closed.Lagged)
	}
}

func TestHistoryConfig(t *testing.T) {
	e := newEngine(t, engine.Config{})
	if got := e.Config().MaxHistoryBytes; got != engine.DefaultMaxHistoryBytes || engine.DefaultMaxHistoryBytes != 256<<20 {
		t.Fatalf("default MaxHistoryBytes %d, want 256 MiB", got)
	}
	off := newEngine(t, engine.Config{MaxHistoryBytes: -1})
	for i := range 50 {
		publish(t, off, bigMsg(i, fmt.Sprintf("t%d", i)))
	}
	if st := off.Stats(); st.HistoryEvicted != 0 || st.HistoryBytes < 50*(20<<10) {
		t.Fatalf("no bound: evicted %d, held %d", st.HistoryEvicted, st.HistoryBytes)
	}
}
