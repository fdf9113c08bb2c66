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
	"sync"
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
	done    func(error)

	// polled says the shard's poller watches the connection (watch, fd)
	// and no goroutine waits in Read: a goroutine is started whenever the
	// subscriber is handed over (wake) and ends when it lets go. Set by
	// Start before the shard knows the subscriber; read-only after.
	polled bool
	watch  syscall.RawConn // the descriptor the poller watches (Stream.Watch or Raw)
	plain  bool            // watch's bytes are the stream's (no TLS under Conn): read them directly
	fd     int             // watch's descriptor number: the poller's key
	// expiry ends a polled stream at Expires (a dedicated one uses its
	// read deadline); stopped by finish.
	expiry *time.Timer

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
	// armed says the poller will report the descriptor once more (polled
	// only): false once the owner has taken kickPoll, until it rearms.
	armed bool
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
	// Watch is the socket the shard's poller watches for the client
	// leaving, so that no goroutine waits in Read while the stream is
	// idle; nil: Raw. Over TLS it is the socket under the TLS layer (what
	// arrives on it is read through Conn). Leave both nil for a stream
	// with no socket of its own (an HTTP/2 stream): it keeps a goroutine.
	Watch syscall.RawConn
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
// lags, or the engine closes, and returns then: it is Start, waiting for
// the end. Unsubscribe has run when it returns.
func (e *Engine) Serve(sub *Subscriber, st Stream) error {
	ended := make(chan error, 1)
	e.Start(sub, st, func(err error) { ended <- err })
	return <-ended
}

// Start serves sub on st: it writes the stream's head, ": ok", the replay
// or catch-up, and then hands live delivery to sub's shard. It returns as
// soon as the stream no longer needs the calling goroutine: once the head
// is written when the shard's poller watches the connection (st.Watch or
// st.Raw, on Linux, macOS and the BSDs, unless Config.NoPoll), else when
// the stream ends. done, if not nil, is called once when the stream has
// ended (the client left, timeout, lag, shutdown), after the Unsubscribe
// hook, with the error Serve would return; it must not block for long
// (it runs on the goroutine that ended the stream).
func (e *Engine) Start(sub *Subscriber, st Stream, done func(error)) {
	e.Assign(sub)
	sub.conn, sub.closeFn, sub.done = st.Conn, st.Close, done
	if fastWrites && st.Raw != nil {
		sub.raw = st.Raw
		limitUnsent(sub.raw)
	}
	if !e.enter() {
		_ = sub.writeFinal(AppendRetry(append([]byte(nil), st.Head...), "shutdown", e.shutdownRetryMS()))
		_ = sub.closeFn()
		sub.runUnsubscribe() // the transport ran Subscribe: keep the pair
		if done != nil {
			done(ErrClosed)
		}
		return
	}

	names := sub.Topics
	if len(names) == 0 {
		names = defaultTopic
	}
	sub.cursors = make([]cursor, len(names))
	for i, n := range names {
		sub.cursors[i].t = e.acquireSub(n) // a pattern's topic for a pattern (patindex.go)
		sub.cursors[i].next.Store(sub.cursors[i].t.ring.Head())
	}

	head := append(append(getHeadBuf(), st.Head...), ": ok\n\n"...)
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
			sub.end(err)
			return
		}
		if bytes.Contains(head[n:], []byte(gapFrame)) {
			e.counters.replayGaps.Add(1)
		} else {
			e.counters.replays.Add(1)
		}
	}

	// Registered before ": ok" goes out, so a client that has read it is
	// counted; as owner (stSelf) until the head is written, so the shard
	// cannot write anything before it. The poller may report the socket
	// from here on: notice leaves that to us (we own sub), and letGo
	// acts on it.
	sub.state.Store(stSelf)
	if p := sub.shard.poller; p != nil && !e.cfg.NoPoll {
		if sub.watch = st.watchConn(); sub.watch != nil {
			sub.plain = st.Watch == nil || st.Watch == st.Raw
			sub.polled = p.watch(sub) == nil
			sub.armed = sub.polled
		}
	}
	if sub.polled && !sub.Expires.IsZero() {
		sub.expiry = time.AfterFunc(time.Until(sub.Expires), func() { sub.notice(kickExpired) })
	} else if !sub.Expires.IsZero() {
		// Before the shard can kick it: a kick's past deadline must not
		// be overwritten by this one.
		_ = sub.conn.SetReadDeadline(sub.Expires)
	}
	sub.shard.add(sub)
	if log := e.cfg.Logger; log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug("subscribed", "subscriber", sub.ID, "topics", names, "shard", sub.shard.idx, "replay", st.HasLastEventID, "polled", sub.polled)
	}
	// The first of what is pending (a replay from the rings) goes out
	// with the head, in the same write, rather than after a shard pass:
	// in a reconnect storm that pass would come after everyone else's.
	fp, _ := framesPool.Get().(*[][]byte)
	if fp == nil {
		fp = new([][]byte)
	}
	frames := sub.firstFrames((*fp)[:0])
	err := sub.writeFirst(head, frames)
	sub.backlog = nil // the head's buffer is not kept for the stream's life
	putHeadBuf(head)
	clear(frames)
	*fp = frames[:0]
	framesPool.Put(fp)
	if err != nil {
		sub.end(sub.finish(kickGone))
		return
	}
	// Anything published meanwhile (or beyond the first batch of a long
	// replay) was skipped by the shard: letGo marks the topics dirty, and
	// the shard looks again.
	if sub.letGo(false) {
		// A kick or an event came while the head went out.
		if err, ended := sub.settle(); ended {
			sub.end(err)
			return
		}
	}
	if !sub.polled {
		sub.end(sub.loop())
	}
}

// firstFrames appends to dst what a pass would write to sub now (up to
// maxBatch-1 frames, the head taking one buffer of the writev, and
// maxPassBytes), through the message hook, and counts it delivered.
// Called by sub's owner.
func (sub *Subscriber) firstFrames(dst [][]byte) [][]byte {
	if !sub.pending() {
		return dst
	}
	batch := sub.shard.enterHooks()
	frames, _, lapped := sub.gather(dst, maxBatch-1, maxPassBytes, batch)
	sub.shard.leaveHooks(batch)
	if lapped {
		clear(frames)
		return dst[:0] // the shard's next pass finds it lapped
	}
	sub.shard.delivered.Add(uint64(len(frames)))
	return frames
}

// writeFirst writes head, then frames. On a raw socket it first makes one
// non-blocking writev of them (the frames are the messages' own: nothing
// is copied), then copies what the socket did not take to the backlog
// and writes that blocking; elsewhere it copies all. Called by sub's
// owner (Start).
func (sub *Subscriber) writeFirst(head []byte, frames [][]byte) error {
	if sub.raw == nil {
		for _, f := range frames {
			head = append(head, f...)
		}
		sub.backlog = head
		return sub.flushBacklog()
	}
	iv, _ := iovecPool.Get().(*[]iovec)
	if iv == nil {
		iv = new([]iovec)
	}
	iov := appendIovec((*iv)[:0], head)
	total := len(head)
	for _, f := range frames {
		if len(f) > 0 {
			iov = appendIovec(iov, f)
			total += len(f)
		}
	}
	var n int
	var werr error
	err := sub.raw.Write(func(fd uintptr) bool {
		n, werr = writevFD(fd, iov)
		if werr == syscall.EAGAIN {
			werr = nil
		}
		return true // one attempt: the rest goes below, blocking
	})
	clear(iov)
	*iv = iov[:0]
	iovecPool.Put(iv)
	if err = errors.Join(err, werr); err != nil {
		return err
	}
	sub.lastWrite = time.Now().UnixNano()
	if n == total {
		return nil
	}
	sub.backlog = sub.backlog[:0]
	if n < len(head) {
		sub.backlog = append(sub.backlog, head[n:]...)
		n = 0
	} else {
		n -= len(head)
	}
	sub.backlog = appendRest(sub.backlog, frames, n)
	return sub.flushBacklog()
}

// framesPool and iovecPool recycle Start's frame lists and iovecs.
var (
	framesPool sync.Pool // of *[][]byte
	iovecPool  sync.Pool // of *[]iovec
)

// headBufs recycles the buffers heads (and the first replayed messages)
// are written from: a reconnect storm writes thousands of them a second.
var headBufs sync.Pool // of *[]byte

func getHeadBuf() []byte {
	if b, ok := headBufs.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, 1024)
}

func putHeadBuf(b []byte) {
	if cap(b) <= 2*maxPassBytes {
		b = b[:0]
		headBufs.Put(&b)
	}
}

// end tells the engine and the transport that the stream has ended.
func (sub *Subscriber) end(err error) {
	sub.e.live.Done()
	if sub.done != nil {
		sub.done(err)
	}
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

// loop serves a subscriber that keeps its goroutine (not polled): it
// waits in Read until the client leaves or the subscriber is handed over
// (wake sets a read deadline in the past), then acts.
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
		// Reset the deadline before looking at the state: a kick that
		// lands after the reset sets a new deadline. The reset deadline
		// is the expiry (zero: none), so a deadline that was not a kick
		// may be the expiry.
		deadline := sub.Expires
		expired := !deadline.IsZero() && !time.Now().Before(deadline)
		if expired {
			deadline = time.Time{}
		}
		_ = sub.conn.SetReadDeadline(deadline)
		if expired {
			// If the shard owns it now, it sees the bit as it lets go
			// and wakes us again.
			sub.kick.Or(kickExpired)
			sub.state.CompareAndSwap(stIdle, stSelf)
		}
		// stSelf: a kick handed the subscriber to us (or we just took
		// it). Anything else is a deadline whose kick letGo already took.
		if sub.state.Load() != stSelf {
			continue
		}
		if err, ended := sub.settle(); ended {
			return err
		}
	}
}

// serveSlow is the goroutine a polled subscriber gets whenever it is
// handed over (wake): it acts on the kick and, unless the stream ends,
// lets the subscriber go back to idle and ends. Called with state stSelf.
func (sub *Subscriber) serveSlow() {
	if err, ended := sub.settle(); ended {
		sub.end(err)
	}
}

// settle acts on kicks and lets go until the subscriber stays idle
// (ended false) or the stream ends (finish has run, with err). Called
// with state stSelf.
func (sub *Subscriber) settle() (err error, ended bool) {
	for {
		if err, ended = sub.act(); ended {
			return err, true
		}
		if !sub.letGo(true) {
			return nil, false
		}
	}
}

// act does what the kick bits ask of the subscriber's owner: end the
// stream (lag, timeout, shutdown, expiry, the client gone), drain what
// the client sent (kickPoll), catch up after a partial write. ended
// reports that the stream ended (finish has run) with err. Called with
// state stSelf.
func (sub *Subscriber) act() (err error, ended bool) {
	k := sub.kick.Swap(0)
	if k&kickPoll != 0 {
		sub.armed = false // the one-shot event was taken
		if !sub.clientThere() {
			k |= kickGone
		}
	}
	if k&(kickShutdown|kickTimeout|kickLagged|kickGone|kickExpired|kickDisconnect) != 0 {
		return sub.finish(k), true
	}
	if k = sub.catchUp(); k != 0 {
		return sub.finish(k), true
	}
	return nil, false
}

// clientThere reads what the client sent on a polled socket and drops it,
// and reports whether the client is still there. Without a raw socket
// (TLS) the bytes go through Conn, for as long as they keep coming within
// a short deadline. Either way at most maxDrain bytes per call: the
// poller reports a socket that still has bytes again once the subscriber
// is idle, so a client that never stops sending cannot keep its
// subscriber from the shard's deliveries.
func (sub *Subscriber) clientThere() bool {
	if sub.plain {
		return drainSocket(sub.watch)
	}
	var buf [512]byte
	for read := 0; ; {
		_ = sub.conn.SetReadDeadline(time.Now().Add(tlsPeek))
		n, err := sub.conn.Read(buf[:])
		if read += n; err == nil && read < maxDrain {
			continue
		}
		if err == nil {
			_ = sub.conn.SetReadDeadline(time.Time{})
			return true
		}
		_ = sub.conn.SetReadDeadline(time.Time{})
		return errors.Is(err, os.ErrDeadlineExceeded)
	}
}

// tlsPeek is how long a polled TLS subscriber's goroutine waits for the
// rest of what made its socket readable (a record the client sent, or its
// close_notify) before going back to idle. A record split by the network
// is kept by the TLS layer and finished when its next bytes arrive.
const tlsPeek = 5 * time.Millisecond

// maxDrain bounds what one look at a polled socket reads and drops.
const maxDrain = 64 << 10

// letGo hands the subscriber back (stIdle; a polled one's descriptor is
// rearmed) after its owner acted. If meanwhile a kick came or, after a
// catch-up (caughtUp), something was published that the shard skipped
// because we owned it, it takes the subscriber back and reports true: the
// caller acts again. Otherwise it marks the subscriber's topics dirty, so
// that the shard delivers what it skipped and recomputes its lowest
// cursors. Called with state stSelf.
func (sub *Subscriber) letGo(caughtUp bool) (again bool) {
	if sub.polled && !sub.armed {
		if err := sub.shard.poller.rearm(sub); err != nil {
			// The descriptor is gone (closed under us): nothing will
			// report it again, so end the stream now.
			sub.kick.Or(kickGone)
			return true
		}
		sub.armed = true
	}
	sub.state.Store(stIdle)
	// Whoever set a kick bit while we owned the subscriber set it before
	// failing its CAS, so it is seen here (see ARCHITECTURE.md).
	if (sub.kick.Load() != 0 || caughtUp && sub.pending()) && sub.state.CompareAndSwap(stIdle, stSelf) {
		return true
	}
	for i := range sub.cursors {
		sub.shard.markDirty(sub.cursors[i].t)
	}
	return false
}

// notice hands sub over for reason k from outside its shard (the poller,
// the expiry timer): if nobody owns it, to a goroutine now; if someone
// does, that owner acts on k as it lets go (release, letGo), since k is set
// before the CAS that fails.
func (sub *Subscriber) notice(k uint32) {
	sub.kick.Or(k)
	if sub.state.CompareAndSwap(stIdle, stSelf) {
		sub.wake()
	}
}

// wake starts what acts on the kick bits of a subscriber just made stSelf
// for it: a goroutine for a polled one, a read deadline in the past for
// one whose goroutine waits in Read.
func (sub *Subscriber) wake() {
	if sub.polled {
		go sub.serveSlow()
		return
	}
	_ = sub.conn.SetReadDeadline(aLongTimeAgo)
}

// release lets go of a subscriber the shard owned (stShard) and, if a kick
// came meanwhile (the poller, the expiry timer, shutdown), takes it back
// for its goroutine. One load of kick per delivery: it shares a cache line
// with state.
func (sub *Subscriber) release() {
	sub.state.Store(stIdle)
	if sub.kick.Load() != 0 && sub.state.CompareAndSwap(stIdle, stSelf) {
		sub.wake()
	}
}

// catchUp writes the backlog blocking, then delivers by cursor from this
// goroutine until nothing is pending. It returns a kick reason when the
// subscriber must end instead. Called with state stSelf; the caller lets
// go (letGo).
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
		return 0
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
	e := sub.e
	// Counted before the stream leaves its topics' counts, so whoever sees
	// a subscriber gone (Engine.Subscribers, /metrics) also sees why.
	reason := closeReason(k)
	e.counters.closed[reason].Add(1)
	sub.shard.remove(sub)
	if sub.expiry != nil {
		sub.expiry.Stop()
	}
	if sub.polled {
		sub.shard.poller.forget(sub) // before the socket closes and its number is reused
	}
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
