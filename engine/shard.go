package engine

import (
	"math"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// maxBatch bounds the frames gathered for one write (the kernel's IOV_MAX).
const maxBatch = 1024

// maxPassBytes bounds what one delivery pass writes to one subscriber (at
// least one frame): a subscriber with more pending gets the rest in the
// passes that follow (its topic is marked dirty again), after every other
// subscriber of the shard has had its turn. So a pass costs at most
// subscribers × maxPassBytes of copying into socket buffers, whatever the
// subscribers' backlogs: a pass that ran longer than the ring lasts
// (Capacity messages at the publish rate: 256 ms at 1,000 msg/s) would
// lap subscribers that read everything it gave them. It also bounds what
// a subscriber's socket refuses and the shard copies to its backlog, and
// each step of its goroutine's catch-up: a subscriber that stops reading
// holds at most this much (and a frame) of its own until WriteTimeout cuts
// it off. It matches unsentLimit, what the kernel takes before a socket
// whose reader stopped refuses.
const maxPassBytes = 128 << 10

// shard owns a partition of the subscribers and delivers to them from one
// goroutine (run). Publishers only mark topics dirty and wake it.
//
// Lock order: shard.mu, then shard.dirtyMu (never the other way round).
// The shard goroutine holds mu for a whole delivery pass or sweep; a
// subscriber's goroutine takes it to register and to leave. Publishers never
// take mu, so a long pass never slows a publish.
type shard struct {
	e    *Engine
	idx  int
	wake chan struct{} // capacity 1: a pending wake-up is never lost nor doubled

	mu      sync.Mutex
	subs    []*Subscriber          // guarded by mu: every subscriber, for sweeps
	byTopic map[*topic]*shardTopic // guarded by mu
	dirtyMu sync.Mutex             // guards dirty
	dirty   []*topic               // topics with new messages; appended by publishers
	spare   []*topic               // owned by the shard goroutine: the other dirty buffer

	// Scratch for the write path, owned by whoever holds mu.
	frames  [][]byte
	iov     []iovec
	wn      int
	werr    error
	writeFn func(fd uintptr) bool // s.writev bound once, so a write allocates nothing

	// passEnd and passDur are when the last delivery pass ended and how
	// long it took, and passBusy whether it carried more than one message
	// to a subscriber or a publish arrived while the shard held before it,
	// for the adaptive hold (coalesce.go). Shard goroutine only.
	passEnd  time.Time
	passDur  time.Duration
	passBusy bool
	// passMulti is set by a pass that wrote more than one message to a
	// subscriber in one write; owned by whoever holds mu, read and reset
	// by deliverDirty.
	passMulti bool
	// cont is set by a pass that left a subscriber's pending messages
	// behind at maxPassBytes (it marked their topic dirty again): the next
	// pass then runs without the hold. Shard goroutine only.
	cont bool

	// passFrames counts the frames a pass handed to sockets; owned by
	// whoever holds mu, added to delivered once per pass (not per
	// delivery) by flushCount. delivered is read by Engine.Stats.
	passFrames int
	delivered  atomic.Uint64

	// poller watches the shard's idle subscribers (poll.go); nil where
	// there is none, or with Config.NoPoll. Set by New, read-only after.
	poller *poller
}

// shardTopic is one topic's subscribers within a shard; guarded by shard.mu.
type shardTopic struct {
	subs []*Subscriber
}

// Subscriber states: who may touch the cursors, the backlog and the socket.
const (
	stIdle  int32 = iota // nobody: the shard may take it (CAS to stShard)
	stShard              // the shard goroutine is writing to it
	stSelf               // the subscriber's own goroutine owns it (slow write, or ending)
)

// Reasons a shard hands a subscriber to its goroutine (Subscriber.kick bits).
const (
	kickSlow uint32 = 1 << iota // the socket took part of a write: finish it blocking
	kickLagged
	kickTimeout
	kickShutdown
	kickGone // the socket failed
	// kickWriteTimeout goes with kickGone when the socket took nothing
	// for WriteTimeout (only for Stats: finish treats it as kickGone).
	kickWriteTimeout
	// kickExpired is never set by a shard: the subscriber's goroutine
	// ends the stream for it when its read deadline, Expires, passes
	// (a polled subscriber: its expiry timer, through notice).
	kickExpired
	// kickPoll: the poller reported the subscriber's socket (the client
	// sent bytes, or left); its owner reads to find out which.
	kickPoll
	// kickDisconnect: Engine.Disconnect ends the stream (the server API),
	// with the retry hint in Subscriber.goodbyeRetry.
	kickDisconnect
)

func newShard(e *Engine, idx int) *shard {
	s := &shard{
		e:       e,
		idx:     idx,
		wake:    make(chan struct{}, 1),
		byTopic: make(map[*topic]*shardTopic),
		frames:  make([][]byte, 0, 64),
		iov:     make([]iovec, 0, 64),
	}
	s.writeFn = s.writev
	return s
}

// sweepEvery is how often a shard checks keep-alives and timeouts.
func (e *Engine) sweepEvery() time.Duration {
	d := time.Second
	if k := e.cfg.KeepAlive; k > 0 && k/4 < d {
		d = k / 4
	}
	if t := e.cfg.Timeout; t > 0 && t/4 < d {
		d = t / 4
	}
	return max(d, 5*time.Millisecond)
}

func (s *shard) run(stop <-chan struct{}) {
	tick := time.NewTicker(s.e.sweepEvery())
	defer tick.Stop()
	var hold coalescer
	for {
		select {
		case <-s.wake:
			// A pass that stopped at maxPassBytes goes on at once: the
			// wait is for gathering new publishes, and this one's
			// subscribers are still reading what it wrote.
			held := false
			if !s.cont {
				var ok bool
				if held, ok = hold.wait(s, stop); !ok {
					return
				}
			}
			start := time.Now()
			multi := s.deliverDirty()
			s.passEnd = time.Now()
			s.passDur = s.passEnd.Sub(start)
			// Not "a publish arrived during the pass": a publisher with one
			// message in flight sends its next as soon as it reads this
			// one, which can be before the pass ends.
			s.passBusy = held || multi
		case now := <-tick.C:
			s.sweep(now)
		case <-stop:
			return
		}
	}
}

// markDirty tells the shard that t has new messages. Called by publishers.
func (s *shard) markDirty(t *topic) {
	if !t.dirty(s.idx).Swap(true) {
		s.dirtyMu.Lock()
		s.dirty = append(s.dirty, t)
		s.dirtyMu.Unlock()
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// deliverDirty runs one delivery pass over the subscribers of every dirty
// topic, and says whether it wrote more than one message to a subscriber
// at once. Only the shard goroutine calls it.
func (s *shard) deliverDirty() (multi bool) {
	s.dirtyMu.Lock()
	list := s.dirty
	s.dirty = s.spare[:0]
	s.dirtyMu.Unlock()

	s.mu.Lock()
	s.cont = false
	s.passMulti = false
	batch := s.enterHooks()
	now := time.Now().UnixNano()
	for _, t := range list {
		// Cleared before reading the ring: a publish from here on marks
		// the topic again and wakes us, so no message waits for a sweep.
		t.dirty(s.idx).Store(false)
		st := s.byTopic[t]
		if st == nil {
			continue
		}
		lowest := uint64(math.MaxUint64)
		again := false
		for _, sub := range st.subs {
			// Nothing to read (it caught up on its own goroutine, or
			// another topic's pass took it): no ownership to take. A
			// publish after this look marks the topic dirty again.
			if sub.pending() {
				if _, more := s.deliver(sub, now, batch); more {
					again = true
				}
			}
			if c := sub.cursorOf(t); c < lowest {
				lowest = c
			}
		}
		t.shardMin[s.idx].Store(lowest)
		if again {
			s.markDirty(t) // the next pass goes on where maxPassBytes stopped this one
			s.cont = true
		}
	}
	s.leaveHooks(batch)
	s.flushCount()
	multi = s.passMulti
	s.mu.Unlock()
	clear(list)
	s.spare = list
	return multi
}

// deliver writes what sub has pending, up to maxBatch frames and
// maxPassBytes, without blocking: a subscriber that finds k messages gets
// them in one writev of the shared frames. What the socket does not take
// is handed to the subscriber's goroutine. more reports that everything
// gathered was written and the limits left some behind: the caller
// schedules another pass. mu must be held.
func (s *shard) deliver(sub *Subscriber, now int64, batch any) (wrote, more bool) {
	if !sub.state.CompareAndSwap(stIdle, stShard) {
		return false, false // its goroutine owns it and catches up by itself
	}
	frames, n, lapped := sub.gather(s.frames[:0], maxBatch, maxPassBytes, batch)
	s.frames = frames[:0] // keep what a burst grew, so the next one does not allocate
	if lapped {
		s.kick(sub, kickLagged)
		return false, false
	}
	if len(frames) == 0 {
		sub.release()
		return false, false
	}
	s.passFrames += len(frames)
	if len(frames) > 1 {
		s.passMulti = true
	}
	if !s.write(sub, frames, now) {
		return true, false // handed to its goroutine
	}
	sub.release()
	return true, len(frames) == maxBatch || n >= maxPassBytes
}

// write sends frames to sub without blocking and says whether all went;
// if so the shard still owns sub (stShard). On a partial write the rest is
// copied to sub's backlog and sub is handed to its goroutine. mu must be
// held and sub in stShard.
func (s *shard) write(sub *Subscriber, frames [][]byte, now int64) bool {
	defer clear(frames)
	if sub.raw == nil {
		for _, f := range frames {
			sub.backlog = append(sub.backlog, f...)
		}
		s.kick(sub, kickSlow)
		return false
	}
	s.iov = s.iov[:0]
	total := 0
	for _, f := range frames {
		if len(f) > 0 {
			s.iov = appendIovec(s.iov, f)
			total += len(f)
		}
	}
	s.wn, s.werr = 0, nil
	if err := sub.raw.Write(s.writeFn); err != nil {
		s.werr = err
	}
	clear(s.iov)
	sub.lastWrite = now
	switch {
	case s.werr != nil:
		s.kick(sub, kickGone)
		return false
	case s.wn < total:
		sub.backlog = appendRest(sub.backlog, frames, s.wn)
		s.kick(sub, kickSlow)
		return false
	}
	return true
}

// writev makes one non-blocking writev attempt of s.iov; it returns true so
// that RawConn.Write never parks waiting for the socket to drain.
func (s *shard) writev(fd uintptr) bool {
	n, err := writevFD(fd, s.iov)
	if err == syscall.EAGAIN {
		err = nil
	}
	s.wn, s.werr = n, err
	return true
}

// appendRest appends frames minus their first n bytes to dst.
func appendRest(dst []byte, frames [][]byte, n int) []byte {
	for _, f := range frames {
		if n >= len(f) {
			n -= len(f)
			continue
		}
		dst = append(dst, f[n:]...)
		n = 0
	}
	return dst
}

// kick hands sub to its goroutine for reason: it wakes the goroutine
// waiting in Read, or starts one for a polled subscriber (wake). The
// caller must own sub (stShard).
func (s *shard) kick(sub *Subscriber, reason uint32) {
	sub.kick.Or(reason)
	sub.state.Store(stSelf)
	sub.wake()
}

var aLongTimeAgo = time.Unix(1, 0)

// sweep delivers anything pending (a safety net), sends keep-alives and
// closes subscribers that reached the timeout. Only the shard goroutine.
func (s *shard) sweep(at time.Time) {
	now := at.UnixNano()
	cfg := &s.e.cfg
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.flushCount()
	batch := s.enterHooks()
	defer s.leaveHooks(batch)
	for _, sub := range s.subs {
		if cfg.Timeout > 0 && at.Sub(sub.Start) >= cfg.Timeout {
			if sub.state.CompareAndSwap(stIdle, stShard) {
				s.kick(sub, kickTimeout)
			}
			continue
		}
		if wrote, more := s.deliver(sub, now, batch); wrote {
			if more {
				for i := range sub.cursors {
					s.markDirty(sub.cursors[i].t)
				}
			}
			continue
		}
		// lastWrite belongs to the owner: take the subscriber before reading it.
		if cfg.KeepAlive <= 0 || !sub.state.CompareAndSwap(stIdle, stShard) {
			continue
		}
		if time.Duration(now-sub.lastWrite) < cfg.KeepAlive || s.write(sub, append(s.frames[:0], s.e.keepAlive), now) {
			sub.release()
		}
	}
}

// flushCount adds the pass's frames to delivered: one atomic add per
// pass, however many subscribers it wrote to. mu must be held.
func (s *shard) flushCount() {
	if s.passFrames != 0 {
		s.delivered.Add(uint64(s.passFrames))
		s.passFrames = 0
	}
}

// enterHooks and leaveHooks bracket a batch of Message hook calls.
func (s *shard) enterHooks() any {
	if h := s.e.cfg.Hooks; h.EnterShard != nil && h.Message != nil {
		return h.EnterShard(s.idx)
	}
	return nil
}

func (s *shard) leaveHooks(batch any) {
	if h := s.e.cfg.Hooks; h.LeaveShard != nil && h.Message != nil {
		h.LeaveShard(batch)
	}
}

// add registers sub with the shard; its cursors must be set and its
// goroutine must own it (stSelf), and mark its topics dirty once it lets go.
func (s *shard) add(sub *Subscriber) {
	s.mu.Lock()
	sub.index = len(s.subs)
	s.subs = append(s.subs, sub)
	for i := range sub.cursors {
		t := sub.cursors[i].t
		st := s.byTopic[t]
		if st == nil {
			st = &shardTopic{}
			s.byTopic[t] = st
		}
		sub.cursors[i].pos = len(st.subs)
		st.subs = append(st.subs, sub)
		if c := sub.cursors[i].next.Load(); c < t.shardMin[s.idx].Load() {
			t.shardMin[s.idx].Store(c)
		}
		t.subscribers.Add(1)
	}
	s.e.counters.subscribers.Add(1)
	s.e.counters.subscribes.Add(1)
	if s.e.closing.Load() {
		// Close has set closing before walking the shards under mu, so
		// either its walk sees sub or we see closing here. Its goroutine
		// owns it (stSelf) and acts on the bit as it lets go.
		sub.kick.Or(kickShutdown)
	}
	s.mu.Unlock()
}

// remove takes sub out of the shard for good and gives its goroutine
// ownership. Called by sub's goroutine. O(topics of sub): the lowest
// cursor of its topics is recomputed by the pass it schedules.
func (s *shard) remove(sub *Subscriber) {
	s.mu.Lock()
	// Under mu the shard is not mid-write, so the state is idle or self.
	sub.state.Store(stSelf)
	last := len(s.subs) - 1
	s.subs[sub.index] = s.subs[last]
	s.subs[sub.index].index = sub.index
	s.subs[last] = nil
	s.subs = s.subs[:last]
	s.e.counters.subscribers.Add(-1)
	for i := range sub.cursors {
		t := sub.cursors[i].t
		t.subscribers.Add(-1)
		st := s.byTopic[t]
		pos, end := sub.cursors[i].pos, len(st.subs)-1
		moved := st.subs[end]
		st.subs[pos] = moved
		moved.setPos(t, pos)
		st.subs[end] = nil
		st.subs = st.subs[:end]
		if len(st.subs) == 0 {
			delete(s.byTopic, t)
			t.shardMin[s.idx].Store(math.MaxUint64)
		}
	}
	s.mu.Unlock()
	for i := range sub.cursors {
		if t := sub.cursors[i].t; t.shardMin[s.idx].Load() != math.MaxUint64 {
			s.markDirty(t) // the pass recomputes the lowest cursor without sub
		}
	}
}

// shutdown hands every subscriber to its goroutine to say goodbye.
func (s *shard) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sub := range s.subs {
		// The bit before the CAS: an owner (stSelf: its goroutine, mid
		// slow write or start) that makes the CAS fail sees the bit as
		// it lets go.
		sub.kick.Or(kickShutdown)
		if sub.state.CompareAndSwap(stIdle, stSelf) {
			sub.wake()
		} else if !sub.polled {
			_ = sub.conn.SetReadDeadline(aLongTimeAgo) // in case it is back in Read
		}
	}
}

// forceClose cuts every remaining subscriber off: blocked reads and writes fail.
func (s *shard) forceClose() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sub := range s.subs {
		_ = sub.conn.SetDeadline(aLongTimeAgo)
	}
}
