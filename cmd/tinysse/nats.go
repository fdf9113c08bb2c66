package main

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tinysse/tinysse/cluster"
)

// natsOptions are the --nats* options: cluster mode over NATS JetStream.
type natsOptions struct {
	url, stream            string
	maxAge                 time.Duration
	maxMsgs                int64
	replicas               int
	creds, token           string
	tlsCA, tlsCert, tlsKey string
	// healthRequired (--health-requires-nats): the health path answers
	// 503 while the node is not connected to NATS.
	healthRequired bool
	publishTimeout time.Duration
}

// check refuses --nats* values that cannot work, before anything starts.
func (n *natsOptions) check() error {
	if n.maxMsgs < 0 {
		return fmt.Errorf("invalid value for --nats-max-msgs: %d is negative", n.maxMsgs)
	}
	if n.replicas < 1 || n.replicas > 5 {
		return fmt.Errorf("invalid value for --nats-replicas: %d is not between 1 and 5", n.replicas)
	}
	for i := 0; i < len(n.stream); i++ {
		c := n.stream[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("invalid value for --nats-stream: %q may hold only letters, digits, - and _", n.stream)
		}
	}
	if n.stream == "" {
		return errors.New("invalid value for --nats-stream: empty")
	}
	if (n.tlsCert == "") != (n.tlsKey == "") {
		return errors.New("invalid value for --nats-tls-cert: --nats-tls-cert and --nats-tls-key go together")
	}
	return nil
}

// config is the cluster.Config of these options.
func (n *natsOptions) config(log *slog.Logger) cluster.Config {
	return cluster.Config{
		URL:       n.url,
		Stream:    n.stream,
		MaxAge:    n.maxAge,
		MaxMsgs:   n.maxMsgs,
		Replicas:  n.replicas,
		CredsFile: n.creds,
		Token:     n.token,
		TLSCA:     n.tlsCA,
		TLSCert:   n.tlsCert,
		TLSKey:    n.tlsKey,
		// PublishTimeout also bounds a replay's wait for the stream.
		PublishTimeout: n.publishTimeout,
		Logger:         log,
	}
}
