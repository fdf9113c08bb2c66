package cluster

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/tinysse/tinysse/engine"
)

// Publish stores m in the stream and returns once JetStream has
// acknowledged it (so an accepted message survives this node), and this
// node's consumer has handed it to the local engine (so a subscriber here
// has it in its ring, and the result counts this node's subscribers). It
// is the transport's Config.Publish in cluster mode. A failure to reach
// JetStream wraps ErrUnavailable.
//
// m has passed the publish hook and validation; its Seq, and with
// --auto-id its id, are given when it comes back from the stream.
func (n *Node) Publish(m *engine.Message) (engine.PublishResult, error) {
	if err := m.Validate(); err != nil {
		return engine.PublishResult{}, err
	}
	// The topic cap is checked here, where the 202 is decided: every node
	// applies what the stream holds, cap or not (engine.PublishSeq).
	if err := n.eng.CheckTopics(m.Topics); err != nil {
		return engine.PublishResult{}, err
	}
	var state []byte
	if n.cfg.EncodeState != nil {
		var err error
		if state, err = n.cfg.EncodeState(m); err != nil {
			return engine.PublishResult{}, err
		}
	}
	data, err := encode(m, state)
	if err != nil {
		return engine.PublishResult{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.PublishTimeout)
	defer cancel()
	msg := &nats.Msg{Subject: subject(n.cfg.Stream, m.Topics), Data: data}
	// The message id lets JetStream drop the copy of a retried publish.
	ack, err := n.js.PublishMsg(ctx, msg, jetstream.WithMsgID(nuid.Next()), jetstream.WithExpectStream(n.cfg.Stream))
	if err != nil {
		return engine.PublishResult{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return n.waitApplied(ctx, ack.Sequence), nil
}

// waitApplied returns what applying seq gave, once this node has applied
// it; if that takes until ctx is done (the consumer is cut off from NATS),
// an empty result: the message is stored and will arrive.
func (n *Node) waitApplied(ctx context.Context, seq uint64) engine.PublishResult {
	n.resultsMu.Lock()
	if n.applied >= seq {
		r := n.results[seq%uint64(len(n.results))]
		n.resultsMu.Unlock()
		if r.seq == seq {
			return r.res
		}
		return engine.PublishResult{} // applied long ago: its result is gone
	}
	ch := make(chan engine.PublishResult, 1)
	n.waiters[seq] = ch
	n.resultsMu.Unlock()
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
	}
	n.resultsMu.Lock()
	delete(n.waiters, seq)
	n.resultsMu.Unlock()
	return engine.PublishResult{}
}
