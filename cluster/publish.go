package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/tinysse/tinysse/engine"
)

// Publish stores m in the stream and returns once JetStream has
// acknowledged it (so an accepted message survives this node), and this
// node's consumer has handed it to the local engine (so a subscriber here
// has it in its ring, and the result counts this node's subscribers). It
// is the transport's Config.Publish in cluster mode.
//
// key is the client's Idempotency-Key ("" for none). It becomes the
// JetStream message id, so a client that lost a 202 and sends the message
// again within the stream's duplicate window (2 minutes) gets a 202 for
// the copy already stored, and no second copy. Without a key the message
// id is made here, and only this call's own retries share it.
//
// The errors (ErrUnavailable, ErrUncertain, ErrTooLarge, ErrKeyReused)
// carry their HTTP status. m has passed the publish hook and validation;
// its Seq, and with --auto-id its id, are given when it comes back from
// the stream.
func (n *Node) Publish(m *engine.Message, key string) (engine.PublishResult, error) {
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
	// The prefixes keep a client's key from ever naming one of ours.
	id := "n:" + nuid.Next()
	if key != "" {
		id = "k:" + key
	}
	msg := &nats.Msg{Subject: subject(n.cfg.Stream, m.Topics), Data: data, Header: nats.Header{}}
	start := time.Now()
	ack, err := n.store(msg, id, start)
	if err != nil {
		return engine.PublishResult{}, err
	}
	n.metrics.publishSeconds.UpdateDuration(start)
	if ack.Duplicate {
		n.metrics.duplicates.Inc()
		if key != "" {
			if err := n.sameMessage(ack.Sequence, msg); err != nil {
				return engine.PublishResult{}, err
			}
		}
	}
	// The wait for this node's consumer comes out of the same budget (but
	// gets a moment at least), and is only that moment while the consumer
	// is being replaced: the message is stored, and a consumer that JetStream
	// cannot make yet (its meta leader is being elected) must not hold
	// the 202.
	deadline := time.Now().Add(100 * time.Millisecond)
	if n.following.Load() {
		deadline = maxTime(start.Add(n.cfg.PublishTimeout), deadline)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	return n.waitApplied(ctx, ack.Sequence), nil
}

// publishError is one of Publish's sentinel errors with what caused it
// and the status the transport answers.
type publishError struct {
	kind   error // ErrUnavailable, ErrUncertain, ErrTooLarge, ErrKeyReused
	status int
	cause  error // may be nil
}

func (e *publishError) Error() string {
	if e.cause == nil {
		return e.kind.Error()
	}
	return e.kind.Error() + ": " + e.cause.Error()
}
func (e *publishError) Unwrap() error   { return e.kind }
func (e *publishError) StatusCode() int { return e.status }

// attemptOutcome is what a failed publish attempt says about the message.
type attemptOutcome int

const (
	notStored   attemptOutcome = iota // it never left, nobody took it, or JetStream refused it for now: try again
	maybeStored                       // it left and no answer came: only an acknowledgement of its message id settles it
	refused                           // it will never be stored: give up now
)

// classify tells what a failed attempt's error says.
func classify(err error) attemptOutcome {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrMaxPayload):
		return refused
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		// Nobody listens on the subject: the stream has no leader now.
		return notStored
	case errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrConnectionDraining):
		// Refused by the client before it was sent (no buffering while
		// disconnected).
		return notStored
	case errors.As(err, &apiErr):
		// JetStream answered no. Server-side trouble (5xx) and a stream
		// that is not there yet (mid-election) pass; the rest stays.
		if apiErr.Code >= 500 || apiErr.ErrorCode == jetstream.JSErrCodeStreamNotFound {
			return notStored
		}
		return refused
	}
	// A timeout, a garbled answer, the connection closed under the
	// request: it may have been stored.
	return maybeStored
}

// Retry pacing: the first retry after publishRetryMin, doubling up to
// publishRetryMax.
const (
	publishRetryMin = 25 * time.Millisecond
	publishRetryMax = 500 * time.Millisecond
)

// store publishes msg under message id id until JetStream acknowledges it
// (a duplicate acknowledgement included: an earlier attempt, or an earlier
// request with the same key, was stored). While nothing sent may have
// been stored it gives up after PublishTimeout with ErrUnavailable; once
// something may have been (an attempt sent and never answered) only an
// acknowledgement can say so, and it keeps asking up to twice
// PublishTimeout, then gives up with ErrUncertain. Every attempt carries
// the same message id, so JetStream stores the message at most once
// (within its duplicate window).
func (n *Node) store(msg *nats.Msg, id string, start time.Time) (*jetstream.PubAck, error) {
	giveUp := start.Add(n.cfg.PublishTimeout)
	settleBy := start.Add(2 * n.cfg.PublishTimeout)
	perAttempt := max(n.cfg.PublishTimeout/4, 100*time.Millisecond)
	pause := publishRetryMin
	maybe := false
	var last error
	for attempt := 0; ; attempt++ {
		until := giveUp
		if maybe {
			until = settleBy
		}
		if attempt > 0 {
			if time.Now().After(until) {
				break
			}
			n.metrics.retries.Inc()
		}
		if !n.Connected() {
			// Down: wait for the connection (a move to another server
			// takes a moment), but a node cut off for longer answers 503
			// within ReconnectWait, unless something may be stored.
			wait := until
			if !maybe {
				wait = minTime(until, time.Now().Add(n.cfg.ReconnectWait))
			}
			if !n.awaitConnected(wait) {
				if last == nil {
					last = errors.New("not connected")
				}
				break
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), min(perAttempt, max(time.Until(until), time.Millisecond)))
		ack, err := n.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(n.cfg.Stream),
			jetstream.WithRetryAttempts(0))
		cancel()
		if err == nil {
			return ack, nil
		}
		last = err
		switch classify(err) {
		case refused:
			if errors.Is(err, nats.ErrMaxPayload) {
				return nil, &publishError{ErrTooLarge, http.StatusRequestEntityTooLarge, nil}
			}
			if maybe {
				return nil, &publishError{ErrUncertain, http.StatusGatewayTimeout, err}
			}
			return nil, &publishError{ErrUnavailable, http.StatusServiceUnavailable, err}
		case maybeStored:
			if errors.Is(err, nats.ErrConnectionClosed) {
				// Closed by Close: nothing will settle it.
				return nil, &publishError{ErrUncertain, http.StatusGatewayTimeout, err}
			}
			maybe = true
		}
		if wait := time.Until(until); wait > 0 {
			time.Sleep(min(pause, wait))
		}
		pause = min(2*pause, publishRetryMax)
	}
	if maybe {
		return nil, &publishError{ErrUncertain, http.StatusGatewayTimeout, last}
	}
	return nil, &publishError{ErrUnavailable, http.StatusServiceUnavailable, last}
}

// awaitConnected waits until the node is connected or deadline passes,
// and reports whether it is.
func (n *Node) awaitConnected(deadline time.Time) bool {
	for !n.Connected() {
		if !time.Now().Before(deadline) || n.nc.IsClosed() {
			return false
		}
		time.Sleep(min(10*time.Millisecond, time.Until(deadline)))
	}
	return true
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sameMessage checks that the message stored at seq, which JetStream says
// an earlier publish with the same key stored, is the one in msg: a key
// names one message, and one reused for another must not get a 202 for a
// message nobody sends. The publish hook's state is left out (it may
// differ between two runs of the hook). If the stored message cannot be
// read (gone by retention, JetStream unreachable) it is taken as the same.
func (n *Node) sameMessage(seq uint64, msg *nats.Msg) error {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.PublishTimeout)
	defer cancel()
	stored, err := n.stream.GetMsg(ctx, seq)
	if err != nil {
		n.cfg.Logger.Debug("cluster: the first copy of a repeated publish could not be read", "seq", seq, "err", err)
		return nil
	}
	var a, b wireMessage
	if stored.Subject != msg.Subject || json.Unmarshal(stored.Data, &a) != nil || json.Unmarshal(msg.Data, &b) != nil ||
		a.ID != b.ID || a.Event != b.Event || (a.Data == nil) != (b.Data == nil) || a.Data != nil && *a.Data != *b.Data ||
		!slices.Equal(a.Comments, b.Comments) || !slices.Equal(a.Topics, b.Topics) {
		return &publishError{ErrKeyReused, http.StatusUnprocessableEntity, fmt.Errorf("it was stored as %d", seq)}
	}
	return nil
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
	n.waiters[seq] = append(n.waiters[seq], ch)
	n.resultsMu.Unlock()
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
	}
	n.resultsMu.Lock()
	if chs := slices.DeleteFunc(n.waiters[seq], func(c chan engine.PublishResult) bool { return c == ch }); len(chs) > 0 {
		n.waiters[seq] = chs
	} else {
		delete(n.waiters, seq)
	}
	n.resultsMu.Unlock()
	return engine.PublishResult{}
}
