package ring_test

import (
	"errors"
	"runtime"
	"slices"
	"sync"
	"testing"
	"weak"

	"github.com/tinysse/tinysse/ring"
)

func newRing[T any](t testing.TB, capacity int) *ring.Ring[T] {
	t.Helper()
	r, err := ring.New[T](capacity)
	if err != nil {
		t.Fatalf("New(%d): %v", capacity, err)
	}
	return r
}

func TestRingNewCapacity(t *testing.T) {
	for _, c := range []int{-1, 0, 3, 5, 6, 7, 12, 100, 1<<30 + 1, int(^uint(0) >> 1), 3 << 20} {
		if r, err := ring.New[int](c); !errors.Is(err, ring.ErrCapacity) || r != nil {
			t.Errorf("New(%d) = %v, %v; want nil, ErrCapacity", c, r, err)
		}
	}
	for _, c := range []int{1, 2, 4, 8, 256, 1 << 16} {
		r, err := ring.New[int](c)
		if err != nil {
			t.Fatalf("New(%d): %v", c, err)
		}
		if r.Cap() != c || r.Head() != 0 || r.Tail() != 0 {
			t.Errorf("New(%d): Cap %d Head %d Tail %d", c, r.Cap(), r.Head(), r.Tail())
		}
	}
}

func TestRingAppendGet(t *testing.T) {
	r := newRing[string](t, 4)
	if _, ok, lapped := r.Get(0); ok || lapped {
		t.Fatalf("Get(0) on empty ring: ok=%v lapped=%v", ok, lapped)
	}
	vals := []string{"a", "b", "c", "d", "e", "f", "g"}
	for i, v := range vals {
		if s, _, _ := r.Append(v); s != uint64(i) {
			t.Fatalf("Append(%q) = %d, want %d", v, s, i)
		}
		if r.Head() != uint64(i+1) {
			t.Fatalf("Head after %d appends = %d", i+1, r.Head())
		}
		wantTail := uint64(max(0, i+1-4))
		if r.Tail() != wantTail {
			t.Fatalf("Tail after %d appends = %d, want %d", i+1, r.Tail(), wantTail)
		}
	}
	// Head 7, capacity 4: 3..6 readable, 0..2 lapped, 7.. not yet written.
	for c := uint64(0); c < 10; c++ {
		v, ok, lapped := r.Get(c)
		switch {
		case c < 3:
			if ok || !lapped {
				t.Errorf("Get(%d) = %q ok=%v lapped=%v; want lapped", c, v, ok, lapped)
			}
		case c < 7:
			if !ok || lapped || v != vals[c] {
				t.Errorf("Get(%d) = %q ok=%v lapped=%v; want %q", c, v, ok, lapped, vals[c])
			}
		default:
			if ok || lapped || v != "" {
				t.Errorf("Get(%d) = %q ok=%v lapped=%v; want not yet", c, v, ok, lapped)
			}
		}
	}
}

func TestRingGetFarBehindIsO1(t *testing.T) {
	// A cursor lapped many times over is still answered from one slot.
	r := newRing[int](t, 2)
	for i := range 1000 {
		r.Append(i)
	}
	if _, ok, lapped := r.Get(1); ok || !lapped {
		t.Fatalf("Get(1) after 1000 appends: ok=%v lapped=%v", ok, lapped)
	}
	if v, ok, _ := r.Get(r.Tail()); !ok || v != 998 {
		t.Fatalf("Get(Tail()) = %d, %v; want 998", v, ok)
	}
	if _, ok, lapped := r.Get(^uint64(0)); ok || lapped {
		t.Fatalf("Get(MaxUint64): ok=%v lapped=%v", ok, lapped)
	}
}

func TestRingCapacityOne(t *testing.T) {
	r := newRing[int](t, 1)
	r.Append(10)
	r.Append(11)
	if v, ok, _ := r.Get(1); !ok || v != 11 {
		t.Fatalf("Get(1) = %d %v", v, ok)
	}
	if _, _, lapped := r.Get(0); !lapped {
		t.Fatal("Get(0) not lapped")
	}
	if s, ok := r.Find(func(v int) bool { return v == 11 }); !ok || s != 1 {
		t.Fatalf("Find(11) = %d %v", s, ok)
	}
	if _, ok := r.Find(func(v int) bool { return v == 10 }); ok {
		t.Fatal("Find found an overwritten value")
	}
}

func TestRingFind(t *testing.T) {
	r := newRing[int](t, 8)
	if _, ok := r.Find(func(int) bool { return true }); ok {
		t.Fatal("Find on an empty ring found something")
	}
	for i := range 5 {
		r.Append(i % 2) // 0 1 0 1 0
	}
	if s, ok := r.Find(func(v int) bool { return v == 1 }); !ok || s != 3 {
		t.Fatalf("Find(1) = %d, %v; want newest 3", s, ok)
	}
	if s, ok := r.Find(func(v int) bool { return v == 0 }); !ok || s != 4 {
		t.Fatalf("Find(0) = %d, %v; want newest 4", s, ok)
	}
	if _, ok := r.Find(func(v int) bool { return v == 2 }); ok {
		t.Fatal("Find(2) found a value never appended")
	}

	// Once wrapped: only the last Cap() values are found, the oldest included.
	for i := 5; i < 20; i++ {
		r.Append(i)
	}
	if s, ok := r.Find(func(v int) bool { return v == 12 }); !ok || s != 12 {
		t.Fatalf("Find(12) = %d, %v; want the oldest value 12", s, ok)
	}
	if _, ok := r.Find(func(v int) bool { return v == 11 }); ok {
		t.Fatal("Find(11) found an overwritten value")
	}
	var seen []int
	r.Find(func(v int) bool { seen = append(seen, v); return false })
	want := []int{19, 18, 17, 16, 15, 14, 13, 12}
	if len(seen) != len(want) {
		t.Fatalf("Find visited %v, want %v", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Fatalf("Find visited %v, want %v (newest first)", seen, want)
		}
	}
}

func TestRingFindWithLappingWriter(t *testing.T) {
	// The writer laps the ring while Find is scanning (from inside match,
	// which runs on the scanning goroutine): values overwritten under the
	// scan are not reported, and a reported sequence always holds a
	// matching value.
	r := newRing[int](t, 8)
	for i := range 8 {
		r.Append(i)
	}
	calls := 0
	s, ok := r.Find(func(v int) bool {
		calls++
		if calls == 2 {
			for i := 100; i < 106; i++ { // overwrite the older slots
				r.Append(i)
			}
		}
		return v == 2
	})
	if ok {
		v, got, _ := r.Get(s)
		t.Fatalf("Find reported seq %d (value %d, %v) though value 2 was overwritten mid-scan", s, v, got)
	}

	// Concurrently: every reported sequence holds a value that matches,
	// or has been lapped since (never another value).
	r2 := newRing[int](t, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100000 {
			r2.Append(i)
		}
	}()
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		s, ok := r2.Find(func(v int) bool { return v%7 == 0 })
		if !ok {
			continue
		}
		if v, got, _ := r2.Get(s); got && (v%7 != 0 || uint64(v) != s) {
			t.Fatalf("Find reported seq %d holding %d", s, v)
		}
	}
}

// pair is stored by value; a torn read would show A != B.
type pair struct {
	A, B uint64
}

// followStats is what one reader of runConcurrent saw.
type followStats struct {
	seen, resyncs int
	// staleTail counts resyncs where Tail() was still the lapped cursor:
	// the writer had stored the slot but not yet head (documented on Get).
	staleTail int
}

// runConcurrent appends total pairs from one goroutine while readers
// follow by cursor, resynchronising to Tail() when lapped. With keep > 0
// the writer also drops the oldest values after each append so that at
// most keep stay (the engine's byte budget).
func runConcurrent(t *testing.T, capacity, total, readers, keep int) []followStats {
	r := newRing[pair](t, capacity)
	var wg sync.WaitGroup
	start := make(chan struct{})
	stats := make([]followStats, readers)
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &stats[i]
			<-start
			var cursor uint64
			last := int64(-1)
			for last < int64(total)-1 {
				v, ok, lapped := r.Get(cursor)
				switch {
				case lapped:
					tail := r.Tail()
					if tail < cursor {
						t.Errorf("reader %d: lapped at %d but Tail is %d", i, cursor, tail)
						return
					}
					if tail == cursor {
						st.staleTail++
					}
					cursor = tail
					st.resyncs++
				case ok:
					if v.A != v.B {
						t.Errorf("reader %d: torn value %+v at %d", i, v, cursor)
						return
					}
					if v.A != cursor || int64(v.A) <= last {
						t.Errorf("reader %d: value %d at cursor %d after %d", i, v.A, cursor, last)
						return
					}
					last = int64(v.A)
					cursor++
					st.seen++
				default:
					if h := r.Head(); h < cursor {
						t.Errorf("reader %d: cursor %d past Head %d", i, cursor, h)
						return
					}
				}
			}
		}()
	}
	close(start)
	for i := range uint64(total) {
		r.Append(pair{A: i, B: i})
		for keep > 0 && r.Len() > keep {
			if _, ok := r.DropOldest(); !ok {
				t.Fatal("DropOldest on a ring holding values")
			}
		}
	}
	wg.Wait()
	return stats
}

func TestRingConcurrentReaders(t *testing.T) {
	for _, capacity := range []int{64, 1 << 16} {
		stats := runConcurrent(t, capacity, 100000, 4, 0)
		for i, s := range stats {
			if s.seen == 0 {
				t.Errorf("capacity %d: reader %d saw nothing", capacity, i)
			}
			t.Logf("capacity %d: reader %d: %d values read, %d resyncs (%d to a stale Tail)", capacity, i, s.seen, s.resyncs, s.staleTail)
		}
	}
}

func TestRingConcurrentReadersWithDrops(t *testing.T) {
	// The writer keeps 3 of 64 values: readers are lapped by drops far
	// more often than by the writer going round, and never see a torn or
	// misplaced value.
	stats := runConcurrent(t, 64, 100000, 4, 3)
	for i, s := range stats {
		if s.seen == 0 {
			t.Errorf("reader %d saw nothing", i)
		}
		t.Logf("reader %d: %d values read, %d resyncs (%d to a stale Tail)", i, s.seen, s.resyncs, s.staleTail)
	}
}

func TestRingDropOldest(t *testing.T) {
	r := newRing[string](t, 4)
	if _, ok := r.DropOldest(); ok {
		t.Fatal("DropOldest on an empty ring")
	}
	for _, v := range []string{"a", "b", "c"} {
		if _, old, ok := r.Append(v); ok {
			t.Fatalf("Append(%q) overwrote %q in a ring that was not full", v, old)
		}
	}
	if v, ok := r.DropOldest(); !ok || v != "a" {
		t.Fatalf("DropOldest = %q %v, want a", v, ok)
	}
	if r.Len() != 2 || r.Tail() != 1 || r.Head() != 3 {
		t.Fatalf("after one drop: Len %d Tail %d Head %d, want 2 1 3", r.Len(), r.Tail(), r.Head())
	}
	if v, ok, lapped := r.Get(0); ok || !lapped {
		t.Fatalf("Get(0) after its drop = %q ok=%v lapped=%v, want lapped", v, ok, lapped)
	}
	if v, s, ok := r.Oldest(); !ok || v != "b" || s != 1 {
		t.Fatalf("Oldest = %q %d %v, want b 1", v, s, ok)
	}
	// Appends into free slots and the dropped one overwrite nothing; the
	// one after overwrites b, the oldest still held.
	for _, v := range []string{"d", "e", "f"} {
		_, old, ok := r.Append(v)
		if v != "f" && ok {
			t.Fatalf("Append(%s) overwrote %q: its slot was free or dropped", v, old)
		}
		if v == "f" && (!ok || old != "b") {
			t.Fatalf("Append(f) overwrote %q %v, want b", old, ok)
		}
	}
	if r.Tail() != 2 || r.Len() != 4 {
		t.Fatalf("Tail %d Len %d, want 2 4", r.Tail(), r.Len())
	}
	for range 4 {
		if _, ok := r.DropOldest(); !ok {
			t.Fatal("DropOldest on a ring holding values")
		}
	}
	if r.Len() != 0 || r.Tail() != r.Head() {
		t.Fatalf("emptied ring: Len %d Tail %d Head %d", r.Len(), r.Tail(), r.Head())
	}
	if _, _, ok := r.Oldest(); ok {
		t.Fatal("Oldest on an emptied ring")
	}
	if _, ok := r.Find(func(string) bool { return true }); ok {
		t.Fatal("Find on an emptied ring found something")
	}
	for c := range r.Head() {
		if _, ok, lapped := r.Get(c); ok || !lapped {
			t.Fatalf("Get(%d) on an emptied ring: ok=%v lapped=%v", c, ok, lapped)
		}
	}
	// Appending again works from the same head.
	if s, _, _ := r.Append("g"); s != 6 || r.Len() != 1 {
		t.Fatalf("Append after emptying: seq %d Len %d", s, r.Len())
	}
	if v, ok, _ := r.Get(6); !ok || v != "g" {
		t.Fatalf("Get(6) = %q %v", v, ok)
	}
}

func TestRingDropFreesValue(t *testing.T) {
	// A dropped value is not kept alive by its slot: once nobody else
	// holds it the garbage collector takes it. The same for an overwritten
	// one.
	r := newRing[*[1 << 16]byte](t, 4)
	dropped, overwritten := new([1 << 16]byte), new([1 << 16]byte)
	wd, wo := weak.Make(dropped), weak.Make(overwritten)
	r.Append(dropped)
	r.Append(overwritten)
	r.Append(new([1 << 16]byte))
	if _, ok := r.DropOldest(); !ok {
		t.Fatal("DropOldest")
	}
	for range 4 {
		r.Append(new([1 << 16]byte)) // laps overwritten's slot
	}
	dropped, overwritten = nil, nil
	for i := 0; i < 10 && (wd.Value() != nil || wo.Value() != nil); i++ {
		runtime.GC()
	}
	if wd.Value() != nil {
		t.Error("the dropped value is still alive")
	}
	if wo.Value() != nil {
		t.Error("the overwritten value is still alive")
	}
	runtime.KeepAlive(r)
}

// A ring started past 0 takes older values below its tail while newer
// ones are appended, until it is full; appends then overwrite the oldest,
// prepended or not.
func TestPrepend(t *testing.T) {
	r, _ := ring.New[int](4)
	if r.Prepend(1) {
		t.Fatal("Prepend at sequence 0: nothing below")
	}
	r.Skip(4)
	if r.Head() != 4 || r.Tail() != 4 || r.Len() != 0 {
		t.Fatalf("after Skip: head %d tail %d len %d", r.Head(), r.Tail(), r.Len())
	}
	r.Append(10)
	for _, v := range []int{9, 8} {
		if !r.Prepend(v) {
			t.Fatalf("Prepend(%d) refused with %d held", v, r.Len())
		}
	}
	r.Append(11)
	if r.Prepend(7) {
		t.Fatal("Prepend into a full ring")
	}
	var got []int
	for s := r.Tail(); s < r.Head(); s++ {
		v, ok, _ := r.Get(s)
		if !ok {
			t.Fatalf("Get(%d) not ok", s)
		}
		got = append(got, v)
	}
	if !slices.Equal(got, []int{8, 9, 10, 11}) || r.Tail() != 2 {
		t.Fatalf("ring holds %v from %d, want [8 9 10 11] from 2", got, r.Tail())
	}
	if _, old, ok := r.Append(12); !ok || old != 8 {
		t.Fatalf("Append over a full ring overwrote %v %v, want the prepended 8", old, ok)
	}
	if v, ok := r.DropOldest(); !ok || v != 9 {
		t.Fatalf("DropOldest = %v %v, want 9", v, ok)
	}
}
