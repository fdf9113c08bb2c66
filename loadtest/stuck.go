package main

import (
	"context"
	"fmt"
	"github.com/tinysse/tinysse/internal/tcpstate"
	"net"
	"net/url"
	"slices"
	"sync"
	"time"
)

// --stuck N: issue 13's slow-reader attack. N more subscriber connections
// send the subscribe request and then never read, through a receive
// buffer of stuckReadBuffer bytes, next to the --subscribers that read
// everything. They are not subscribers of the run (nothing is expected of
// them); the report says when the server cut each one off, counted from
// the first publish, seen from the client's side of the connection
// (TCP_INFO's state, polled every stuckPoll, on Linux). The subscribers'
// checks are unchanged: a server that lets the stuck ones hold up the
// others shows as lagged and lost deliveries, and as latency.

const (
	stuckReadBuffer = 4096
	stuckPoll       = 10 * time.Millisecond
)

// stuckSet is the stuck connections of a run. conns is written before
// watch starts; cutAt and known by the watch goroutine, read after done
// closes.
type stuckSet struct {
	conns []*net.TCPConn
	cutAt []time.Duration // since the first publish; 0: still open
	known bool            // whether TCP_INFO could tell
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// StuckStats is what --stuck reports.
type StuckStats struct {
	Conns int `json:"conns"`
	// CutOff is how many the server closed before the end of the drain;
	// the seconds are from the first publish. Measured is false where the
	// tool cannot see a connection's state without reading it.
	CutOff     int     `json:"cut_off"`
	CutOffP50  float64 `json:"cut_off_p50_s,omitempty"`
	CutOffMax  float64 `json:"cut_off_max_s,omitempty"`
	Measured   bool    `json:"measured"`
	ReadBuffer int     `json:"read_buffer"`
}

// openStuck connects n stuck subscribers to u with request.
func openStuck(ctx context.Context, u *url.URL, request []byte, n int, timeout time.Duration) (*stuckSet, error) {
	s := &stuckSet{stop: make(chan struct{}), done: make(chan struct{})}
	d := net.Dialer{Timeout: timeout}
	for range n {
		c, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("--stuck: %w", err)
		}
		tc := c.(*net.TCPConn)
		s.conns = append(s.conns, tc)
		if err := tc.SetReadBuffer(stuckReadBuffer); err != nil {
			s.close()
			return nil, fmt.Errorf("--stuck: %w", err)
		}
		if _, err := tc.Write(request); err != nil {
			s.close()
			return nil, fmt.Errorf("--stuck: %w", err)
		}
	}
	s.cutAt = make([]time.Duration, n)
	return s, nil
}

// watch polls the connections' state from start until all are closed or
// close is called.
func (s *stuckSet) watch(start time.Time) {
	go func() {
		defer close(s.done)
		tick := time.NewTicker(stuckPoll)
		defer tick.Stop()
		left := len(s.conns)
		s.known = true
		for left > 0 {
			for i, c := range s.conns {
				if s.cutAt[i] != 0 {
					continue
				}
				open, known := tcpstate.Open(c)
				if !known {
					s.known = false
					return
				}
				if !open {
					s.cutAt[i] = max(time.Since(start), time.Nanosecond)
					left--
				}
			}
			select {
			case <-tick.C:
			case <-s.stop:
				return
			}
		}
	}()
}

// finish stops watching and sums up. Call once, after watch.
func (s *stuckSet) finish() *StuckStats {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	st := &StuckStats{Conns: len(s.conns), Measured: s.known, ReadBuffer: stuckReadBuffer}
	var cut []time.Duration
	for _, d := range s.cutAt {
		if d != 0 {
			cut = append(cut, d)
		}
	}
	st.CutOff = len(cut)
	if len(cut) > 0 {
		slices.Sort(cut)
		st.CutOffP50 = cut[len(cut)/2].Seconds()
		st.CutOffMax = cut[len(cut)-1].Seconds()
	}
	return st
}

// close closes every connection.
func (s *stuckSet) close() {
	for _, c := range s.conns {
		c.Close()
	}
}
