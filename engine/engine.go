package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tinysse/tinysse/ring"
)

// ErrClosed is returned by Publish and Serve once Close has begun.
var ErrClosed = errors.New("engine: shutting down")

// ErrTooManyTopics is returned by Publish for a new topic once the engine
// holds Config.MaxTopics topics.
var ErrTooManyTopics = errors.New("engine: topic limit reached")

// Config configures an Engine. The zero value of every field is its
// documented default.
type Config struct {
	// Shards is the number of delivery shards. Default: DefaultShards().
	Shards int
	// Capacity is how many messages each topic's ring keeps, rounded up to
	// a power of two. Default 256.
	Capacity int
	// KeepAlive is the interval of keep-alive comments. Default 60s;
	// negative disables them.
	KeepAlive time.Duration
	// KeepAliveText is the keep-alive comment's text. Default "keep-alive".
	KeepAliveText string
	// Timeout closes a subscriber after this long; 0 means never.
	Timeout time.Duration
	// TimeoutRetry is the retry hint sent at timeout and on lag. Default 0.
	TimeoutRetry time.Duration
	// WriteTimeout cuts off a subscriber whose socket accepts nothing for
	// this long (64 KiB of its backlog must go within it), with a reset so
	// that the kernel drops what it still holds for it. Default 30s.
	WriteTimeout time.Duration
	// MaxTopics bounds the topics a publish may create: beyond it Publish
	// refuses a message for a topic that does not exist yet with
	// ErrTooManyTopics. A topic is kept while it holds messages or
	// someone (a subscriber, a publish in flight) holds it, so without a
	// bound publishers choosing random names grow memory until the history
	// budget drops their messages. Subscribers' own empty topics (removed
	// when they leave) count towards it; the engine does not refuse them,
	// the transport does before a stream starts (CheckTopics). 0: no bound.
	MaxTopics int
	// MaxHistoryBytes bounds the memory of every topic's ring together:
	// the bytes the held messages take (frame, fields and state, see
	// heldSize). Past it the oldest messages are dropped from their rings,
	// across topics, oldest first (history.go); Publish refuses a message
	// that alone is larger (ErrTooLarge). Default DefaultMaxHistoryBytes
	// (256 MiB); negative: no bound.
	MaxHistoryBytes int64
	// AutoID gives a message published without an id the id Seq.
	AutoID bool
	// WriteCoalesce is how long a shard, woken by a publish, waits before
	// its delivery pass, so that what is published meanwhile reaches each
	// subscriber in the same write (see coalesce.go). 0, the default, is
	// adaptive: after a pass that wrote more than one message to a
	// subscriber at once, or a hold that saw a publish (busy), the next
	// starts at least the last pass's duration after it ended, but no less than AdaptiveCoalesceMin and no more
	// than AdaptiveCoalesceMax; a publisher with one message in flight, or
	// an idle shard, is never held. Negative: never wait.
	WriteCoalesce time.Duration
	// Hooks are the script's hook points; the zero value defines none.
	Hooks Hooks
	// Replay, when set, fetches from outside the rings (cluster mode: from
	// JetStream) what a Last-Event-ID older than the rings asks for; see
	// ReplayFunc. Nil: such a subscriber gets ": replay-gap". When it
	// fails, the stream ends with ": replay-unavailable" and a retry hint.
	Replay ReplayFunc
	// ReplayWait is how long a subscriber whose Last-Event-ID is ahead of
	// this engine (another node saw it first) waits for it to arrive; then
	// its stream ends with ": replay-unavailable" and a retry hint, and
	// the client comes back with the same id. Default 2s. Used only with
	// Replay.
	ReplayWait time.Duration
	// NoPoll keeps one goroutine per subscriber, parked in Read to notice
	// the client leaving, instead of the shards' pollers (epoll, kqueue:
	// poll.go), as on platforms without one. For comparison and as a way
	// out; the default watches idle subscribers without a goroutine.
	NoPoll bool
	// Logger receives the engine's logs. Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Shards <= 0 {
		c.Shards = DefaultShards()
	}
	if c.Capacity == 0 {
		c.Capacity = 256
	}
	if c.Capacity < 0 || c.Capacity > 1<<30 {
		return fmt.Errorf("engine: capacity %d out of range 1..2^30", c.Capacity)
	}
	c.Capacity = int(ceilPow2(uint64(c.Capacity)))
	if c.KeepAlive == 0 {
		c.KeepAlive = 60 * time.Second
	}
	if c.KeepAliveText == "" {
		c.KeepAliveText = "keep-alive"
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.MaxTopics < 0 {
		return errors.New("engine: max topics must not be negative")
	}
	if c.MaxHistoryBytes == 0 {
		c.MaxHistoryBytes = DefaultMaxHistoryBytes
	}
	if c.Timeout < 0 || c.TimeoutRetry < 0 {
		return errors.New("engine: timeout and timeout retry must not be negative")
	}
	if c.WriteCoalesce > maxWriteCoalesce {
		return fmt.Errorf("engine: write coalesce %v over %v", c.WriteCoalesce, maxWriteCoalesce)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ReplayWait <= 0 {
		c.ReplayWait = 2 * time.Second
	}
	return nil
}

// DefaultShards is one shard per CPU less one, and at least one. A
// delivery's CPU is mostly the kernel's (writev and the TCP stack), and
// publishes and subscribes run on fasthttp's workers: a shard on every CPU
// competes with both. Measured on two vCPUs (BENCHMARKS.md, "Fewer
// shards" and "One shard per CPU less one"): one shard instead of two took
// a fifth off the CPU per delivery at 1,000 msg/s to 500 subscribers and
// 10-15% at lower rates, since a longer pass puts more messages in each
// write, for 10-30% more p99 (1-3 ms at 100 msg/s) at the lower rates.
func DefaultShards() int { return max(1, runtime.GOMAXPROCS(0)-1) }

func ceilPow2(n uint64) uint64 {
	p := uint64(1)
	for p < n {
		p <<= 1
	}
	return p
}

// Engine routes published messages to subscribers. Publish, Serve,
// Subscribers and Close are safe to call from any goroutine.
type Engine struct {
	cfg    Config
	shards []*shard

	// pubMu serialises publishes: it is the single writer of every topic's
	// ring, and it makes Seq increase in every ring.
	pubMu   sync.Mutex
	seq     uint64  // guarded by pubMu: the last Seq given
	history history // the messages the rings hold, under pubMu (history.go)

	topicsMu sync.RWMutex
	topics   map[string]*topic // guarded by topicsMu; release and dropIfUnused remove a topic no one holds whose ring is empty
	pats     patterns          // pattern subscriptions' topics and their index (patindex.go)

	nextSubID atomic.Uint64 // subscriber ids; id mod shards picks the shard
	closing   atomic.Bool
	// liveMu orders live.Add (in enter, read-locked) before live.Wait (in
	// Close, after closing is set under the write lock): no Add can race
	// with the Wait.
	liveMu    sync.RWMutex
	live      sync.WaitGroup // one per running Serve
	stopTick  chan struct{}
	keepAlive []byte // the keep-alive frame, immutable

	counters counters // behind Stats; see stats.go
}

// topic is one named stream: a ring and who reads it.
type topic struct {
	name string
	ring *ring.Ring[*Message] // written under Engine.pubMu only
	// subscribers counts subscribers of this topic (Serve adds, finish removes).
	subscribers atomic.Int64
	// refs counts who holds the topic: subscribers and publishes in flight.
	// Taken under Engine.topicsMu's read lock (acquire); the topic leaves
	// the map only under its write lock with refs 0 and an empty ring
	// (never published to, or emptied by the history budget).
	refs atomic.Int64
	// shardMin[i] is the smallest cursor of shard i's subscribers on this
	// topic as of that shard's last pass (MaxUint64: none). Written by shard
	// i, read by Publish to answer "queued".
	shardMin []atomic.Uint64
	// dirtyFlags[i] is set by a publisher when it queues this topic on
	// shard i's dirty list, cleared by shard i before it reads the ring.
	dirtyFlags []atomic.Bool
	// pattern marks a pattern topic (patindex.go): its ring holds the
	// messages of the topics its name matches. lossy: its backfill left
	// older messages out, so an id not in it may be a gap. Both set before
	// the topic is shared, under topicsMu.
	pattern, lossy bool
	// first is the ring sequence of the first message the ring held: 0,
	// or a pattern topic's oldest backfilled one; its ring has lost
	// messages once its tail is past it. Set with lossy.
	first uint64
	// base is the ring sequence of the first message appended after the
	// topic was made: 0, or a pattern topic's Capacity (ring.Skip leaves
	// that room for the backfill below). Set before the topic is shared.
	base uint64
	// pats are the pattern topics that match this topic, as of the
	// pattern index's generation patsGen (withPatterns); under pubMu.
	pats    []*topic
	patsGen uint64
}

func (t *topic) dirty(shard int) *atomic.Bool { return &t.dirtyFlags[shard] }

// New builds an Engine and starts its shard goroutines; Close stops them.
func New(cfg Config) (*Engine, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:       cfg,
		history:   history{limit: cfg.MaxHistoryBytes},
		topics:    make(map[string]*topic),
		stopTick:  make(chan struct{}),
		keepAlive: AppendComment(nil, cfg.KeepAliveText),
	}
	e.shards = make([]*shard, cfg.Shards)
	for i := range e.shards {
		e.shards[i] = newShard(e, i)
	}
	for _, s := range e.shards {
		if !cfg.NoPoll {
			s.poller = newPoller()
		}
		go s.run(e.stopTick)
		if s.poller != nil {
			go s.poller.run()
		}
	}
	return e, nil
}

// Config returns the engine's configuration with defaults filled in.
func (e *Engine) Config() Config { return e.cfg }

// acquire returns the topic called name, creating it on first use, with
// one more reference held by the caller, who must release it.
//
// A topic is removed when its last reference goes while its ring is empty
// (a subscriber of a name nobody published to, or a topic whose messages
// the history budget dropped), so that clients cannot grow the topic map
// without bound. The reference is taken under the read
// lock and removal happens under the write lock after re-checking, so a
// topic is never removed between a lookup and its use.
func (e *Engine) acquire(name string) *topic { return e.acquireUpTo(name, 0) }

// acquireUpTo is acquire, except that it creates no topic (and returns nil)
// when limit > 0 and the engine already holds limit topics.
func (e *Engine) acquireUpTo(name string, limit int) *topic {
	e.topicsMu.RLock()
	t := e.topics[name]
	if t != nil {
		t.refs.Add(1)
	}
	e.topicsMu.RUnlock()
	if t != nil {
		return t
	}
	e.topicsMu.Lock()
	defer e.topicsMu.Unlock()
	if t = e.topics[name]; t != nil {
		t.refs.Add(1)
		return t
	}
	if limit > 0 && len(e.topics) >= limit {
		return nil
	}
	t = e.newTopic(name)
	t.refs.Store(1)
	e.topics[name] = t
	return t
}

// newTopic makes a topic with an empty ring, held by nobody yet.
func (e *Engine) newTopic(name string) *topic {
	r, err := ring.New[*Message](e.cfg.Capacity)
	if err != nil {
		panic(err) // Capacity was validated in New
	}
	t := &topic{name: name, ring: r, shardMin: make([]atomic.Uint64, len(e.shards)), dirtyFlags: make([]atomic.Bool, len(e.shards))}
	for i := range t.shardMin {
		t.shardMin[i].Store(math.MaxUint64)
	}
	return t
}

// release gives back a reference taken by acquire.
func (e *Engine) release(t *topic) {
	if t.pattern {
		e.releasePattern(t)
		return
	}
	if t.refs.Add(-1) == 0 {
		e.dropIfUnused(t)
	}
}

// dropIfUnused removes t if nobody holds it and its ring is empty. A ring
// only gains messages from a publish holding a reference, and references
// are taken under the read lock, so the re-check under the write lock is
// final.
func (e *Engine) dropIfUnused(t *topic) {
	if t.refs.Load() != 0 || t.ring.Len() != 0 {
		return
	}
	e.topicsMu.Lock()
	if t.refs.Load() == 0 && t.ring.Len() == 0 && e.topics[t.name] == t {
		delete(e.topics, t.name)
	}
	e.topicsMu.Unlock()
}

// Topics returns how many topics the engine holds.
func (e *Engine) Topics() int {
	e.topicsMu.RLock()
	defer e.topicsMu.RUnlock()
	return len(e.topics)
}

// CheckTopics reports ErrTooManyTopics if publishing to topics (none: the
// default topic) would create a topic beyond Config.MaxTopics, as Publish
// would. Cluster mode asks before a message goes to the stream, since
// PublishSeq, which applies it, does not refuse. A check, not a
// reservation: publishes racing it may each create one topic more.
func (e *Engine) CheckTopics(topics []string) error {
	if e.cfg.MaxTopics <= 0 {
		return nil
	}
	if len(topics) == 0 {
		topics = defaultTopic
	}
	e.topicsMu.RLock()
	defer e.topicsMu.RUnlock()
	n := len(e.topics)
	for i, name := range topics {
		if _, ok := e.topics[name]; !ok && !slices.Contains(topics[:i], name) {
			n++
		}
	}
	if n > e.cfg.MaxTopics {
		return ErrTooManyTopics
	}
	return nil
}

// PublishResult is what a publisher is told.
type PublishResult struct {
	// Queued is how many messages of the published topics some subscriber
	// has not read yet (the largest over those topics).
	Queued int
	// Subscribers is how many subscribers the published topics have,
	// summed over the topics (one subscribed to two of them counts twice:
	// an exact count would cost a walk over the subscribers per publish).
	Subscribers int
}

// Publish validates m, encodes it once (before taking the publish mutex;
// with AutoID and no id, under it, once its Seq, the id, is known),
// appends it to the ring of each of its topics and wakes the shards that
// have subscribers there. Its cost
// does not depend on the number of subscribers. m must not be changed
// afterwards.
func (e *Engine) Publish(m *Message) (PublishResult, error) { return e.publish(m, 0) }

// PublishLocal publishes a message that belongs to this process only (the
// dashboard's stats): it is not one of the users' publishes, so it is not
// counted in Stats.Publishes and gets no auto id, and it takes the last Seq
// without advancing it. In cluster mode, where Seq is the stream's sequence
// (PublishSeq), a local message must not take a number the stream will
// give next; several messages may then share a Seq, which gather tells
// apart by identity.
func (e *Engine) PublishLocal(m *Message) (PublishResult, error) { return e.publish(m, localSeq) }

// localSeq, as publish's seq, marks a PublishLocal.
const localSeq = math.MaxUint64

// publish is Publish with m's Seq given (see PublishSeq), 0 for the next,
// or localSeq for the last (PublishLocal).
func (e *Engine) publish(m *Message, seq uint64) (PublishResult, error) {
	if e.closing.Load() {
		return PublishResult{}, ErrClosed
	}
	if err := m.Validate(); err != nil {
		return PublishResult{}, err
	}
	names := m.Topics
	if len(names) == 0 {
		names = defaultTopic
	}
	var ts [4]*topic
	topics := ts[:0]
	for i, n := range names {
		if slices.Contains(names[:i], n) {
			continue // a topic named twice still gets the message once
		}
		limit := e.cfg.MaxTopics
		if seq != 0 && seq != localSeq {
			// PublishSeq applies what an outside log (cluster mode's
			// stream) already accepted: the publishing node checked the
			// cap (CheckTopics), and a node refusing here would hold less
			// than the others.
			limit = 0
		}
		t := e.acquireUpTo(n, limit)
		if t == nil {
			for _, t := range topics {
				e.release(t)
			}
			return PublishResult{}, ErrTooManyTopics
		}
		topics = append(topics, t)
	}
	defer func() {
		for _, t := range topics {
			e.release(t)
		}
	}()
	local := seq == localSeq
	auto := e.cfg.AutoID && m.ID == "" && !local
	if !auto {
		m.Frame = AppendFrame(make([]byte, 0, frameSize(m)), m)
	}

	// Only a user's publish may be refused for its size: PublishSeq
	// applies what the stream accepted, and the server's own messages are
	// small. Those stay alone in the history while they are the newest.
	refuseLarge := seq == 0 && e.history.limit > 0
	var size int64
	if !auto {
		if size = heldSize(m, len(topics)); refuseLarge && size > e.history.limit {
			return PublishResult{}, ErrTooLarge
		}
	}

	var rs [4]*topic
	e.pubMu.Lock()
	// The pattern topics m goes to as well (patindex.go): the rings it is
	// appended to, the history's count and the wake-ups cover them too.
	rings := e.withPatterns(rs[:0], topics)
	if !auto {
		if size += int64(len(rings)-len(topics)) * ringEntryOverhead; refuseLarge && size > e.history.limit {
			e.pubMu.Unlock()
			return PublishResult{}, ErrTooLarge // alone over the budget with its pattern rings' entries
		}
	}
	if local {
		seq = e.seq
	} else if seq == 0 {
		seq = e.seq + 1
	} else if seq <= e.seq {
		last := e.seq
		e.pubMu.Unlock()
		return PublishResult{}, fmt.Errorf("%w: %d after %d", ErrSeqOrder, seq, last)
	}
	if auto {
		m.ID = strconv.FormatUint(seq, 10)
		m.Frame = AppendFrame(make([]byte, 0, frameSize(m)), m)
		if size = heldSize(m, len(rings)); refuseLarge && size > e.history.limit {
			e.pubMu.Unlock()
			m.ID, m.Frame = "", nil
			return PublishResult{}, ErrTooLarge
		}
	}
	if !local {
		e.seq = seq
		e.counters.publishes.Add(1)
	}
	m.Seq, m.local = seq, local
	for _, t := range rings {
		if _, old, ok := t.ring.Append(m); ok {
			e.history.overwritten(old)
		}
	}
	emptied := e.history.trim(size, nil)
	e.history.add(m, rings, size)
	e.pubMu.Unlock()
	for _, t := range emptied {
		e.dropIfUnused(t)
	}

	var res PublishResult
	for _, t := range rings {
		e.wake(t, &res)
	}
	return res, nil
}

// wake marks t dirty on every shard that has a subscriber of it and adds
// t to res (its subscribers; the most queued). Called after a publish has
// let pubMu go, once per topic or pattern topic it appended to.
func (e *Engine) wake(t *topic, res *PublishResult) {
	res.Subscribers += int(t.subscribers.Load())
	if q := t.queued(); q > res.Queued {
		res.Queued = q
	}
	for i, s := range e.shards {
		if t.shardMin[i].Load() != math.MaxUint64 {
			s.markDirty(t)
		}
	}
}

var defaultTopic = []string{""}

func frameSize(m *Message) int {
	n := len(m.ID) + len(m.Event) + len(m.Data) + 32
	for _, c := range m.Comments {
		n += len(c) + 3
	}
	return n
}

// queued is how many messages in t's ring some subscriber has not read.
func (t *topic) queued() int {
	lowest := uint64(math.MaxUint64)
	for i := range t.shardMin {
		if v := t.shardMin[i].Load(); v < lowest {
			lowest = v
		}
	}
	head, tail := t.ring.Head(), t.ring.Tail()
	if lowest == math.MaxUint64 || lowest >= head {
		return 0
	}
	if lowest < tail {
		lowest = tail
	}
	return int(head - lowest)
}

// enter counts a new Serve in, unless Close has begun.
func (e *Engine) enter() bool {
	e.liveMu.RLock()
	defer e.liveMu.RUnlock()
	if e.closing.Load() {
		return false
	}
	e.live.Add(1)
	return true
}

// Closing reports whether Close has begun.
func (e *Engine) Closing() bool { return e.closing.Load() }

// Subscribers returns how many subscribers topic name has (those of
// the pattern, for a pattern: not those of the topics it matches).
func (e *Engine) Subscribers(name string) int {
	t := e.lookup(name) // a pattern's subscribers for a pattern subscribers hold
	if t == nil {
		return 0
	}
	return int(t.subscribers.Load())
}

// Close stops accepting publishes and subscribers, tells every subscriber
// when to come back (a retry with jitter) and closes it, and waits for all
// of them until ctx is done; then it cuts the rest off.
func (e *Engine) Close(ctx context.Context) error {
	e.liveMu.Lock()
	already := e.closing.Swap(true)
	e.liveMu.Unlock()
	if already {
		return ErrClosed
	}
	for _, s := range e.shards {
		s.shutdown()
	}
	done := make(chan struct{})
	go func() { e.live.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		for _, s := range e.shards {
			s.forceClose()
		}
		<-done
		err = ctx.Err()
	}
	close(e.stopTick)
	// Every stream has ended, so nobody touches a poller's set any more.
	for _, s := range e.shards {
		if s.poller != nil {
			s.poller.stop()
		}
	}
	return err
}
