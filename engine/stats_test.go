package engine_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
)

func topicStats(st engine.Stats, name string) (engine.TopicStats, bool) {
	for _, ts := range st.Topics {
		if ts.Name == name {
			return ts, true
		}
	}
	return engine.TopicStats{}, false
}

func TestEngineStats(t *testing.T) {
	eng := newEngine(t, engine.Config{Shards: 2, Capacity: 8})
	ln := listen(t)
	if st := eng.Stats(); st.Publishes != 0 || st.Deliveries != 0 || st.Subscribers != 0 || st.Capacity != 8 || len(st.Topics) != 0 {
		t.Fatalf("fresh engine: %+v", st)
	}

	a := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"news"}})
	b := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"news", "sport"}})
	a.expect(okFrame)
	b.expect(okFrame)
	waitSubscribers(t, eng, "news", 2)
	for i := 1; i <= 3; i++ {
		publish(t, eng, msg(strconv.Itoa(i), "n", "news"))
	}
	publish(t, eng, msg("4", "s", "sport"))
	a.expect(frame("1", "n"), frame("2", "n"), frame("3", "n"))
	b.expect(frame("1", "n"), frame("2", "n"), frame("3", "n"), frame("4", "s"))

	// Deliveries are added up at the end of each pass: wait for the count.
	waitFor(t, "7 deliveries", func() bool { return eng.Stats().Deliveries == 7 })
	st := eng.Stats()
	if st.Publishes != 4 || st.Subscribers != 2 || st.Subscribes != 2 {
		t.Errorf("publishes %d subscribers %d subscribes %d, want 4 2 2", st.Publishes, st.Subscribers, st.Subscribes)
	}
	if news, ok := topicStats(st, "news"); !ok || news.Subscribers != 2 || news.Published != 3 || news.Buffered != 3 {
		t.Errorf("news: %+v (found %v)", news, ok)
	}
	if sport, ok := topicStats(st, "sport"); !ok || sport.Subscribers != 1 || sport.Published != 1 || sport.Buffered != 1 {
		t.Errorf("sport: %+v (found %v)", sport, ok)
	}

	// The ring holds 8: after 10 more, Buffered stays at the capacity.
	for i := 5; i < 15; i++ {
		publish(t, eng, msg(strconv.Itoa(i), "n", "news"))
		a.expect(frame(strconv.Itoa(i), "n"))
		b.expect(frame(strconv.Itoa(i), "n"))
	}
	if news, _ := topicStats(eng.Stats(), "news"); news.Buffered != 8 || news.Published != 13 {
		t.Errorf("news after 13 publishes: %+v, want 8 buffered", news)
	}

	// Replays: one found in the ring, one gap.
	r := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"news"}}, withLastEventID("12"))
	r.expect(okFrame, frame("13", "n"), frame("14", "n"))
	gap := serve(t, eng, ln, &engine.Subscriber{Topics: []string{"news"}}, withLastEventID("1"))
	gap.expect(okFrame, ": replay-gap\n\n")
	if st := eng.Stats(); st.Replays != 1 || st.ReplayGaps != 1 {
		t.Errorf("replays %d gaps %d, want 1 1", st.Replays, st.ReplayGaps)
	}

	// A client that leaves is counted as left, and no longer subscribed.
	a.conn.Close()
	a.served()
	waitFor(t, "a counted as left", func() bool { return eng.Stats().Closed.Left == 1 })
	if st := eng.Stats(); st.Subscribers != 3 || st.Subscribes != 4 {
		t.Errorf("after a left: subscribers %d subscribes %d, want 3 4", st.Subscribers, st.Subscribes)
	}
}

func TestEngineStatsLagged(t *testing.T) {
	g := newGate()
	eng := newEngine(t, engine.Config{Shards: 1, Capacity: 8, Hooks: engine.Hooks{Message: g.hook}})
	ln := listen(t)
	s := ready(t, eng, serve(t, eng, ln, &engine.Subscriber{Topics: []string{"slow"}}), "slow", 1)
	publish(t, eng, msg("gate", "", "slow"))
	g.wait(t)
	for i := range 20 {
		publish(t, eng, msg(strconv.Itoa(i), "", "slow"))
	}
	close(g.release)
	s.expect(": lagged\nretry: 0\n\n")
	s.served()
	st := eng.Stats()
	if st.Closed.Lagged != 1 || st.Closed.Left != 0 || st.Subscribers != 0 {
		t.Errorf("closed %+v subscribers %d, want one lagged and none left", st.Closed, st.Subscribers)
	}
}

func TestEngineStatsTimeoutAndShutdown(t *testing.T) {
	eng, err := engine.New(engine.Config{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	s := serve(t, eng, ln, &engine.Subscriber{})
	s.expect(okFrame, ": timeout\nretry: 0\n\n")
	s.served()
	if c := eng.Stats().Closed; c.Timeout != 1 {
		t.Errorf("closed %+v, want one timeout", c)
	}

	eng2 := newEngine(t, engine.Config{})
	s2 := serve(t, eng2, ln, &engine.Subscriber{})
	s2.expect(okFrame)
	waitSubscribers(t, eng2, "", 1)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := eng2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if c := eng2.Stats().Closed; c.Shutdown != 1 {
		t.Errorf("closed %+v, want one shutdown", c)
	}
	_ = eng.Close(ctx)
}

func TestEngineNoHook(t *testing.T) {
	skipAll := func(any, *engine.Message, *engine.Subscriber) []byte { return nil }
	eng := newEngine(t, engine.Config{Hooks: engine.Hooks{Message: skipAll,
		EnterShard: func(int) any { return nil }, LeaveShard: func(any) {}}})
	ln := listen(t)
	s := ready(t, eng, serve(t, eng, ln, &engine.Subscriber{}), "", 1)
	publish(t, eng, msg("1", "skipped by the hook"))
	m := msg("2", "the server's own")
	m.NoHook = true
	publish(t, eng, m)
	s.expect(frame("2", "the server's own"))
}
