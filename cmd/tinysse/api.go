package main

import (
	"github.com/tinysse/tinysse/cluster"
	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/lua"
	"github.com/tinysse/tinysse/transport"
)

// apiHistory is the server API's history beyond the rings: the stream
// in cluster mode and with --store; nil on a plain single node.
func apiHistory(node *cluster.Node) func(string, uint64, int) (transport.StoredHistory, error) {
	if node == nil {
		return nil
	}
	return func(topic string, after uint64, limit int) (transport.StoredHistory, error) {
		p, err := node.History(topic, after, limit)
		return transport.StoredHistory(p), err
	}
}

// apiKeys is the server API's view of the keys hooks set on sub tables;
// nil without a script.
func apiKeys(script *lua.Runtime) func([]*engine.Subscriber) []transport.SubscriberKeys {
	if script == nil {
		return nil
	}
	return func(subs []*engine.Subscriber) []transport.SubscriberKeys {
		keys := script.SubscriberKeys(subs)
		out := make([]transport.SubscriberKeys, len(keys))
		for i, k := range keys {
			out[i] = transport.SubscriberKeys(k)
		}
		return out
	}
}
