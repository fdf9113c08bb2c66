package main

import (
	"fmt"

	"github.com/spf13/pflag"
)

// scaleOptions are issue 19's options: idle subscribers without a
// goroutine, batch publish, bounded replays from JetStream.
type scaleOptions struct {
	noPoll        bool
	maxBatch      int
	replayFetches int
}

func addScaleFlags(fs *pflag.FlagSet, o *scaleOptions) {
	fs.BoolVar(&o.noPoll, "no-poll", false, "keep one goroutine per subscriber waiting for its client to leave, instead of the shards' pollers (epoll/kqueue; Windows always does this)")
	fs.IntVar(&o.maxBatch, "max-batch", 1000, "messages in one batch publish (a JSON array or NDJSON body); beyond it 413")
	fs.IntVar(&o.replayFetches, "nats-replay-fetches", 16, "cluster mode: replays read from JetStream at once per node (identical ones are shared); the others wait their turn")
}

// check refuses values out of range.
func (o *scaleOptions) check() error {
	if o.maxBatch < 1 || o.maxBatch > 100000 {
		return fmt.Errorf("invalid value for --max-batch: %d is not between 1 and 100000", o.maxBatch)
	}
	if o.replayFetches < 1 || o.replayFetches > 1024 {
		return fmt.Errorf("invalid value for --nats-replay-fetches: %d is not between 1 and 1024", o.replayFetches)
	}
	return nil
}
