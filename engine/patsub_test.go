package engine_test

import (
	"strconv"
	"testing"

	"github.com/tinysse/tinysse/engine"
)

// Pattern subscriptions (patindex.go), end to end over loopback sockets.

func TestPatternSubscribeLive(t *testing.T) {
	for _, path := range []struct {
		name string
		opts []serveOpt
	}{{"raw", nil}, {"blocking", []serveOpt{noRaw}}} {
		t.Run(path.name, func(t *testing.T) {
			eng := newEngine(t, engine.Config{Shards: 2})
			ln := listen(t)
			one := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"sports/*"}}, path.opts...)
			rest := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"sports/**"}}, path.opts...)
			all := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"*"}}, path.opts...)
			for _, s := range []*stream{one, rest, all} {
				s.expect(okFrame)
			}
			waitSubscribers(t, eng, "sports/*", 1)
			waitSubscribers(t, eng, "sports/**", 1)
			waitSubscribers(t, eng, "*", 1)
			publish(t, eng, msg("1", "a", "sports/a"))
			publish(t, eng, msg("2", "deep", "sports/a/b"))
			publish(t, eng, msg("3", "bare", "sports"))
			publish(t, eng, msg("4", "news", "news/x"))
			publish(t, eng, msg("5", "b", "sports/b"))
			publish(t, eng, msg("6", "default"))
			eng.PublishLocal(msg("7", "internal", engine.InternalPrefix+"stats")) // no wildcard reads it
			publish(t, eng, msg("8", "sportsx", "sportsx/a"))
			one.expect(frame("1", "a"), frame("5", "b"))
			rest.expect(frame("1", "a"), frame("2", "deep"), frame("5", "b"))
			all.expect(frame("1", "a"), frame("2", "deep"), frame("3", "bare"), frame("4", "news"), frame("5", "b"), frame("6", "default"), frame("8", "sportsx"))
			// Nothing else is on its way.
			publish(t, eng, msg("end", "", "sports/z"))
			for _, s := range []*stream{one, rest, all} {
				s.expect(frame("end", ""))
			}
		})
	}
}

func TestPatternOverlapOnce(t *testing.T) {
	// One subscriber holding overlapping patterns and a topic they match
	// gets each message once, in publish order, live and from a backlog.
	deliveredOnceInOrder(t, []string{"sports/a", "sports/*", "sports/**", "*/a"}, []*engine.Message{
		msg("1", "a", "sports/a"),
		msg("2", "b", "sports/b"),
		msg("3", "both", "sports/a", "sports/b"),
		msg("4", "deep", "sports/a/b"),
		msg("5", "news", "news/a"),
		msg("6", "other", "other"),
	}, frame("1", "a"), frame("2", "b"), frame("3", "both"), frame("4", "deep"), frame("5", "news"))
}

func TestPatternPublishResultCountsPatternSubscribers(t *testing.T) {
	eng := newEngine(t, engine.Config{})
	ln := listen(t)
	serve(t, eng, ln, &engine.Subscriber{Topics: []string{"a/*"}}).expect(okFrame)
	serve(t, eng, ln, &engine.Subscriber{Topics: []string{"a/x"}}).expect(okFrame)
	waitSubscribers(t, eng, "a/*", 1)
	waitSubscribers(t, eng, "a/x", 1)
	if res := publish(t, eng, msg("1", "", "a/x")); res.Subscribers != 2 {
		t.Errorf("Subscribers = %d, want 2 (the topic's and the pattern's)", res.Subscribers)
	}
	if res := publish(t, eng, msg("2", "", "b/x")); res.Subscribers != 0 {
		t.Errorf("Subscribers = %d, want 0", res.Subscribers)
	}
}

func TestPatternReplayMerged(t *testing.T) {
	eng := newEngine(t, engine.Config{Capacity: 16})
	ln := listen(t)
	publish(t, eng, msg("x1", "1", "s/a"))
	publish(t, eng, msg("x2", "2", "news"))
	publish(t, eng, msg("x3", "3", "s/b"))
	publish(t, eng, msg("x4", "4", "s/a", "s/b"))
	publish(t, eng, msg("x5", "5", "s/c/d"))
	publish(t, eng, msg("x6", "6", "s/a"))

	// The first subscriber of the pattern: its ring is filled from the
	// matching topics, merged by publish order, each message once.
	first := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"s/*"}}, withLastEventID("x1"))
	first.expect(okFrame, frame("x3", "3"), frame("x4", "4"), frame("x6", "6"))
	waitSubscribers(t, eng, "s/*", 1)
	publish(t, eng, msg("x7", "7", "s/c"))
	first.expect(frame("x7", "7"))

	// A later subscriber reads the pattern's ring, live part included.
	second := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"s/*"}}, withLastEventID("x4"))
	second.expect(okFrame, frame("x6", "6"), frame("x7", "7"))

	// An id no matching topic has: a gap.
	gap := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"s/*"}}, withLastEventID("x2"))
	gap.expect(okFrame, ": replay-gap\n\n")

	// Overlapping subscriptions replay each message once.
	both := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"s/**", "s/a"}}, withLastEventID("x3"))
	both.expect(okFrame, frame("x4", "4"), frame("x5", "5"), frame("x6", "6"), frame("x7", "7"))
}

func TestPatternReplayAfterLastSubscriberLeft(t *testing.T) {
	eng := newEngine(t, engine.Config{Capacity: 16})
	ln := listen(t)
	s := ready(t, eng, serve(t, eng, ln, &engine.Subscriber{Topics: []string{"s/*"}}), "s/*", 1)
	publish(t, eng, msg("1", "1", "s/a"))
	s.expect(frame("1", "1"))
	s.leave(eng, "s/*")
	publish(t, eng, msg("2", "2", "s/b"))
	publish(t, eng, msg("3", "3", "s/a"))
	back := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"s/*"}}, withLastEventID("1"))
	back.expect(okFrame, frame("2", "2"), frame("3", "3"))
}

func TestPatternReplayGapWhenATopicLostHistory(t *testing.T) {
	eng := newEngine(t, engine.Config{Capacity: 4})
	ln := listen(t)
	publish(t, eng, msg("old", "", "s/quiet"))
	for i := range 6 { // s/busy's ring laps: its first two are gone
		publish(t, eng, msg("b"+strconv.Itoa(i), "", "s/busy"))
	}
	// "old" is still in s/quiet's ring, but s/busy lost messages after it:
	// replaying from it would skip them silently.
	s := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"s/*"}}, withLastEventID("old"))
	s.expect(okFrame, ": replay-gap\n\n")
	// From an id after what was lost, the merge is whole.
	ok := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"s/*"}}, withLastEventID("b3"))
	ok.expect(okFrame, frame("b4", ""), frame("b5", ""))
}

func TestPatternHistoryBudgetCountsAndForgets(t *testing.T) {
	eng := newEngine(t, engine.Config{Capacity: 16})
	ln := listen(t)
	for i := range 5 {
		publish(t, eng, msg(strconv.Itoa(i), "xxxxxxxx", "s/a"))
	}
	before := eng.HistoryBytes()
	s := ready(t, eng, serve(t, eng, ln, &engine.Subscriber{Topics: []string{"s/*"}}), "s/*", 1)
	if got := eng.HistoryBytes(); got <= before {
		t.Errorf("HistoryBytes %d with the pattern's ring, want more than %d", got, before)
	}
	s.conn.Close()
	s.served()
	waitFor(t, "the pattern's ring to be forgotten", func() bool { return eng.HistoryBytes() == before })
	if _, ok := eng.Topic("s/*"); ok {
		t.Errorf("the pattern topic outlived its last subscriber")
	}
}

func TestPatternHistoryBudgetDropsFromPatternRings(t *testing.T) {
	// A budget of about four messages: the pattern's ring loses the
	// oldest with the topics' rings, and the total stays under the budget.
	// The shard is held up at a gate, so the subscriber (and its pattern)
	// stays while the budget drops what it has not read.
	const budget = 2048
	g := newGate()
	eng := newEngine(t, engine.Config{Shards: 1, Capacity: 64, MaxHistoryBytes: budget, Hooks: engine.Hooks{Message: g.hook}})
	defer close(g.release)
	ln := listen(t)
	ready(t, eng, serve(t, eng, ln, &engine.Subscriber{Topics: []string{"s/*"}}), "s/*", 1)
	publish(t, eng, msg("gate", "", "s/x"))
	g.wait(t)
	for i := range 40 {
		publish(t, eng, msg(strconv.Itoa(i), string(make([]byte, 200)), "s/"+strconv.Itoa(i%3)))
		if b := eng.HistoryBytes(); b > budget {
			t.Fatalf("HistoryBytes %d over the budget %d", b, budget)
		}
	}
	ti, ok := eng.Topic("s/*")
	if !ok || ti.Messages == 0 || ti.Messages >= 40 {
		t.Fatalf("pattern ring holds %d messages (ok %v), want some but not all 40", ti.Messages, ok)
	}
}

func TestPatternAutoIDOrderAcrossTopics(t *testing.T) {
	eng := newEngine(t, engine.Config{AutoID: true, Shards: 2})
	ln := listen(t)
	s := ready(t, eng, serve(t, eng, ln, &engine.Subscriber{Topics: []string{"t/**"}}), "t/**", 1)
	const n = 240 // under the pattern ring's 256: the reader may start late
	done := make(chan struct{})
	for w := range 3 { // three publishers at once
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range n / 3 {
				if _, err := eng.Publish(msg("", "x", "t/"+strconv.Itoa(w)+"/"+strconv.Itoa(i%5))); err != nil {
					t.Errorf("Publish: %v", err)
				}
			}
		}()
	}
	for range 3 {
		<-done
	}
	for i := 1; i <= n; i++ {
		s.expect(frame(strconv.Itoa(i), "x"))
	}
}

// TestPatternMatchesFollowTheIndex: a topic's cached pattern matches are
// redone when a pattern comes or goes, so a pattern made after a topic's
// last publish gets its next one, and one gone gets nothing.
func TestPatternMatchesFollowTheIndex(t *testing.T) {
	eng := newEngine(t, engine.Config{})
	ln := listen(t)
	publish(t, eng, msg("0", "", "a/x"))
	ready(t, eng, serve(t, eng, ln, &engine.Subscriber{Topics: []string{"b/*"}}), "b/*", 1)
	publish(t, eng, msg("1", "", "a/x")) // matches nothing: cached as such
	s := ready(t, eng, serve(t, eng, ln, &engine.Subscriber{Topics: []string{"a/*"}}), "a/*", 1)
	publish(t, eng, msg("2", "", "a/x"))
	s.expect(frame("2", ""))
	s.leave(eng, "a/*")
	if res := publish(t, eng, msg("3", "", "a/x")); res.Subscribers != 0 {
		t.Errorf("a publish after the pattern left counts %d subscribers", res.Subscribers)
	}
	again := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"a/*"}}, withLastEventID("2"))
	again.expect(okFrame, frame("3", ""))
	publish(t, eng, msg("4", "", "a/x"))
	again.expect(frame("4", ""))
}

// TestPatternMadeWhileTopicsAreMade: patterns are made while a publisher
// makes a new matching topic for every message; each subscriber, joining
// with the first message's id, gets every later message exactly once and
// in order, whether it came through the backfill or live: no topic made
// while a pattern was being made is missed.
func TestPatternMadeWhileTopicsAreMade(t *testing.T) {
	eng := newEngine(t, engine.Config{Capacity: 1024, Shards: 2})
	ln := listen(t)
	const n = 300
	publish(t, eng, msg("0", "", "p/0"))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= n; i++ {
			if _, err := eng.Publish(msg(strconv.Itoa(i), "", "p/"+strconv.Itoa(i))); err != nil {
				t.Errorf("Publish: %v", err)
				return
			}
		}
	}()
	var subs []*stream
	for _, p := range []string{"p/*", "*/*", "*", "**", "p/**"} {
		s := serve(t, eng, ln, &engine.Subscriber{Topics: []string{p}}, withLastEventID("0"))
		s.expect(okFrame)
		subs = append(subs, s)
	}
	<-done
	for _, s := range subs {
		for i := 1; i <= n; i++ {
			s.expect(frame(strconv.Itoa(i), ""))
		}
	}
}

// TestPatternBatchPublish: a batch publish reaches pattern subscribers as
// single publishes do, each message once (also one whose two topics both
// match), in order, and counts them in its answer.
func TestPatternBatchPublish(t *testing.T) {
	eng := newEngine(t, engine.Config{})
	ln := listen(t)
	pat := ready(t, eng, serve(t, eng, ln, &engine.Subscriber{Topics: []string{"s/*"}}), "s/*", 1)
	res, err := eng.PublishBatch([]*engine.Message{msg("b1", "1", "s/a"), msg("b2", "2", "news"), msg("b3", "3", "s/a", "s/b")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Subscribers != 1 {
		t.Errorf("Subscribers = %d, want 1 (the pattern's)", res.Subscribers)
	}
	pat.expect(frame("b1", "1"), frame("b3", "3"))
	// A later subscriber of the pattern replays them from its ring.
	again := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"s/*"}}, withLastEventID("b1"))
	again.expect(okFrame, frame("b3", "3"))
}
