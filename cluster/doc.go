// Package cluster runs tinysse on several nodes over NATS JetStream: a
// message published to any node reaches subscribers on every node, in the
// same order, with the same id, and a client may resume on any node.
//
// In: a publish accepted by a node's HTTP handler (Node.Publish, the
// transport's Config.Publish). It goes to the stream, one JetStream message
// per publish, under one message id for all its attempts (the client's
// Idempotency-Key, or one made here), and the caller waits for
// JetStream's acknowledgement: retried while JetStream elects or the
// connection moves, 503 when it was not stored, 504 when it may have been
// (publish.go).
// Out: every node follows the stream with a consumer of its own, made
// again from the last applied sequence when it is lost (follow.go), and
// calls engine.PublishSeq with the stream sequence as Seq, so an
// --auto-id id is the stream sequence on every node. A Last-Event-ID older
// than the rings comes back through Node.Replay (the engine's
// Config.Replay), which reads the stream filtered by topic.
//
// Node.Leader is a lease in a JetStream key-value bucket, true on one node
// at a time: the Lua cluster.leader() that lets a tick job run once per
// cluster (leader.go).
//
// Store (store.go) is the same on one node without NATS (--store): a
// nats-server with JetStream in the process, reached without a socket.
//
// Node.History reads one topic's messages from the stream a page at a
// time, for the server API's history beyond a node's rings; it shares
// Replay's reader (scan) and its bound of 16 reads at once.
//
// Publish, Replay, History, Leader, Connected and WritePrometheus are safe
// from any goroutine. The consumer's handler applies one message at a time
// (Node.followMu).
package cluster
