package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tinysse/tinysse/engine"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"
)

// Publish's errors. Each reaches the client as a JSON error with the
// status its StatusCode method gives (transport.Config.Publish).
var (
	// ErrUnavailable: JetStream could not be reached and the message was
	// not stored (503). A client may publish it again.
	ErrUnavailable = errors.New("cluster: NATS JetStream unavailable")
	// ErrUncertain: the message went to JetStream and no answer came back
	// in time, so it may have been stored (504). Publishing it again with
	// the same Idempotency-Key stores it at most once.
	ErrUncertain = errors.New("cluster: no answer from NATS JetStream: the message may have been stored; send it again with the same Idempotency-Key")
	// ErrTooLarge: the message is larger than NATS takes (413).
	ErrTooLarge = errors.New("cluster: message larger than the NATS server's max_payload")
	// ErrKeyReused: the Idempotency-Key already named another message
	// within the stream's duplicate window (422).
	ErrKeyReused = errors.New("cluster: Idempotency-Key already used for a different message")
)

// Config configures a Node. The zero value of every field but URL is its
// documented default.
type Config struct {
	// URL is the NATS server (or a comma-separated list of a cluster's
	// servers): nats://host:4222, tls://host:4222, user:password@ in it.
	// Not used with InProcess.
	URL string
	// InProcess, when set, is a NATS server in this process to connect to
	// without a socket (Store, for --store) instead of URL.
	InProcess nats.InProcessConnProvider
	// Stream is the JetStream stream's name, and the first token of its
	// subjects (<Stream>.>). Letters, digits, '-' and '_'. Default "tinysse".
	Stream string
	// MaxAge, MaxMsgs and MaxBytes bound what the stream keeps, so how far
	// back a replay reaches; the oldest messages go first. 0: no bound.
	// Applied to an existing stream too.
	MaxAge   time.Duration
	MaxMsgs  int64
	MaxBytes int64
	// Replicas is the stream's replica count on a NATS cluster. Default 1.
	Replicas int
	// CredsFile, Token: NATS credentials (a .creds file with JWT and seed;
	// a token). TLSCA, TLSCert, TLSKey: a CA file to trust and a client
	// certificate; any of them turns TLS on.
	CredsFile, Token       string
	TLSCA, TLSCert, TLSKey string
	// PublishTimeout bounds a publish that JetStream did not store: it is
	// tried again (same message id, so JetStream keeps one copy) while
	// JetStream elects a leader or the connection moves to another server,
	// and answered 503 after this long. Once an attempt may have been
	// stored (it was sent and no answer came), the publish goes on until
	// an answer settles it, at most twice this long, then 504. It also
	// bounds a replay. Default 5s.
	PublishTimeout time.Duration
	// ReconnectWait is the pause between reconnection attempts, and how
	// long a publish that finds the connection down waits for it before
	// the 503. Default 1s.
	ReconnectWait time.Duration
	// PingInterval is how often the client pings its NATS server; two
	// unanswered pings (a stopped or cut-off server) make it reconnect to
	// another. Default 2s.
	PingInterval time.Duration
	// ReplayLimit bounds the messages one subscriber is replayed from the
	// stream; beyond it the oldest are left out (": replay-gap"). Default
	// 10000.
	ReplayLimit int
	// ReplayFetches bounds the reads of the stream for replays running at
	// once on this node; identical ones (same topics, same id) are one
	// read. Default 16.
	ReplayFetches int
	// EncodeState and DecodeState carry a message's State (what the
	// publish hook kept with it: lua.MarshalState, lua.UnmarshalState) to
	// the other nodes, so their message hooks see the same pub. Nil: State
	// stays on the publishing node.
	EncodeState func(m *engine.Message) ([]byte, error)
	DecodeState func(m *engine.Message, b []byte) error
	// LeaderTTL is how long the leader lease (Node.Leader) outlives its
	// holder: after a leader dies, another node leads within about this
	// long. Default 3s.
	LeaderTTL time.Duration
	// NoLeader: no lease; Leader is always true (a single node, --store).
	NoLeader bool
	// Logger receives the node's logs. Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.URL == "" && c.InProcess == nil {
		return errors.New("cluster: a NATS URL is required")
	}
	if c.Stream == "" {
		c.Stream = "tinysse"
	}
	for i := 0; i < len(c.Stream); i++ {
		ch := c.Stream[i]
		if !('a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || ch == '-' || ch == '_') {
			return fmt.Errorf("cluster: stream name %q: only letters, digits, - and _", c.Stream)
		}
	}
	if c.MaxAge < 0 || c.MaxMsgs < 0 || c.MaxBytes < 0 || c.Replicas < 0 || c.ReplayLimit < 0 || c.ReplayFetches < 0 {
		return errors.New("cluster: max age, max msgs, max bytes, replicas, replay limit and replay fetches must not be negative")
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("cluster: a TLS client certificate needs both cert and key")
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.ReconnectWait <= 0 {
		c.ReconnectWait = time.Second
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 2 * time.Second
	}
	if c.ReplayLimit == 0 {
		c.ReplayLimit = 10000
	}
	if c.ReplayFetches == 0 {
		c.ReplayFetches = 16
	}
	if c.LeaderTTL <= 0 {
		c.LeaderTTL = 3 * time.Second
	}
	if c.LeaderTTL < 300*time.Millisecond {
		return errors.New("cluster: leader TTL must be at least 300ms")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Node is one tinysse server's part in a cluster: its NATS connection, the
// stream, and the consumer that feeds the local engine.
//
// Publish and Replay are called from any goroutine (HTTP workers,
// subscriber goroutines). The consumer's handler (apply) runs on the NATS
// client's delivery goroutine, one message at a time, in stream order.
type Node struct {
	cfg Config
	nc  *nats.Conn
	// ncClosed is closed by nc's ClosedHandler (see Close).
	ncClosed <-chan struct{}
	js       jetstream.JetStream
	stream   jetstream.Stream

	// eng is set once by Start, before the consumer runs (apply reads it)
	// and before the server serves (run calls Start before Serve, so
	// Publish's read of eng follows the write); read without a lock after
	// that. paceAt, half its ring capacity, is set with it (apply's
	// pacing).
	eng    *engine.Engine
	paceAt int

	// followMu serializes apply: a consumer being replaced may still
	// deliver while its successor starts (follow.go). gen numbers the
	// consumers; only the current one's messages are applied. Taken
	// before resultsMu.
	followMu sync.Mutex
	gen      uint64
	// following is false from the moment the current consumer is lost
	// until another is made (follow goroutine): a publish then does not
	// wait for this node to apply it before its 202.
	following atomic.Bool
	// followDone is closed when the follow goroutine ends; set by Start
	// once it runs, read by Close (both on the caller's goroutine).
	followDone chan struct{}

	// resultsMu guards results and waiters: apply stores what each stream
	// sequence gave here, and a publisher waiting for its own sequence
	// finds it there or registers to be told (several may wait for one:
	// requests with the same Idempotency-Key).
	resultsMu sync.Mutex
	applied   uint64 // the last stream sequence apply handled
	results   [256]applyResult
	waiters   map[uint64][]chan engine.PublishResult

	// multiFilter: the server takes several filter subjects per consumer
	// (nats-server 2.10+), so a replay reads only its topics' subjects.
	// Set by Connect, read-only after.
	multiFilter bool
	// warnedReset: the stream went back in sequence and that was logged.
	warnedReset atomic.Bool
	// The leader lease (leader.go). kv, name are set by startLeader;
	// leaseRev and wasLeader belong to the leader goroutine; renewed (unix
	// nanoseconds of the last renewal, 0: not leader) is read by Leader.
	kv         jetstream.KeyValue
	name       string
	leaseRev   uint64
	wasLeader  bool
	renewed    atomic.Int64
	stop       chan struct{} // closed by Close
	closeOnce  sync.Once
	leaderDone chan struct{} // closed when the leader goroutine ends

	// replayFlights shares identical replay reads, and replaySlots bounds
	// the reads running at once (Config.ReplayFetches), so that clients
	// all coming back after a restart neither each open a JetStream
	// consumer nor all at the same moment (replay.go).
	replayFlights singleflight.Group
	replaySlots   *semaphore.Weighted
	replayCache   replayCache // recent reads, shared for a moment (replay.go)

	// metrics counts what the node did with JetStream (metrics.go); its
	// counters are safe from any goroutine.
	metrics *nodeMetrics
}

type applyResult struct {
	seq uint64
	res engine.PublishResult
}

// Connect connects to NATS and creates the stream, or updates its limits.
// It fails when NATS cannot be reached: a node does not start without it.
func Connect(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	// closed is closed by NATS's last callback once the connection is
	// closed: Close waits for it, so that no callback (a log line) runs
	// after Close returns.
	closed := make(chan struct{})
	opts := []nats.Option{
		nats.Name("tinysse"),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(cfg.ReconnectWait),
		nats.PingInterval(cfg.PingInterval),
		nats.MaxPingsOutstanding(2),
		// No buffering while disconnected: a publish then fails at once
		// (503) instead of being sent later, after its client gave up.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("NATS disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", "server", nc.ConnectedUrlRedacted())
		}),
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCA))
	}
	if cfg.TLSCert != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCert, cfg.TLSKey))
	}
	where := cfg.URL
	if cfg.InProcess != nil {
		opts = append(opts, nats.InProcessServer(cfg.InProcess))
		where = "the store"
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to %s: %w", where, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		closeConn(nc, closed)
		return nil, fmt.Errorf("cluster: %w", err)
	}
	var stream jetstream.Stream
	err = patiently(ctx, func(ctx context.Context) (err error) {
		stream, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:        cfg.Stream,
			Description: "tinysse messages",
			Subjects:    []string{cfg.Stream + ".>"},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      cfg.MaxAge,
			MaxMsgs:     maxOrUnlimited(cfg.MaxMsgs),
			MaxBytes:    maxOrUnlimited(cfg.MaxBytes),
			Replicas:    cfg.Replicas,
		})
		return err
	})
	if err != nil {
		closeConn(nc, closed)
		return nil, fmt.Errorf("cluster: stream %s: %w", cfg.Stream, err)
	}
	n := &Node{cfg: cfg, nc: nc, ncClosed: closed, js: js, stream: stream, waiters: make(map[uint64][]chan engine.PublishResult),
		replaySlots: semaphore.NewWeighted(int64(cfg.ReplayFetches)), stop: make(chan struct{}), leaderDone: make(chan struct{}),
		multiFilter: atLeast(nc.ConnectedServerVersion(), 2, 10)}
	n.metrics = newNodeMetrics(n)
	if cfg.NoLeader {
		close(n.leaderDone)
		return n, nil
	}
	if err := n.startLeader(ctx); err != nil {
		closeConn(nc, closed)
		return nil, err
	}
	return n, nil
}

// Connected reports whether the node is connected to NATS now. Safe from
// any goroutine.
func (n *Node) Connected() bool { return n.nc.Status() == nats.CONNECTED }

// patiently runs f until it succeeds or ctx is done, each try bounded by
// 5s, and returns its last error. Making a replicated stream right after
// a NATS cluster formed, or while several nodes make it at once, may go
// unanswered (nats-server 2.9 was seen to drop such requests for more
// than 10s); a second try finds it made.
func patiently(ctx context.Context, f func(context.Context) error) error {
	for {
		try, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(try)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// atLeast reports whether version ("2.10.4") is at least major.minor.
func atLeast(version string, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(version, "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

func maxOrUnlimited(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}

// Start feeds eng from the stream, beginning after the stream's last
// message: what came before is not live any more, and reaches a client only
// as a replay (Replay). eng must have been built with Replay as its
// Config.Replay. Start is called once.
func (n *Node) Start(ctx context.Context, eng *engine.Engine) error {
	var info *jetstream.StreamInfo
	err := patiently(ctx, func(ctx context.Context) (err error) {
		info, err = n.stream.Info(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("cluster: stream %s: %w", n.cfg.Stream, err)
	}
	last := info.State.LastSeq
	eng.AdvanceSeq(last)
	n.eng = eng
	n.paceAt = max(eng.Config().Capacity/2, 1)
	n.resultsMu.Lock()
	n.applied = last
	n.resultsMu.Unlock()
	if err := n.startFollowing(ctx); err != nil {
		return err
	}
	where := n.nc.ConnectedUrlRedacted()
	if n.cfg.InProcess != nil {
		where = "the store (in process)"
	}
	n.cfg.Logger.Info("cluster mode", "nats", where, "stream", n.cfg.Stream, "last_seq", last)
	return nil
}

// apply hands the stream message at seq to the engine with seq as its Seq.
// Called by the current consumer's handler (follow.go), under followMu:
// one message at a time, in stream order.
func (n *Node) apply(msg jetstream.Msg, seq uint64) {
	n.resultsMu.Lock()
	again := seq <= n.applied
	n.resultsMu.Unlock()
	if again {
		// Delivered again (a consumer starts after the last applied, so
		// this is not expected): the engine has it once already.
		n.metrics.redeliveries.Inc()
		return
	}
	var res engine.PublishResult
	m, err := n.decode(msg)
	if err == nil {
		res, err = n.eng.PublishSeq(m, seq)
	}
	switch {
	case err == nil:
	case errors.Is(err, engine.ErrSeqOrder):
		// Above the last applied, yet not above the engine's last Seq:
		// the stream was deleted and made again, and counts from 1. Ids
		// would repeat.
		if !n.warnedReset.Swap(true) {
			n.cfg.Logger.Error("cluster: the stream's sequence went back (was it recreated?); messages are dropped until this node restarts",
				"stream", n.cfg.Stream, "seq", seq, "last", n.eng.LastSeq())
		}
		return
	case errors.Is(err, engine.ErrClosed):
		return
	default:
		// Not from a tinysse publish (someone wrote garbage to the
		// subjects): skipped, but its sequence counts as seen.
		n.cfg.Logger.Warn("cluster: message skipped", "seq", seq, "subject", msg.Subject(), "err", err)
		n.eng.AdvanceSeq(seq)
	}
	n.resultsMu.Lock()
	n.applied = seq
	n.results[seq%uint64(len(n.results))] = applyResult{seq, res}
	chs := n.waiters[seq]
	delete(n.waiters, seq)
	n.resultsMu.Unlock()
	for _, ch := range chs {
		ch <- res
	}
	if res.Queued >= n.paceAt {
		// Half a ring not yet read by some subscriber: give the shards a
		// moment before the next. Catching up (after an outage, or a
		// node started behind) applies what it missed as fast as it
		// arrives, and a burst longer than the ring laps every
		// subscriber before a delivery pass reaches it; paced, they keep
		// up. A subscriber that reads nothing holds this for about half a
		// ring's worth of pauses, until it is lapped and closed.
		time.Sleep(catchUpPause)
	}
}

// catchUpPause is apply's pause while a ring is half full of unread
// messages.
const catchUpPause = time.Millisecond

// Close stops the consumer and closes the connection. Call it after the
// engine is closed.
func (n *Node) Close() {
	n.closeOnce.Do(func() {
		close(n.stop)
		<-n.leaderDone
		if n.followDone != nil {
			<-n.followDone
		}
		closeConn(n.nc, n.ncClosed)
	})
}

// closeConn closes nc and waits until NATS has run its callbacks (the
// disconnect's log line, then the close: closed), which it runs on a
// goroutine of its own, so that none runs after the node is gone; at most
// 5 s, in case a callback is stuck.
func closeConn(nc *nats.Conn, closed <-chan struct{}) {
	nc.Close()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
	}
}
