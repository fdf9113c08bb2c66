package ring_test

import (
	"sync"
	"sync/atomic"
	"testing"
)

func BenchmarkAppend(b *testing.B) {
	r := newRing[*int](b, 1024)
	v := new(int)
	b.ReportAllocs()
	for b.Loop() {
		r.Append(v)
	}
}

func BenchmarkGet(b *testing.B) {
	r := newRing[*int](b, 1024)
	v := new(int)
	for range 1024 {
		r.Append(v)
	}
	b.ReportAllocs()
	var c uint64
	for b.Loop() {
		if _, ok, _ := r.Get(c&1023 + r.Tail()); !ok {
			b.Fatal("Get missed")
		}
		c++
	}
}

// BenchmarkAppendWithReaders appends while 4 readers follow by cursor.
func BenchmarkAppendWithReaders(b *testing.B) {
	r := newRing[*int](b, 1024)
	v := new(int)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cursor uint64
			for !stop.Load() {
				_, ok, lapped := r.Get(cursor)
				switch {
				case lapped:
					cursor = r.Tail()
				case ok:
					cursor++
				}
			}
		}()
	}
	b.ReportAllocs()
	for b.Loop() {
		r.Append(v)
	}
	b.StopTimer()
	stop.Store(true)
	wg.Wait()
}
