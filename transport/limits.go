package transport

import (
	"net"
	"net/netip"

	"golang.org/x/net/http2"
)

// Per-address connection limit (Config.MaxConnsPerIP). It is counted in
// the listener, not at subscribe, so that it bounds every kind of
// connection one address can hold open: streams, publishers, idle
// keep-alive connections and slowloris clients that never finish a
// request.

const tooManyBody = `{"error":"too many connections from your address"}`

var tooManyResponse = newRefusal("429 Too Many Requests", http2.ErrCodeEnhanceYourCalm, tooManyBody)

// admitIP counts one more connection from ip, unless ip is at the limit.
// l.mu must be held.
func (l *limitListener) admitIP(ip netip.Addr) bool {
	if l.perIP <= 0 {
		return true
	}
	if l.byIP == nil {
		l.byIP = make(map[netip.Addr]int)
	}
	if l.byIP[ip] >= l.perIP {
		return false
	}
	l.byIP[ip]++
	return true
}

// leaveIP gives back the slot of a closed connection from ip. l.mu must
// be held.
func (l *limitListener) leaveIP(ip netip.Addr) {
	if l.perIP <= 0 {
		return
	}
	if n := l.byIP[ip]; n > 1 {
		l.byIP[ip] = n - 1
	} else {
		delete(l.byIP, ip) // the map holds only addresses with open connections
	}
}

// addresses returns how many client addresses hold connections (tests).
func (l *limitListener) addresses() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.byIP)
}

func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{} // not TCP (tests' in-memory listeners): one shared address
}

// takeStream takes a subscriber slot (Config.MaxSubscribers). The slot is
// given back just before an HTTP/1.1 stream's socket closes (subscribe's
// giveSlot), when an HTTP/2 stream's handler returns, or by subscribe
// itself when it answers without a stream. Called by fasthttp workers at once: the
// Add that overshoots is undone, so the count may exceed the bound for an
// instant but no caller is admitted beyond it.
func (s *Server) takeStream() bool {
	if s.streams.Add(1) > int64(s.cfg.MaxSubscribers) && s.cfg.MaxSubscribers > 0 {
		s.streams.Add(-1)
		return false
	}
	return true
}

// Streams returns how many subscriber streams are open or being opened.
func (s *Server) Streams() int64 { return s.streams.Load() }
