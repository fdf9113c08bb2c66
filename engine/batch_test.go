package engine_test

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tinysse/tinysse/engine"
)

// TestPublishBatchOneUnit: a batch's messages get consecutive Seqs (and
// auto ids) even while others publish, and reach a subscriber in order.
func TestPublishBatchOneUnit(t *testing.T) {
	eng := newEngine(t, engine.Config{AutoID: true, Capacity: 4096})
	ln := listen(t)
	s := ready(t, eng, serve(t, eng, ln, &engine.Subscriber{Topics: []string{"t"}}), "t", 1)

	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				publish(t, eng, &engine.Message{Data: "single", HasData: true, Topics: []string{"t"}})
			}
		}
	})
	var batches [][]*engine.Message
	for b := range 20 {
		ms := make([]*engine.Message, 10)
		for i := range ms {
			ms[i] = &engine.Message{Data: "b" + strconv.Itoa(b), HasData: true, Topics: []string{"t"}}
		}
		res, err := eng.PublishBatch(ms)
		if err != nil {
			t.Fatal(err)
		}
		if res.Subscribers != 1 {
			t.Errorf("subscribers %d, want 1", res.Subscribers)
		}
		batches = append(batches, ms)
	}
	close(stop)
	wg.Wait()
	for b, ms := range batches {
		for i, m := range ms {
			if m.Seq != ms[0].Seq+uint64(i) || m.ID != strconv.FormatUint(m.Seq, 10) {
				t.Fatalf("batch %d message %d: Seq %d id %q; the batch began at %d", b, i, m.Seq, m.ID, ms[0].Seq)
			}
		}
	}
	// The subscriber reads each batch's ten in a row.
	want := 0
	run := 0
	for want < len(batches) {
		f, err := s.next()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(f, "data: single") {
			if run != 0 {
				t.Fatalf("a single message inside batch %d", want)
			}
			continue
		}
		if !strings.Contains(f, "data: b"+strconv.Itoa(want)+"\n") {
			t.Fatalf("frame %q, want one of batch %d", f, want)
		}
		if run++; run == 10 {
			run, want = 0, want+1
		}
	}
}

// TestPublishBatchAllOrNothing: a refused message (bad, over the topic
// cap, over the history budget) refuses the batch with its index, and
// nothing of it is published: no message, no topic, no id taken.
func TestPublishBatchAllOrNothing(t *testing.T) {
	eng := newEngine(t, engine.Config{AutoID: true, MaxTopics: 3, MaxHistoryBytes: 2048})
	publish(t, eng, msg("", "first", "a"))
	m := func(data string, topics ...string) *engine.Message {
		return &engine.Message{Data: data, HasData: true, Topics: topics}
	}
	big := strings.Repeat("x", 3000)
	for _, c := range []struct {
		name  string
		batch []*engine.Message
		index int
		err   error
	}{
		{"invalid", []*engine.Message{m("1", "a"), {ID: "a\nb", Data: "x", HasData: true}}, 1, engine.ErrInvalid},
		{"topic cap", []*engine.Message{m("1", "a"), m("2", "b"), m("3", "c", "d")}, 2, engine.ErrTooManyTopics},
		{"too large", []*engine.Message{m("1", "a"), m("2", "b"), m(big, "a")}, 2, engine.ErrTooLarge},
	} {
		_, err := eng.PublishBatch(c.batch)
		var be *engine.BatchError
		if !errors.As(err, &be) || be.Index != c.index || !errors.Is(err, c.err) {
			t.Errorf("%s: %v, want message %d: %v", c.name, err, c.index, c.err)
		}
		for i, bm := range c.batch {
			if bm.Seq != 0 || (c.name != "invalid" && bm.ID != "") {
				t.Errorf("%s: message %d kept Seq %d id %q", c.name, i, bm.Seq, bm.ID)
			}
		}
		if n := eng.Stats().Publishes; n != 1 {
			t.Errorf("%s: Publishes %d, want 1", c.name, n)
		}
		if n := eng.Topics(); n != 1 {
			t.Errorf("%s: %d topics held, want 1 (a refused batch creates none)", c.name, n)
		}
	}
	// The next publish takes the next id: the refused batches took none.
	res := publish(t, eng, msg("", "second", "a"))
	_ = res
	if last := eng.LastSeq(); last != 2 {
		t.Errorf("last Seq %d, want 2", last)
	}
}

// BenchmarkPublishBatch: PublishBatch of 100 messages of 200 bytes to one
// topic with no subscriber, per batch (allocs/op are the batch's).
func BenchmarkPublishBatch(b *testing.B) {
	e, err := engine.New(engine.Config{Capacity: 1024})
	if err != nil {
		b.Fatal(err)
	}
	data := strings.Repeat("x", 200)
	ms := make([]*engine.Message, 100)
	b.ReportAllocs()
	for b.Loop() {
		for i := range ms {
			ms[i] = &engine.Message{Data: data, HasData: true, Topics: []string{"bench"}}
		}
		if _, err := e.PublishBatch(ms); err != nil {
			b.Fatal(err)
		}
	}
}
