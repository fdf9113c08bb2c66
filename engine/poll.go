package engine

import (
	"sync"
	"syscall"
)

// The idle-subscriber poller (issue 19).
//
// An idle subscriber has nothing for its goroutine to do but notice the
// client leaving, and a goroutine parked in Read for that costs a stack
// (2-8 KiB) per stream. Where the OS has a readiness notification (epoll
// on Linux, kqueue on macOS and the BSDs: poll_epoll.go, poll_kqueue.go),
// each shard has a poller goroutine that watches the descriptors of its
// subscribers instead: one-shot, for readability and hang-up. An event
// says only "look at this socket": the poller marks the subscriber
// (kickPoll) and, if nobody owns it, starts a goroutine that reads what the
// client sent (dropping it, or finding EOF: the client left) and ends once
// the subscriber is idle again and re-armed. Deliveries stay the shard's
// non-blocking writev; what needs blocking (a partial write, a goodbye, a
// hook that waits) runs on a goroutine started for it, which ends when it
// is done (Subscriber.serveSlow). So an idle subscriber holds no goroutine
// at all, only its Subscriber, its connection and its entry here.
//
// Streams without a descriptor of their own (HTTP/2 streams), platforms
// without a poller (Windows) and Config.NoPoll keep one goroutine per
// subscriber parked in Read (Subscriber.loop), as before.
//
// The descriptor is the map's key, so that a stale event (for a
// descriptor closed and reused since) can only make the poller look at
// the socket now behind that number, which then reads nothing and goes
// back to idle. A descriptor leaves the map and the set before its
// subscriber's socket is closed (finish).

// poller watches one shard's idle subscribers.
type poller struct {
	set *pollSet // the OS's notification set; nil: this platform has none

	mu   sync.Mutex          // a leaf: guards subs
	subs map[int]*Subscriber // guarded by mu: who to look at when a descriptor reports
}

// newPoller opens a poller, or returns nil where there is none (the
// platform, or the OS refused: then every subscriber keeps a goroutine).
func newPoller() *poller {
	set, err := openPollSet()
	if err != nil {
		return nil
	}
	return &poller{set: set, subs: make(map[int]*Subscriber)}
}

// watch registers sub's descriptor and arms it. It fails for a descriptor
// the OS cannot watch (not a socket); the caller then serves sub with a
// goroutine. Called by sub's owner before the shard knows sub.
func (p *poller) watch(sub *Subscriber) error {
	fd := -1
	if err := sub.watch.Control(func(d uintptr) { fd = int(d) }); err != nil {
		return err
	}
	p.mu.Lock()
	p.subs[fd] = sub
	p.mu.Unlock()
	if err := p.set.add(fd); err != nil {
		p.mu.Lock()
		delete(p.subs, fd)
		p.mu.Unlock()
		return err
	}
	sub.fd = fd
	return nil
}

// rearm asks for one more event on sub's descriptor. Called by sub's
// owner as it lets go.
func (p *poller) rearm(sub *Subscriber) error {
	var err error
	if cerr := sub.watch.Control(func(uintptr) { err = p.set.rearm(sub.fd) }); cerr != nil {
		return cerr
	}
	return err
}

// forget takes sub's descriptor out of the set; called by sub's owner
// once it has left its shard, before the socket is closed.
func (p *poller) forget(sub *Subscriber) {
	p.mu.Lock()
	if p.subs[sub.fd] == sub {
		delete(p.subs, sub.fd)
	}
	p.mu.Unlock()
	_ = sub.watch.Control(func(uintptr) { p.set.remove(sub.fd) })
}

// run is the poller goroutine: it waits for events and hands each
// subscriber that has one to a goroutine (Subscriber.notice). It returns
// once stop has been called.
func (p *poller) run() {
	var fds []int
	var subs []*Subscriber
	for {
		var stop bool
		var err error
		fds, stop, err = p.set.wait(fds[:0])
		if stop {
			p.set.close()
			return
		}
		if err != nil {
			continue // EINTR; anything else would repeat: wait reports it once per call
		}
		p.mu.Lock()
		for _, fd := range fds {
			if sub := p.subs[fd]; sub != nil {
				subs = append(subs, sub)
			}
		}
		p.mu.Unlock()
		for _, sub := range subs {
			sub.notice(kickPoll)
		}
		clear(subs)
		subs = subs[:0]
	}
}

// stop ends run (which closes the set). Called once, by Engine.Close.
func (p *poller) stop() { p.set.wake() }

// pollable says whether Stream st can be watched by a poller: it has a
// descriptor (Watch, or Raw).
func (st *Stream) watchConn() syscall.RawConn {
	if st.Watch != nil {
		return st.Watch
	}
	return st.Raw
}
