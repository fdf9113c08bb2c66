package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/tinysse/tinysse/cluster"
	"github.com/valyala/fasthttp"
)

// storeOptions are the --store* options: a single node's history on disk,
// in an embedded JetStream, through cluster mode's code path.
type storeOptions struct {
	dir        string
	maxAge     time.Duration
	maxMsgs    int64
	maxBytes   int64
	sync       time.Duration // with syncAlways unset
	syncAlways bool
}

// syncValue is --store-sync: a duration, or "always".
type syncValue struct {
	every  time.Duration
	always bool
}

func (v *syncValue) Set(s string) error {
	if strings.EqualFold(s, "always") {
		*v = syncValue{always: true}
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return fmt.Errorf("%q is not a positive duration (like 1s, 2m) or always", s)
	}
	*v = syncValue{every: d}
	return nil
}
func (v *syncValue) String() string {
	if v.always {
		return "always"
	}
	return v.every.String()
}
func (v *syncValue) Type() string { return "DUR|always" }

// storeFlags holds the flag values that are parsed into storeOptions by
// finish.
type storeFlags struct {
	maxAge         durationValue
	maxBytes       sizeValue
	sync           syncValue
	publishTimeout durationValue // --nats-publish-timeout, declared here with the other new cluster flags
}

// addStoreFlags declares the --store* options, --nats-publish-timeout and
// --health-requires-nats.
func addStoreFlags(fs *pflag.FlagSet, o *options) *storeFlags {
	f := &storeFlags{sync: syncValue{every: time.Second}, publishTimeout: durationValue(5 * time.Second)}
	fs.Var(&f.publishTimeout, "nats-publish-timeout", "how long a publish may wait for JetStream (retried meanwhile, e.g. during an election) before 503; once it may have been stored, up to twice this, then 504")
	fs.StringVar(&o.store.dir, "store", "", "single node: keep the history on disk in `DIR` (an embedded NATS JetStream, no network port); not with --nats")
	fs.Var(&f.maxAge, "store-max-age", "how long the store keeps messages (0 = no limit)")
	fs.Int64Var(&o.store.maxMsgs, "store-max-msgs", 0, "how many messages the store keeps (0 = no limit)")
	fs.Var(&f.maxBytes, "store-max-bytes", "how many bytes of messages the store keeps (0 = no limit)")
	fs.Var(&f.sync, "store-sync", "fsync the store this often, or always (before each 202); a power cut may lose what was answered 202 since the last fsync")
	fs.BoolVar(&o.nats.healthRequired, "health-requires-nats", false, "cluster mode: the health path answers 503 while the node is not connected to NATS")
	return f
}

// finish moves the flag values into o.store and o.nats, and checks them.
func (f *storeFlags) finish(o *options) error {
	s := &o.store
	s.maxAge = time.Duration(f.maxAge)
	s.maxBytes = int64(f.maxBytes)
	s.sync, s.syncAlways = f.sync.every, f.sync.always
	o.nats.publishTimeout = time.Duration(f.publishTimeout)
	if t := o.nats.publishTimeout; t < 100*time.Millisecond || t > time.Minute {
		return fmt.Errorf("invalid value for --nats-publish-timeout: %v is not between 100ms and 1m", t)
	}
	if s.maxMsgs < 0 {
		return fmt.Errorf("invalid value for --store-max-msgs: %d is negative", s.maxMsgs)
	}
	if s.dir != "" && o.nats.url != "" {
		return errors.New("invalid value for --store: not with --nats (a cluster keeps its history in NATS JetStream)")
	}
	return nil
}

// config is the cluster.Config of a node on store.
func (s *storeOptions) config(store *cluster.Store, log *slog.Logger) cluster.Config {
	return cluster.Config{
		InProcess: store.Server(),
		MaxAge:    s.maxAge,
		MaxMsgs:   s.maxMsgs,
		MaxBytes:  s.maxBytes,
		NoLeader:  true,
		// An in-process store answers at once or not at all.
		PublishTimeout: 5 * time.Second,
		Logger:         log,
	}
}

// storePayload is the largest message the store takes for a body of at
// most maxBody bytes: the stream holds a message as JSON, in which
// escaping may double the data.
func storePayload(maxBody int64) int {
	return int(min(max(2*maxBody+64<<10, 1<<20), 64<<20))
}

// healthHandler serves --health-path in cluster mode and with --store, in
// the transport's place: {"status":"ok","nats":"ok"} with 200 while
// serving and linked to NATS; "nats":"disconnected" while not (503 with
// --health-requires-nats, with "status":"unavailable"; 200 without: the
// node still serves its subscribers); 503 {"status":"shutting down"} once
// shutdown began.
func healthHandler(closing, connected func() bool, requireNATS bool) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.Response.Header.Set("Cache-Control", "no-store")
		link := "ok"
		if !connected() {
			link = "disconnected"
		}
		switch {
		case closing():
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			ctx.Response.Header.Set("Retry-After", "1")
			ctx.SetBodyString(`{"status":"shutting down","nats":"` + link + `"}`)
		case link != "ok" && requireNATS:
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			ctx.Response.Header.Set("Retry-After", "1")
			ctx.SetBodyString(`{"status":"unavailable","nats":"` + link + `"}`)
		default:
			ctx.SetBodyString(`{"status":"ok","nats":"` + link + `"}`)
		}
	}
}
