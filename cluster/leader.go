package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// leaderKey is the key of the lease in the bucket <stream>_leader.
const leaderKey = "leader"

// The leader lease lets a script run something once per cluster
// (cluster.leader() in Lua) while tick runs on every node. One key in a
// JetStream key-value bucket whose entries live LeaderTTL: a node that
// creates it holds the lease and renews it every LeaderTTL/3 by updating
// it at the revision it last wrote (a compare-and-set, so two nodes never
// both renew). If the holder stops renewing (it died, or lost NATS) the
// entry expires and the next node to try creates it. A node counts itself
// leader only while its last renewal is younger than 2/3 of LeaderTTL, so
// it gives up before the entry can expire and another node take over.

// startLeader makes the bucket and campaigns once before returning, so
// that Leader is meaningful from the start; campaign goes on in a goroutine
// that Close ends.
func (n *Node) startLeader(ctx context.Context) error {
	var kv jetstream.KeyValue
	err := patiently(ctx, func(ctx context.Context) (err error) {
		kv, err = n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      n.cfg.Stream + "_leader",
			Description: "tinysse leader lease",
			TTL:         n.cfg.LeaderTTL,
			Storage:     jetstream.FileStorage, // the lease outlives a NATS restart
			Replicas:    n.cfg.Replicas,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("cluster: leader bucket: %w", err)
	}
	n.kv = kv
	n.name = nuid.Next()
	n.campaign()
	go func() {
		defer close(n.leaderDone)
		t := time.NewTicker(n.cfg.LeaderTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				n.campaign()
			case <-n.stop:
				n.resign()
				return
			}
		}
	}()
	return nil
}

// campaign renews the lease if this node holds it, or tries to take it.
// Only the leader goroutine (and startLeader before it) calls it: it owns
// leaseRev and wasLeader.
func (n *Node) campaign() {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.LeaderTTL/3)
	defer cancel()
	var err error
	if n.leaseRev != 0 {
		n.leaseRev, err = n.kv.Update(ctx, leaderKey, []byte(n.name), n.leaseRev)
	} else {
		n.leaseRev, err = n.kv.Create(ctx, leaderKey, []byte(n.name))
	}
	if err != nil {
		n.leaseRev = 0
		n.renewed.Store(0)
		if n.wasLeader {
			n.cfg.Logger.Warn("cluster: this node is no longer the leader", "err", err)
		}
		n.wasLeader = false
		return
	}
	n.renewed.Store(time.Now().UnixNano())
	if !n.wasLeader {
		n.cfg.Logger.Info("cluster: this node is the leader")
	}
	n.wasLeader = true
}

// resign gives the lease up at Close, so another node takes it at once.
func (n *Node) resign() {
	n.renewed.Store(0)
	if n.leaseRev == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.LeaderTTL/3)
	defer cancel()
	_ = n.kv.Delete(ctx, leaderKey, jetstream.LastRevision(n.leaseRev))
}

// Leader reports whether this node holds the cluster's leader lease now.
// Safe from any goroutine; it does not touch the network.
func (n *Node) Leader() bool {
	if n.cfg.NoLeader {
		return true
	}
	last := n.renewed.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < n.cfg.LeaderTTL*2/3
}
