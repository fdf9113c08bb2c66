//go:build unix

package bench

import (
	"sync"
	"testing"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/ring"
)

// mutexRing is the naive baseline for ring.Ring: the same API over a
// slice guarded by a sync.RWMutex. It stores values in place, so Append
// allocates nothing, but every Get takes the lock.
type mutexRing[T any] struct {
	mu   sync.RWMutex
	vals []T    // guarded by mu
	head uint64 // guarded by mu
}

func newMutexRing[T any](capacity int) *mutexRing[T] {
	return &mutexRing[T]{vals: make([]T, capacity)}
}

func (r *mutexRing[T]) Cap() int { return len(r.vals) }

func (r *mutexRing[T]) Head() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.head
}

func (r *mutexRing[T]) Tail() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.tail()
}

func (r *mutexRing[T]) tail() uint64 {
	if n := uint64(len(r.vals)); r.head > n {
		return r.head - n
	}
	return 0
}

func (r *mutexRing[T]) Append(v T) (seq uint64, overwritten T, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.head
	i := s % uint64(len(r.vals))
	if s >= uint64(len(r.vals)) {
		overwritten, ok = r.vals[i], true
	}
	r.vals[i] = v
	r.head++
	return s, overwritten, ok
}

func (r *mutexRing[T]) Get(cursor uint64) (v T, ok, lapped bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	switch {
	case cursor >= r.head:
		return v, false, false
	case cursor < r.tail():
		return v, false, true
	}
	return r.vals[cursor%uint64(len(r.vals))], true, false
}

// rings is the API both rings offer to the cross-check.
type rings interface {
	Append(*engine.Message) (uint64, *engine.Message, bool)
	Get(uint64) (*engine.Message, bool, bool)
	Head() uint64
	Tail() uint64
}

// TestMutexRingAgrees checks that the baseline is a ring.Ring, so that the
// benchmarks compare like with like.
func TestMutexRingAgrees(t *testing.T) {
	r, err := ring.New[*engine.Message](8)
	if err != nil {
		t.Fatal(err)
	}
	both := []rings{r, newMutexRing[*engine.Message](8)}
	msgs := make([]*engine.Message, 21)
	for i := range msgs {
		msgs[i] = &engine.Message{Seq: uint64(i)}
	}
	for i, m := range msgs {
		for _, x := range both {
			if s, _, _ := x.Append(m); s != uint64(i) {
				t.Fatalf("%T: Append gave %d, want %d", x, s, i)
			}
		}
		for c := uint64(0); c <= uint64(i)+1; c++ {
			v0, ok0, lap0 := both[0].Get(c)
			v1, ok1, lap1 := both[1].Get(c)
			if v0 != v1 || ok0 != ok1 || lap0 != lap1 {
				t.Fatalf("after %d appends, Get(%d): ring (%v %v %v), mutex ring (%v %v %v)", i+1, c, v0, ok0, lap0, v1, ok1, lap1)
			}
		}
		if both[0].Head() != both[1].Head() || both[0].Tail() != both[1].Tail() {
			t.Fatalf("after %d appends: head/tail differ", i+1)
		}
	}
}

func newRing(b *testing.B, capacity int) *ring.Ring[*engine.Message] {
	r, err := ring.New[*engine.Message](capacity)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// BenchmarkRingAppend is the single writer appending. The loops are
// written out per type: through an interface the calls could not inline,
// and that would weigh more than what they do.
func BenchmarkRingAppend(b *testing.B) {
	m := newMessage()
	eachRing(b, func(b *testing.B, r rings, _ int) {
		b.ReportAllocs()
		for b.Loop() {
			r.Append(m)
		}
	})
}

// BenchmarkRingRead is GOMAXPROCS readers, each with its own cursor
// sweeping a full ring, while nobody writes: the best case for the lock,
// which the readers still share.
func BenchmarkRingRead(b *testing.B) {
	eachRing(b, func(b *testing.B, r rings, n int) {
		fill(r, n)
		tail, size := r.Tail(), uint64(n)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for c := uint64(0); pb.Next(); c++ {
				if _, ok, _ := r.Get(tail + c%size); !ok {
					panic("ring: value missing")
				}
			}
		})
	})
}

// eachRing runs fn on the lock-free ring ("ring") and on the naive
// baseline ("mutex"), at every capacity of ringCaps.
func eachRing(b *testing.B, fn func(b *testing.B, r rings, capacity int)) {
	impls := []struct {
		name string
		make func(b *testing.B, capacity int) rings
	}{
		{"ring", func(b *testing.B, n int) rings { return newRing(b, n) }},
		{"mutex", func(_ *testing.B, n int) rings { return newMutexRing[*engine.Message](n) }},
	}
	for _, impl := range impls {
		b.Run(impl.name, func(b *testing.B) {
			bySize(b, "cap", ringCaps, func(b *testing.B, n int) { fn(b, impl.make(b, n), n) })
		})
	}
}

func fill(r rings, n int) {
	for range 3 * n {
		r.Append(newMessage())
	}
}
