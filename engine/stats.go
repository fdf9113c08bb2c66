package engine

import "sync/atomic"

// Stats is a snapshot of the engine's counters, taken by Engine.Stats when
// someone asks (a metrics scrape, the dashboard's once-a-second feed). The
// engine keeps no per-delivery counter: deliveries are added up per shard
// pass (see shard.passFrames), everything else is counted where it happens
// once per publish, subscriber or disconnect.
type Stats struct {
	// Publishes is how many messages were published here (in cluster
	// mode: applied from the stream), not counting PublishLocal's.
	Publishes uint64
	// Deliveries is how many frames were handed to subscribers' sockets
	// (a message skipped by the message hook is not one).
	Deliveries uint64
	// Subscribers is how many streams are open now; Subscribes how many
	// were ever registered.
	Subscribers int64
	Subscribes  uint64
	// Closed counts ended streams by reason.
	Closed CloseCounts
	// Replays counts subscribers that came with a Last-Event-ID still in
	// the ring (or, with Config.Replay, replayed from outside it without a
	// gap); ReplayGaps those whose id was no longer (or never) there.
	// A catchup hook replaces the engine's replay: its subscribers count
	// in neither.
	Replays, ReplayGaps uint64
	// Capacity is the size of every topic's ring.
	Capacity int
	// HistoryBytes is what the rings hold now, as counted against
	// MaxHistoryBytes (the bound; negative: none). HistoryEvicted counts
	// the messages dropped from the rings to stay under it (not those a
	// ring lapped).
	HistoryBytes, MaxHistoryBytes int64
	HistoryEvicted                uint64
	// Topics lists every topic the engine holds, in no particular order.
	Topics []TopicStats
	// Patterns lists the patterns subscribers hold (patindex.go), in no
	// particular order: Subscribers are the pattern's own, Published
	// counts the matching topics' messages since it was made (not its
	// backfill), Buffered what its ring holds (backfill included).
	Patterns []TopicStats
}

// CloseCounts are ended streams by reason.
type CloseCounts struct {
	Left     uint64 // the client went away, or its socket failed
	Lagged   uint64 // fell more than Capacity messages behind
	Slow     uint64 // its socket took nothing for WriteTimeout
	Timeout  uint64 // reached Config.Timeout
	Shutdown uint64 // the engine closed
	Expired  uint64 // its Subscriber.Expires passed (the token expired)
	// Disconnected counts streams ended by Engine.Disconnect or
	// DisconnectTopic (the server API).
	Disconnected uint64
}

// TopicStats is one topic in a Stats snapshot.
type TopicStats struct {
	Name        string
	Subscribers int64  // subscribers reading it now
	Published   uint64 // messages ever appended to its ring
	Buffered    int    // messages its ring holds now (at most Capacity; fewer once the history budget dropped some)
}

// counters are the engine-wide counters behind Stats. Each is written
// where its event happens (never per delivery) and read by Stats.
type counters struct {
	publishes   atomic.Uint64 // publish, under pubMu (PublishLocal's are not counted)
	subscribers atomic.Int64  // shard.add +1, shard.remove -1
	subscribes  atomic.Uint64 // shard.add
	replays     atomic.Uint64 // Serve
	replayGaps  atomic.Uint64 // Serve
	closed      [closeReasons]atomic.Uint64
}

// Reasons a stream ended, indexes of counters.closed.
const (
	closeLeft = iota
	closeLagged
	closeSlow
	closeTimeout
	closeShutdown
	closeExpired
	closeDisconnected
	closeReasons
)

var closeReasonNames = [closeReasons]string{"left", "lagged", "slow", "timeout", "shutdown", "expired", "disconnected"}

// closeReasonOrder maps the kick bits finish ends a stream for to one
// reason: the first entry whose bit is set wins.
var closeReasonOrder = [...]struct {
	kick   uint32
	reason int
}{
	{kickShutdown, closeShutdown},
	{kickWriteTimeout, closeSlow},
	{kickGone, closeLeft},
	{kickDisconnect, closeDisconnected},
	{kickTimeout, closeTimeout},
	{kickLagged, closeLagged},
	{kickExpired, closeExpired},
}

// closeReason is the reason closeReasonOrder gives kick bits k (left
// when none is set).
func closeReason(k uint32) int {
	for _, r := range closeReasonOrder {
		if k&r.kick != 0 {
			return r.reason
		}
	}
	return closeLeft
}

// Stats returns a snapshot of the engine's counters and topics. It takes
// Engine.topicsMu's read lock briefly, never a shard's
// lock, so it does not wait for a delivery pass. Safe from any goroutine.
func (e *Engine) Stats() Stats {
	st := Stats{
		Subscribers: e.counters.subscribers.Load(),
		Subscribes:  e.counters.subscribes.Load(),
		Replays:     e.counters.replays.Load(),
		ReplayGaps:  e.counters.replayGaps.Load(),
		Capacity:    e.cfg.Capacity,

		HistoryBytes:    e.history.bytes.Load(),
		MaxHistoryBytes: e.cfg.MaxHistoryBytes,
		HistoryEvicted:  e.history.evicted.Load(),
	}
	c := &e.counters.closed
	st.Closed = CloseCounts{
		Left:     c[closeLeft].Load(),
		Lagged:   c[closeLagged].Load(),
		Slow:     c[closeSlow].Load(),
		Timeout:  c[closeTimeout].Load(),
		Shutdown: c[closeShutdown].Load(),
		Expired:  c[closeExpired].Load(),

		Disconnected: c[closeDisconnected].Load(),
	}
	for _, s := range e.shards {
		st.Deliveries += s.delivered.Load()
	}
	st.Publishes = e.counters.publishes.Load()

	e.topicsMu.RLock()
	st.Topics = make([]TopicStats, 0, len(e.topics))
	for name, t := range e.topics {
		// Read without pubMu: Len loads head once, so appends and drops
		// racing the scrape cannot make it underflow.
		st.Topics = append(st.Topics, TopicStats{
			Name:        name,
			Subscribers: t.subscribers.Load(),
			Published:   t.published(),
			Buffered:    t.ring.Len(),
		})
	}
	if len(e.pats.byName) > 0 {
		st.Patterns = make([]TopicStats, 0, len(e.pats.byName))
		for name, t := range e.pats.byName {
			st.Patterns = append(st.Patterns, TopicStats{Name: name, Subscribers: t.subscribers.Load(), Published: t.published(), Buffered: t.ring.Len()})
		}
	}
	e.topicsMu.RUnlock()
	return st
}
