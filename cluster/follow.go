package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A node follows the stream with a consumer of its own: ephemeral, in
// memory, one replica, no acknowledgements, starting after the last
// sequence applied. When it is lost (its server died or was cut off, the
// heartbeats stop, JetStream deleted it) or delivers out of its own
// order, a new one is made from the sequence after the last applied, so
// nothing is applied twice or skipped. nats.go's ordered consumer does
// the same, but waits 1, 2, 4, 8 then 10s between attempts to make the
// new one (each may take 10s); this one tries every 100ms at first, up to
// every second, each attempt bounded by 2s, so a node resumes within
// about a second of JetStream electing a leader.

// Follow timing.
const (
	consumerHeartbeat = time.Second            // idle heartbeat: two missed ones and the consumer is made again
	followRetryMin    = 100 * time.Millisecond // first pause between attempts to make a consumer
	followRetryMax    = time.Second            // the longest pause
	followAttempt     = 2 * time.Second        // bound on one attempt
)

// consumption is one consumer the node follows. lost is closed (once) when
// it must be replaced.
type consumption struct {
	cc       jetstream.ConsumeContext
	name     string
	lost     chan struct{}
	loseOnce sync.Once
	// delivered is the last consumer sequence applied from it: the next
	// must be one more. Guarded by Node.followMu.
	delivered uint64
}

func (c *consumption) lose() { c.loseOnce.Do(func() { close(c.lost) }) }

// consume makes a consumer from the sequence after the last applied and
// starts feeding apply from it. Its messages are applied only while it is
// the current one (gen).
func (n *Node) consume() (*consumption, error) {
	n.followMu.Lock()
	n.gen++
	gen := n.gen
	n.resultsMu.Lock()
	start := n.applied + 1
	n.resultsMu.Unlock()
	n.followMu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), followAttempt)
	defer cancel()
	cons, err := n.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       start,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: time.Minute, // a consumer left behind (its node died) goes away
	})
	if err != nil {
		return nil, err
	}
	c := &consumption{name: cons.CachedInfo().Name, lost: make(chan struct{})}
	handle := func(msg jetstream.Msg) {
		meta, err := msg.Metadata()
		n.followMu.Lock()
		defer n.followMu.Unlock()
		if gen != n.gen {
			n.metrics.redeliveries.Inc() // a consumer given up: its successor delivers this
			return
		}
		if err != nil {
			n.cfg.Logger.Warn("cluster: message without metadata", "err", err)
			return
		}
		if meta.Sequence.Consumer != c.delivered+1 {
			// A delivery missed: start again after the last applied.
			c.lose()
			return
		}
		c.delivered = meta.Sequence.Consumer
		n.apply(msg, meta.Sequence.Stream)
	}
	cc, err := cons.Consume(handle, jetstream.PullHeartbeat(consumerHeartbeat), jetstream.PullExpiry(5*consumerHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			switch {
			case errors.Is(err, jetstream.ErrNoHeartbeat), errors.Is(err, jetstream.ErrConsumerDeleted),
				errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrBadRequest),
				errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrConnectionClosed):
				n.cfg.Logger.Info("cluster: the consumer is lost; making another", "err", err)
				c.lose()
			default:
				n.cfg.Logger.Debug("cluster consumer", "err", err)
			}
		}))
	if err != nil {
		n.dropConsumer(c.name)
		return nil, err
	}
	c.cc = cc
	return c, nil
}

// follow replaces the current consumer whenever it is lost, until Close
// closes n.stop. It runs on its own goroutine, started by Start.
func (n *Node) follow(c *consumption) {
	defer close(n.followDone)
	for {
		select {
		case <-c.lost:
		case <-n.stop:
			c.cc.Stop()
			return
		}
		n.following.Store(false)
		n.metrics.consumerErrors.Inc()
		c.cc.Stop()
		go n.dropConsumer(c.name)
		pause := followRetryMin
		for {
			next, err := n.consume()
			if err == nil {
				c = next
				n.following.Store(true)
				break
			}
			n.cfg.Logger.Debug("cluster: no consumer yet", "err", err)
			select {
			case <-n.stop:
				return
			case <-time.After(pause):
			}
			pause = min(2*pause, followRetryMax)
		}
	}
}

// dropConsumer deletes a consumer given up, if JetStream can be reached;
// otherwise its InactiveThreshold removes it.
func (n *Node) dropConsumer(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), followAttempt)
	defer cancel()
	_ = n.stream.DeleteConsumer(ctx, name)
}

// startFollowing makes the first consumer (Start fails if it cannot
// before ctx is done) and the goroutine that replaces it.
func (n *Node) startFollowing(ctx context.Context) error {
	var c *consumption
	err := patiently(ctx, func(context.Context) (err error) {
		c, err = n.consume()
		return err
	})
	if err != nil {
		return fmt.Errorf("cluster: consumer: %w", err)
	}
	n.followDone = make(chan struct{})
	n.following.Store(true)
	go n.follow(c)
	return nil
}
