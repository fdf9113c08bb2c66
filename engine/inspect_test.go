package engine_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tinysse/tinysse/engine"
)

// TestTopicInfo: a topic's figures are those of its ring: messages
// published and held, the bytes of their frames, the newest id and Seq.
func TestTopicInfo(t *testing.T) {
	eng := newEngine(t, engine.Config{Capacity: 4})
	ln := listen(t)
	s := ready(t, eng, serve(t, eng, ln, &engine.Subscriber{Topics: []string{"a"}}), "a", 1)
	if _, ok := eng.Topic("nope"); ok {
		t.Error("Topic found a topic nobody used")
	}
	var frames []string
	for i := range 6 {
		m := msg(fmt.Sprint(i), "data of "+fmt.Sprint(i), "a")
		publish(t, eng, m)
		frames = append(frames, string(m.Frame))
		// Read before the next publish: six into a ring of four while
		// the shard's pass is late (a loaded machine) would lap the
		// subscriber and close it as lagged, and Subscribers be 0.
		s.expect(string(m.Frame))
	}
	publish(t, eng, msg("", "no id", "b"))
	ti, ok := eng.Topic("a")
	if !ok {
		t.Fatal("topic a not found")
	}
	var bytes int64
	for _, f := range frames[2:] { // the ring keeps the last 4
		bytes += int64(len(f))
	}
	want := engine.TopicInfo{Name: "a", Subscribers: 1, Published: 6, Messages: 4, Bytes: bytes, LastID: "5", LastSeq: 6}
	if ti != want {
		t.Errorf("Topic(a) = %+v, want %+v", ti, want)
	}
	b, _ := eng.Topic("b")
	if b.LastID != "" || b.LastSeq != 7 || b.Messages != 1 || b.Subscribers != 0 {
		t.Errorf("Topic(b) = %+v", b)
	}
}

// TestTopicPage: pages of topics in name order, each after the last name
// of the one before, until none is left.
func TestTopicPage(t *testing.T) {
	eng := newEngine(t, engine.Config{})
	names := []string{"", "b", "a", "c/d", "c", "zz"}
	for _, n := range names {
		publish(t, eng, msg("", "x", n))
	}
	slices.Sort(names)
	var got []string
	after, first := "", true
	for pages := 0; ; pages++ {
		page, more, total := eng.TopicPage(after, first, 4)
		if total != len(names) {
			t.Errorf("total %d, want %d", total, len(names))
		}
		for _, ti := range page {
			got = append(got, ti.Name)
			if ti.Messages != 1 || ti.Published != 1 {
				t.Errorf("topic %q: %+v", ti.Name, ti)
			}
		}
		if !more {
			break
		}
		if pages > len(names) {
			t.Fatal("paging does not end")
		}
		after, first = page[len(page)-1].Name, false
	}
	if !slices.Equal(got, names) {
		t.Errorf("pages gave %q, want %q", got, names)
	}
	if page, more, _ := eng.TopicPage("zz", false, 10); len(page) != 0 || more {
		t.Errorf("after the last name: %d topics, more %v", len(page), more)
	}
}

func ids(ms []*engine.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

// TestHistoryRead: History from a Seq, Newest, SeqOfID, and what they say
// of a ring that has lapped (Lost, Oldest).
func TestHistoryRead(t *testing.T) {
	eng := newEngine(t, engine.Config{Capacity: 4})
	for i := 1; i <= 3; i++ {
		publish(t, eng, msg(fmt.Sprint("m", i), "x", "t"))
		publish(t, eng, msg(fmt.Sprint("o", i), "x", "other"))
	}
	// t holds m1 (Seq 1), m2 (3), m3 (5).
	h := eng.History("t", 0, 10)
	if !slices.Equal(ids(h.Messages), []string{"m1", "m2", "m3"}) || h.More || h.Lost || h.Oldest != 1 || !h.Known {
		t.Errorf("History(t, 0) = %q %+v", ids(h.Messages), h)
	}
	h = eng.History("t", 1, 1)
	if !slices.Equal(ids(h.Messages), []string{"m2"}) || !h.More {
		t.Errorf("History(t, 1, limit 1) = %q more %v", ids(h.Messages), h.More)
	}
	h = eng.History("t", 2, 10) // a Seq of another topic
	if !slices.Equal(ids(h.Messages), []string{"m2", "m3"}) {
		t.Errorf("History(t, 2) = %q", ids(h.Messages))
	}
	if h = eng.History("t", 5, 10); len(h.Messages) != 0 || h.More {
		t.Errorf("History(t, 5) = %q", ids(h.Messages))
	}
	if h = eng.Newest("t", 2); !slices.Equal(ids(h.Messages), []string{"m2", "m3"}) || h.More {
		t.Errorf("Newest(t, 2) = %q more %v", ids(h.Messages), h.More)
	}
	if seq, ok := eng.SeqOfID("t", "m2"); !ok || seq != 3 {
		t.Errorf("SeqOfID(m2) = %d, %v", seq, ok)
	}
	if _, ok := eng.SeqOfID("t", "o2"); ok {
		t.Error("SeqOfID found another topic's id")
	}
	if h = eng.History("none", 0, 10); h.Known || len(h.Messages) != 0 {
		t.Errorf("History of an unknown topic: %+v", h)
	}
	for i := 4; i <= 6; i++ { // laps m1 and m2
		publish(t, eng, msg(fmt.Sprint("m", i), "x", "t"))
	}
	h = eng.History("t", 0, 10)
	if !slices.Equal(ids(h.Messages), []string{"m3", "m4", "m5", "m6"}) || !h.Lost || h.Oldest != 5 {
		t.Errorf("after lapping: %q %+v", ids(h.Messages), h)
	}
}

// TestPresence: pages of subscribers in id order, of one topic or of
// all, with the totals.
func TestPresence(t *testing.T) {
	eng := newEngine(t, engine.Config{Shards: 3})
	ln := listen(t)
	var onA []uint64
	var everyone []uint64
	for i := range 7 {
		topics := []string{"a"}
		if i%3 == 2 {
			topics = []string{"b"}
		}
		sub := &engine.Subscriber{Topics: topics}
		// As the transport does: the id is given before the stream
		// starts. (Read after Start has written the head, it would be a
		// race to the detector: the head goes out by a raw writev, which
		// it does not see as ordering anything.)
		eng.Assign(sub)
		s := serve(t, eng, ln, sub)
		s.expect(okFrame)
		everyone = append(everyone, sub.ID)
		if topics[0] == "a" {
			onA = append(onA, sub.ID)
		}
	}
	collect := func(name string, all bool, limit int) (got []uint64) {
		after := uint64(0)
		for range 20 {
			page, more, total := eng.Presence(name, all, after, limit)
			want := int64(len(onA))
			if all {
				want = int64(len(everyone))
			}
			if total != want {
				t.Errorf("Presence(%q, all %v): total %d, want %d", name, all, total, want)
			}
			for _, s := range page {
				got = append(got, s.ID)
				if s.RemoteAddr() == nil || s.Start.IsZero() {
					t.Errorf("subscriber %d: remote %v, start %v", s.ID, s.RemoteAddr(), s.Start)
				}
			}
			if !more {
				return got
			}
			after = page[len(page)-1].ID
		}
		t.Fatal("paging does not end")
		return nil
	}
	if got := collect("a", false, 2); !slices.Equal(got, onA) {
		t.Errorf("topic a: %v, want %v", got, onA)
	}
	if got := collect("", true, 3); !slices.Equal(got, everyone) {
		t.Errorf("everyone: %v, want %v", got, everyone)
	}
	if page, more, total := eng.Presence("nobody", false, 0, 10); len(page) != 0 || more || total != 0 {
		t.Errorf("unknown topic: %d, %v, %d", len(page), more, total)
	}
	a := collect("a", false, 100)
	if page, _, _ := eng.Presence("a", false, a[0], 1); len(page) != 1 || page[0].ID != a[1] {
		t.Errorf("after %d: %v", a[0], page)
	}
}

// TestDisconnect: Disconnect ends one stream with ": disconnected" and
// the retry hint (none when retry is negative); the others stay. The
// unsubscribe hook runs and the close is counted.
func TestDisconnect(t *testing.T) {
	var u unsubscribes
	eng := newEngine(t, engine.Config{Hooks: engine.Hooks{Unsubscribe: u.hook}})
	ln := listen(t)
	one := &engine.Subscriber{Topics: []string{"t"}}
	two := &engine.Subscriber{Topics: []string{"t"}}
	stay := &engine.Subscriber{Topics: []string{"t"}}
	s1, s2, s3 := serve(t, eng, ln, one), serve(t, eng, ln, two), serve(t, eng, ln, stay)
	for _, s := range []*stream{s1, s2, s3} {
		s.expect(okFrame)
	}
	waitSubscribers(t, eng, "t", 3)
	if !eng.Disconnect(one.ID, 1500*time.Millisecond) {
		t.Fatal("Disconnect did not find the subscriber")
	}
	s1.expect(": disconnected\nretry: 1500\n\n")
	s1.expectEOF()
	if !eng.Disconnect(two.ID, -1) {
		t.Fatal("Disconnect did not find the second subscriber")
	}
	s2.expect(": disconnected\n\n")
	s2.expectEOF()
	s1.served()
	s2.served()
	if eng.Disconnect(one.ID, 0) || eng.Disconnect(0, 0) || eng.Disconnect(1<<40, 0) {
		t.Error("Disconnect found a subscriber that is gone or never was")
	}
	u.check(t, one, two)
	if c := eng.Stats().Closed; c.Disconnected != 2 || c.Left != 0 {
		t.Errorf("closed %+v, want 2 disconnected", c)
	}
	waitSubscribers(t, eng, "t", 1)
	publish(t, eng, msg("1", "still here", "t"))
	s3.expect(frame("1", "still here"))
}

// TestDisconnectTopic: every subscriber of the topic goes, whatever its
// other topics; subscribers of other topics stay.
func TestDisconnectTopic(t *testing.T) {
	eng := newEngine(t, engine.Config{Shards: 2})
	ln := listen(t)
	var gone []*stream
	for i := range 4 {
		topics := []string{"t"}
		if i == 3 {
			topics = []string{"x", "t"}
		}
		s := serve(t, eng, ln, &engine.Subscriber{Topics: topics})
		s.expect(okFrame)
		gone = append(gone, s)
	}
	stay := ready(t, eng, serve(t, eng, ln, &engine.Subscriber{Topics: []string{"x"}}), "t", 4)
	if n := eng.DisconnectTopic("t", 0); n != 4 {
		t.Errorf("DisconnectTopic = %d, want 4", n)
	}
	for _, s := range gone {
		s.expect(": disconnected\nretry: 0\n\n")
		s.expectEOF()
	}
	waitSubscribers(t, eng, "t", 0)
	if n := eng.DisconnectTopic("t", 0); n != 0 {
		t.Errorf("again: %d", n)
	}
	if n := eng.DisconnectTopic("never", 0); n != 0 {
		t.Errorf("unknown topic: %d", n)
	}
	publish(t, eng, msg("1", "x", "x"))
	stay.expect(frame("1", "x"))
}

// TestDisconnectWhileCatchingUp: a subscriber whose goroutine owns it
// (catching up over a connection without a raw socket) still ends.
func TestDisconnectWhileCatchingUp(t *testing.T) {
	eng := newEngine(t, engine.Config{Capacity: 1024})
	ln := listen(t)
	sub := &engine.Subscriber{Topics: []string{"t"}}
	s := ready(t, eng, serve(t, eng, ln, sub, noRaw), "t", 1)
	for i := range 200 {
		publish(t, eng, msg(fmt.Sprint(i), "some data to write", "t"))
	}
	if !eng.Disconnect(sub.ID, 10*time.Millisecond) {
		t.Fatal("not found")
	}
	for {
		f, err := s.next()
		if err != nil {
			t.Fatalf("stream ended without the goodbye: %v", err)
		}
		if f == ": disconnected\nretry: 10\n\n" {
			break
		}
	}
	s.expectEOF()
}
