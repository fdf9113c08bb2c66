// Package cluster runs tinysse on several nodes over NATS JetStream: a
// message published to any node reaches subscribers on every node, in the
// same order, with the same id, and a client may resume on any node.
//
// In: a publish accepted by a node's HTTP handler (Node.Publish, the
// transport's Config.Publish). It goes to the stream, one JetStream message
// per publish, and the caller waits for JetStream's acknowledgement.
// Out: every node's ordered consumer (Node.Start) reads the stream in
// order and calls engine.PublishSeq with the stream sequence as Seq, so an
// --auto-id id is the stream sequence on every node. A Last-Event-ID older
// than the rings comes back through Node.Replay (the engine's
// Config.Replay), which reads the stream filtered by topic.
//
// Node.Leader is a lease in a JetStream key-value bucket, true on one node
// at a time: the Lua cluster.leader() that lets a tick job run once per
// cluster (leader.go).
//
// Publish, Replay and Leader are safe from any goroutine. The consumer's handler
// runs on one NATS delivery goroutine at a time.
package cluster
