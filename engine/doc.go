// Package engine routes published messages to subscribers.
//
// In: Publish(*Message) from any goroutine; Serve(*Subscriber, Stream) on
// the subscriber's own goroutine, for the stream's whole life.
// Out: SSE frames on the subscribers' sockets.
//
// Each topic (the default stream is the topic "") has a ring.Ring of
// published messages. A publish validates and encodes the message once,
// appends it to its topics' rings under one lock (the rings' single writer)
// and wakes the shards that have subscribers on those topics: its cost does
// not grow with the number of subscribers. Under the same lock it keeps the
// rings together under Config.MaxHistoryBytes, dropping the oldest
// messages across topics (history.go).
//
// Subscribers are partitioned into shards, one goroutine each. A shard that
// wakes reads, for every subscriber of a dirty topic, the messages past
// its cursor (at most maxPassBytes of them per pass) and writes their
// shared frames to the socket in one non-blocking writev. What the socket
// does not take, and every goodbye (timeout, lag, shutdown), is handed to
// the subscriber's own goroutine, which otherwise sits in Read to notice
// the client leaving. So a slow subscriber never holds up its shard, and
// the publisher never waits for anyone. See ARCHITECTURE.md for the
// ownership map.
//
// A subscriber's topic may be a pattern ("sports/*", "sports/**"): each
// pattern subscribers hold is a topic of its own whose ring a publish
// appends to when one of its topics matches, found through a trie by
// segment (patindex.go); everything after the publish is the exact-topic
// path.
//
// Stats is a snapshot of the engine's counters for metrics: deliveries are
// added up once per shard pass, never per delivery (see stats.go).
//
// Read-only views for the server API (inspect.go): Topic, TopicPage,
// History, Newest, SeqOfID and Presence read rings lock-free and take one
// shard's lock at a time, never the publish lock; Disconnect and
// DisconnectTopic end streams as Close does, with ": disconnected".
//
// Safe from any goroutine: Publish, PublishSeq, PublishLocal, Serve,
// Subscribers, Stats, HistoryBytes, Close, Config, and those of
// inspect.go.
// Hooks are called as documented on Hooks.
package engine
