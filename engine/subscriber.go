package engine

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// Subscriber is one open stream. The transport fills the exported fields
// before Serve; after Serve has registered it, only hooks change State.
type Subscriber struct {
	ID      uint64   // engine-wide, set by Serve
	Topics  []string // topics to read; empty means the default topic ""
	Request *Request // nil when no hook needs it
	State   any      // opaque to the engine: a hook's per-subscriber data
	Start   time.Time
	// Expires, when not zero, ends the stream at that time with
	// ": expired" and a retry hint (the subscriber's token expired; it
	// comes back with a new one and its Last-Event-ID). Set before Serve;
	// read only by the subscriber's goroutine, as its read deadline.
	Expires time.Time

	e       *Engine
	shard   *shard
	conn    net.Conn        // reads, blocking writes, deadlines
	raw     syscall.RawConn // non-blocking writes by the shard; nil: always via conn
	closeFn func() error
	index   int // position in shard.subs; guarded by shard.mu

	// state says who owns the fields below (see stIdle, stShard, stSelf):
	// the owner reads and writes them without locks; the CAS or store that
	// hands ownership over publishes them to the next owner.
	state atomic.Int32
	// kick holds the reasons the shard handed the subscriber to its
	// goroutine; set by the shard (or Close), swapped to 0 by the goroutine.
	kick atomic.Uint32
	// goodbyeRetry is the retry hint in ms of a Disconnect (negative:
	// none); stored before kickDisconnect is set, read by finish after
	// the goroutine has seen the bit.
	goodbyeRetry atomic.Int64

	cursors   []cursor // one per topic; next is atomic only so stats can read it
	lastMsg   *Message // the last message delivered (drops multi-topic duplicates; see lastSeq)
	lastWrite int64    // unix nanoseconds of the last write
	backlog   []byte   // bytes owed to the socket after a partial write
}

type cursor struct {
	t    *topic
	next atomic.Uint64 // ring sequence of the next message to read
	pos  int           // index in the shard's list of t's subscribers; guarded by shard.mu
}

// Stream is the connection a subscriber is served on.
type Stream struct {
	// Conn reads (to notice the client leaving), does blocking writes and
	// takes deadlines.
	Conn net.Conn
	// Raw, when not nil, lets the shard write without blocking (on Linux;
	// elsewhere it is ignored). Leave it nil for connections whose bytes
	// are not the socket's (TLS).
	Raw syscall.RawConn
	// Close closes the socket.
	Close func() error
	// Head is written first (the HTTP response head).
	Head []byte
	// LastEventID is the id the client saw last, when HasLastEventID.
	LastEventID    string
	HasLastEventID bool
}

// ErrSlowWrite is the reason a subscriber whose socket took nothing for
// WriteTimeout is closed.
var ErrSlowWrite = errors.New("engine: write timed out")

// Serve runs sub on st until the client leaves, the subscriber times out or
// lags, or the engine closes. It writes the stream's head, ": ok", the
// replay or catch-up, and then hands live delivery to sub's shard. It
// blocks for the stream's whole life; Unsubscribe has run when it returns.
func (e *Engine) Serve(sub *Subscriber, st Stream) error {
	e.Assign(sub)
	sub.conn, sub.closeFn = st.Conn, st.Close
	if !sub.Expires.IsZero() {
		// Before the shard can kick it: a kick's past deadline must not
		// be overwritten by this one.
		_ = sub.conn.SetReadDeadline(sub.Expires)
	}
	if fastWrites && st.Raw != nil {
		sub.raw = st.Raw
		limitUnsent(sub.raw)
	}
	if !e.enter() {
		_ = sub.writeFinal(AppendRetry(append([]byte(nil), st.Head...), "shutdown", e.shutdownRetryMS()))
		_ = sub.closeFn()
		sub.runUnsubscribe() // the transport ran Subscribe: keep the pair
		return ErrClosed
	}
	defer e.live.Done()

	names := sub.Topics
	if len(names) == 0 {
		names = defaultTopic
	}
	sub.cursors = make([]cursor, len(names))
	for i, n := range names {
		sub.cursors[i].t = e.acquireSub(n) // a pattern's topic for a pattern (patindex.go)
		sub.cursors[i].next.Store(sub.cursors[i].t.ring.Head())
	}

	head := append(append([]byte(nil), st.Head...), ": ok\n\n"...)
	if h := e.cfg.Hooks.Catchup; h != nil {
		msgs, err := h(sub, st.LastEventID, st.HasLastEventID)
		if err != nil {
			e.cfg.Logger.Warn("catchup hook failed", "subscriber", sub.ID, "err", err)
		}
		for _, m := range msgs {
			if err := m.Validate(); err != nil {
				e.cfg.Logger.Warn("catchup hook returned a bad message", "subscriber", sub.ID, "err", err)
				continue
			}
			head = AppendFrame(head, m)
		}
	} else if st.HasLastEventID {
		n := len(head)
		var later bool
		if head, later = sub.replay(head, st.LastEventID); later {
			// Not registered yet: nothing to take back from the shard.
			err := sub.writeFinal(AppendRetry(head, laterFrame, e.shutdownRetryMS()))
			_ = sub.closeFn()
			for i := range sub.cursors {
				e.release(sub.cursors[i].t)
			}
			sub.runUnsubscribe()
			return err
		}
		if bytes.Contains(head[n:], []byte(gapFrame)) {
			e.counters.replayGaps.Add(1)
		} else {
			e.counters.replays.Add(1)
		}
	}

	// Registered before ": ok" goes out, so a client that has read it is
	// counted; as owner (stSelf) until the head is written, so the shard
	// cannot write anything before it.
	sub.state.Store(stSelf)
	sub.shard.add(sub)
	if log := e.cfg.Logger; log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug("subscribed", "subscriber", sub.ID, "topics", names, "shard", sub.shard.idx, "replay", st.HasLastEventID)
	}
	sub.backlog = head
	if err := sub.flushBacklog(); err != nil {
		return sub.finish(kickGone)
	}
	sub.state.Store(stIdle)
	// Anything published meanwhile was skipped by the shard: look again.
	for i := range sub.cursors {
		sub.shard.markDirty(sub.cursors[i].t)
	}
	return sub.loop()
}

// Assign gives sub its id, start time and shard, once. The transport calls
// it before the subscribe hook, so hooks know which shard (and so which
// script VM) the subscriber belongs to; Serve calls it if nobody did.
func (e *Engine) Assign(sub *Subscriber) {
	if sub.shard != nil {
		return
	}
	sub.e = e
	sub.ID = e.nextSubID.Add(1)
	if sub.Start.IsZero() {
		sub.Start = time.Now()
	}
	sub.shard = e.shards[sub.ID%uint64(len(e.shards))]
}

// Shard returns the index of sub's shard (valid after Assign).
func (sub *Subscriber) Shard() int { return sub.shard.idx }

// replayFrom points the cursors just after the message with id lastID.
// In a topic that does not hold lastID but whose ring still covers the
// moment it was published (by Seq), the cursor starts right after that
// moment. It reports false when no topic holds lastID: a replay gap.
func (sub *Subscriber) replayFrom(lastID string) bool {
	var seenSeq uint64
	found := false
	for i := range sub.cursors {
		c := &sub.cursors[i]
		if s, ok := c.t.ring.Find(func(m *Message) bool { return m.ID == lastID }); ok {
			m, _, _ := c.t.ring.Get(s)
			if m != nil {
				seenSeq = max(seenSeq, m.Seq)
				c.next.Store(s + 1)
				found = true
			}
		}
	}
	if !found {
		return false
	}
	for i := range sub.cursors {
		c := &sub.cursors[i]
		if c.next.Load() != c.t.ring.Head() {
			continue // found in this topic
		}
		if s, ok := c.t.ring.Find(func(m *Message) bool { return m.Seq <= seenSeq }); ok {
			c.next.Store(s + 1)
		} else if tail := c.t.ring.Tail(); tail == c.t.first && !c.t.lossy {
			c.next.Store(tail) // nothing evicted yet: everything here is newer
		}
	}
	return true
}

// loop waits in Read until the client leaves or the shard hands the
// subscriber over (by setting a read deadline in the past), then acts.
func (sub *Subscriber) loop() error {
	buf := make([]byte, 64)
	for {
		_, err := sub.conn.Read(buf)
		if err == nil {
			continue // a client has nothing to say on an event stream; drop it
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return sub.finish(kickGone)
		}
		// Reset the deadline before reading kick: a kick that lands after
		// the reset sets a new deadline, one before it is in kick. The
		// reset deadline is the expiry (zero: none), so a deadline that
		// was not a kick is the expiry.
		_ = sub.conn.SetReadDeadline(sub.Expires)
		k := sub.kick.Swap(0)
		switch {
		case k == 0 && !sub.Expires.IsZero() && !time.Now().Before(sub.Expires):
			return sub.finish(kickExpired)
		case k == 0:
			continue
		case k&(kickShutdown|kickTimeout|kickLagged|kickGone|kickDisconnect) != 0:
			return sub.finish(k)
		}
		if k = sub.catchUp(); k != 0 {
			return sub.finish(k)
		}
	}
}

// catchUp writes the backlog blocking, then delivers by cursor from this
// goroutine until nothing is pending, and gives the subscriber back to the
// shard. It returns a kick reason when the subscriber must end instead.
// Called with state stSelf.
func (sub *Subscriber) catchUp() uint32 {
	var frames [][]byte
	for {
		if err := sub.flushBacklog(); err != nil {
			if errors.Is(err, ErrSlowWrite) {
				sub.e.cfg.Logger.Warn("subscriber closed: its socket took nothing for the write timeout",
					"subscriber", sub.ID, "write_timeout", sub.e.cfg.WriteTimeout)
				return kickGone | kickWriteTimeout
			}
			return kickGone
		}
		if k := sub.kick.Load(); k&(kickShutdown|kickDisconnect) != 0 {
			return k & (kickShutdown | kickDisconnect)
		}
		var lapped bool
		batch := sub.shard.enterHooks()
		frames, _, lapped = sub.gather(frames[:0], maxBatch, maxPassBytes, batch)
		sub.shard.leaveHooks(batch)
		if lapped {
			return kickLagged
		}
		if len(frames) > 0 {
			sub.shard.delivered.Add(uint64(len(frames))) // once per batch, as the shard does per pass
			for _, f := range frames {
				sub.backlog = append(sub.backlog, f...)
			}
			clear(frames)
			continue
		}
		sub.backlog = sub.backlog[:0]
		if cap(sub.backlog) > 64<<10 {
			sub.backlog = nil // a burst's buffer is not kept for the stream's life
		}
		sub.state.Store(stIdle)
		// A publish that woke the shard while we owned the subscriber was
		// skipped by it; look once more now that the shard can take it.
		if !sub.pending() || !sub.state.CompareAndSwap(stIdle, stSelf) {
			// Let the shard recompute its lowest cursors (the "queued"
			// answer) now that this one has moved on without it.
			for i := range sub.cursors {
				sub.shard.markDirty(sub.cursors[i].t)
			}
			return 0
		}
	}
}

// flushBacklog writes the backlog with blocking writes, each chunk given
// WriteTimeout: a socket that takes nothing for that long fails.
func (sub *Subscriber) flushBacklog() error {
	const chunk = 64 << 10
	// Written from the front; buf keeps the slice's start, so that the
	// next backlog reuses its capacity instead of allocating (the path of
	// every delivery without a raw socket, as over TLS).
	buf := sub.backlog
	for len(sub.backlog) > 0 {
		n := min(len(sub.backlog), chunk)
		_ = sub.conn.SetWriteDeadline(time.Now().Add(sub.e.cfg.WriteTimeout))
		w, err := sub.conn.Write(sub.backlog[:n])
		sub.backlog = sub.backlog[w:]
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = ErrSlowWrite
			}
			return err
		}
	}
	sub.backlog = buf[:0]
	sub.lastWrite = time.Now().UnixNano()
	return sub.conn.SetWriteDeadline(time.Time{})
}

// gather appends to dst the frames pending for sub, in publish order across
// its topics, up to maxFrames frames or until they reach maxBytes bytes (at
// least one frame), and returns how many bytes it appended. lapped reports
// that a cursor was overwritten or dropped. Only the owner of sub calls it.
func (sub *Subscriber) gather(dst [][]byte, maxFrames, maxBytes int, batch any) (_ [][]byte, n int, lapped bool) {
	hook := sub.e.cfg.Hooks.Message
	if len(sub.cursors) == 1 {
		c := &sub.cursors[0]
		next := c.next.Load()
		for len(dst) < maxFrames && n < maxBytes {
			m, ok, lap := c.t.ring.Get(next)
			if lap {
				return dst, n, true
			}
			if !ok {
				break
			}
			next++
			k := len(dst)
			if dst = sub.appendFrame(dst, m, hook, batch); len(dst) > k { // not when the hook skips m
				n += len(dst[k])
			}
		}
		c.next.Store(next)
		return dst, n, false
	}
	for len(dst) < maxFrames && n < maxBytes {
		// The cursor whose next message was published first goes next.
		var best *cursor
		var bm *Message
		for i := range sub.cursors {
			c := &sub.cursors[i]
			m, ok, lap := c.t.ring.Get(c.next.Load())
			if lap {
				return dst, n, true
			}
			if ok && (bm == nil || m.Seq < bm.Seq || m.Seq == bm.Seq && sub.before(m, bm)) {
				best, bm = c, m
			}
		}
		if best == nil {
			break
		}
		best.next.Add(1)
		if bm == sub.lastMsg || bm.Seq < sub.lastSeq() {
			continue // the same message through another of our topics
		}
		k := len(dst)
		if dst = sub.appendFrame(dst, bm, hook, batch); len(dst) > k {
			n += len(dst[k])
		}
	}
	return dst, n, false
}

// lastSeq is the Seq of the last message delivered, 0 before the first.
// Only the owner of sub calls it.
func (sub *Subscriber) lastSeq() uint64 {
	if sub.lastMsg == nil {
		return 0
	}
	return sub.lastMsg.Seq
}

// before orders two messages of one Seq, which only PublishLocal makes (a
// local message takes the Seq of the last one published): the message just
// delivered goes first, so its copies in other topics are dropped before
// anything comes between them; then the published one, which came first,
// before the local one.
func (sub *Subscriber) before(m, other *Message) bool {
	if m == sub.lastMsg || other == sub.lastMsg {
		return m == sub.lastMsg
	}
	return other.local && !m.local
}

func (sub *Subscriber) appendFrame(dst [][]byte, m *Message, hook func(any, *Message, *Subscriber) []byte, batch any) [][]byte {
	sub.lastMsg = m
	f := m.Frame
	if hook != nil && !m.NoHook {
		if f = hook(batch, m, sub); f == nil {
			return dst
		}
	}
	return append(dst, f)
}

// pending reports whether any cursor has something to read (or is lapped).
func (sub *Subscriber) pending() bool {
	for i := range sub.cursors {
		if sub.cursors[i].next.Load() < sub.cursors[i].t.ring.Head() {
			return true
		}
	}
	return false
}

// setPos records sub's index in its shard's list of t's subscribers.
// shard.mu must be held.
func (sub *Subscriber) setPos(t *topic, pos int) {
	for i := range sub.cursors {
		if sub.cursors[i].t == t {
			sub.cursors[i].pos = pos
			return
		}
	}
}

// cursorOf returns sub's cursor on t (MaxUint64 if none).
func (sub *Subscriber) cursorOf(t *topic) uint64 {
	for i := range sub.cursors {
		if sub.cursors[i].t == t {
			return sub.cursors[i].next.Load()
		}
	}
	return ^uint64(0)
}

// finish ends the stream for the reasons in k: it leaves the shard, writes
// the goodbye (timeout, lagged or shutdown with a retry hint), closes the
// socket and runs Unsubscribe.
func (sub *Subscriber) finish(k uint32) error {
	sub.shard.remove(sub)
	e := sub.e
	var err error
	switch {
	case k&kickShutdown != 0:
		// What was published before the shutdown and not written yet (a
		// --write-coalesce window, a pass that had not run) goes out before
		// the goodbye: a restarted node's rings will not have it.
		pending, n := sub.pendingFrames()
		if err = sub.writeFinal(AppendRetry(pending, "shutdown", e.shutdownRetryMS())); err == nil && n > 0 {
			sub.shard.delivered.Add(uint64(n))
		}
	case k&kickGone != 0:
		// nothing can be written any more
		if k&kickWriteTimeout != 0 && sub.raw != nil {
			abortOnClose(sub.raw)
		}
	case k&kickDisconnect != 0:
		err = sub.writeFinal(appendGoodbye(nil, sub.goodbyeRetry.Load()))
	case k&kickTimeout != 0:
		retry := e.cfg.TimeoutRetry
		if h := e.cfg.Hooks.Timeout; h != nil {
			if r, ok := h(sub, time.Since(sub.Start)); ok {
				retry = r
			}
		}
		err = sub.writeFinal(AppendRetry(nil, "timeout", retry.Milliseconds()))
	case k&kickLagged != 0:
		e.cfg.Logger.Warn("subscriber closed: lagged behind what the rings hold (--capacity, --max-history-bytes)", "subscriber", sub.ID, "capacity", e.cfg.Capacity)
		err = sub.writeFinal(AppendRetry(nil, "lagged", e.cfg.TimeoutRetry.Milliseconds()))
	case k&kickExpired != 0:
		err = sub.writeFinal(AppendRetry(nil, "expired", e.cfg.TimeoutRetry.Milliseconds()))
	}
	_ = sub.closeFn()
	for i := range sub.cursors {
		e.release(sub.cursors[i].t)
	}
	reason := closeReason(k)
	e.counters.closed[reason].Add(1)
	if log := e.cfg.Logger; log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug("unsubscribed", "subscriber", sub.ID, "reason", closeReasonNames[reason], "connected", time.Since(sub.Start).Round(time.Millisecond))
	}
	sub.runUnsubscribe()
	return err
}

// writeFinal writes b with a short deadline: a goodbye must not hold up a
// shutdown or a slot.
// pendingFrames returns the frames sub's cursors have not delivered yet
// (through the message hook, as a pass would), and how many, for the
// shutdown goodbye. Nothing if a cursor was lapped: the ring no longer has
// them in order. Only the owner of sub calls it, once it left its shard.
func (sub *Subscriber) pendingFrames() ([]byte, int) {
	var out []byte
	var frames [][]byte
	n := 0
	batch := sub.shard.enterHooks()
	defer sub.shard.leaveHooks(batch)
	for {
		var lapped bool
		frames, _, lapped = sub.gather(frames[:0], maxBatch, math.MaxInt, batch)
		if lapped {
			return nil, 0
		}
		if len(frames) == 0 {
			return out, n
		}
		n += len(frames)
		for _, f := range frames {
			out = append(out, f...)
		}
	}
}

func (sub *Subscriber) writeFinal(b []byte) error {
	d := min(sub.e.cfg.WriteTimeout, 2*time.Second)
	_ = sub.conn.SetWriteDeadline(time.Now().Add(d))
	_, err := sub.conn.Write(b)
	return err
}

func (sub *Subscriber) runUnsubscribe() {
	if h := sub.e.cfg.Hooks.Unsubscribe; h != nil {
		h(sub)
	}
}

// shutdownRetryMS is the retry hint sent at shutdown: the configured
// TimeoutRetry (1s if unset) plus up to twice that again, so that clients
// do not all come back in the same instant.
func (e *Engine) shutdownRetryMS() int64 {
	base := e.cfg.TimeoutRetry
	if base <= 0 {
		base = time.Second
	}
	return (base + rand.N(2*base)).Milliseconds()
}
