package engine

import (
	"time"
	"unsafe"
)

// Request is what hooks see of the HTTP request behind a publish or a
// subscription. It is copied out of the transport's buffers, so it stays
// valid for the subscriber's whole life.
type Request struct {
	Method  string
	Path    string
	URI     string
	Query   string            // raw query string, "" if none
	Headers map[string]string // lower-case name -> value
	IP      string
	Port    int
	// Claims are the verified claims of the request's token (the built-in
	// JWT check, package auth); nil without one.
	Claims map[string]any `json:",omitempty"`
}

// mapEntryOverhead is a rough cost of one map entry besides its strings:
// two string headers and the map's per-entry bookkeeping.
const mapEntryOverhead = 2*int(unsafe.Sizeof("")) + 16

// Size is about how many bytes r holds, for the history budget when a
// published message keeps its request (a Sizer state).
func (r *Request) Size() int {
	if r == nil {
		return 0
	}
	n := int(unsafe.Sizeof(*r)) + len(r.Method) + len(r.Path) + len(r.URI) + len(r.Query) + len(r.IP)
	for k, v := range r.Headers {
		n += len(k) + len(v) + mapEntryOverhead
	}
	return n
}

// Hooks are the points where a script (package lua) changes what the server
// does. A nil field means the hook is not defined, and the engine and
// transport then skip it entirely: without a Message hook delivery never
// leaves the shard's write loop.
//
// Publish and Subscribe are called by the transport on the request's
// goroutine; Catchup by Serve on the subscriber's goroutine (the one that
// serves its stream), before the subscriber is handed to its shard;
// Message by the subscriber's shard goroutine (or its own goroutine while
// it catches up after a slow write); Timeout and Unsubscribe by the
// subscriber's goroutine. Hooks may block: a blocked hook
// holds up only the goroutine that called it.
type Hooks struct {
	// Publish may change m (it has not been encoded yet) or refuse it by
	// returning false. An error answers 500.
	Publish func(r *Request, m *Message) (accept bool, err error)
	// Subscribe may set s.State and s.Topics or refuse the subscriber.
	Subscribe func(s *Subscriber) (accept bool, err error)
	// Catchup returns messages written before live ones. When Catchup is
	// defined it replaces the engine's own replay from the ring.
	Catchup func(s *Subscriber, lastEventID string, has bool) ([]*Message, error)
	// Message returns the frame to write to s for m: m.Frame when unchanged,
	// another frame, or nil to skip m for this subscriber. It is only ever
	// called between EnterShard and LeaveShard of s's shard, with the batch
	// EnterShard returned, so a script runtime takes its VM once for a
	// whole batch of deliveries.
	Message func(batch any, m *Message, s *Subscriber) []byte
	// EnterShard and LeaveShard bracket a batch of Message calls made for
	// subscribers of one shard, on one goroutine. Both or neither are set.
	EnterShard func(shard int) (batch any)
	LeaveShard func(batch any)
	// Timeout returns the retry hint for a subscriber closed by --timeout;
	// ok false means use the configured TimeoutRetry.
	Timeout func(s *Subscriber, elapsed time.Duration) (retry time.Duration, ok bool)
	// Unsubscribe runs once per subscriber after its stream is closed.
	Unsubscribe func(s *Subscriber)
}
