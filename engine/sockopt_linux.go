package engine

import "syscall"

// unsentLimit is the TCP_NOTSENT_LOWAT set on every subscriber's socket:
// the kernel takes more bytes for the socket only while fewer than this
// are waiting to be sent. Without it a socket whose reader stopped goes on
// taking writes until its send buffer, autotuned up to net.ipv4.tcp_wmem's
// maximum (4 MiB by default), is full: issue 13's 50 stuck sockets took
// 2-3.7 MB each, 150 MB copied by the shard, before any of them refused a
// byte. With it a stuck socket takes what its peer's window holds and
// this much more, then refuses, and the subscriber goes to its goroutine
// and the write timeout. A reader that keeps up never has this much
// waiting: on loopback its bytes are sent as soon as they are written.
const unsentLimit = 128 << 10

// tcpNotsentLowat is TCP_NOTSENT_LOWAT (linux/tcp.h), which package
// syscall does not name.
const tcpNotsentLowat = 25

// limitUnsent sets unsentLimit on a subscriber's socket. A socket that is
// not TCP refuses the option, which is harmless.
func limitUnsent(raw syscall.RawConn) {
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpNotsentLowat, unsentLimit)
	})
}

// abortOnClose makes the socket's close discard what it still holds and
// send a reset (SO_LINGER 0), for a subscriber cut off because its socket
// took nothing for WriteTimeout: a normal close would leave the kernel
// holding those bytes, probing a peer that does not read, for minutes.
func abortOnClose(raw syscall.RawConn) {
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptLinger(int(fd), syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
	})
}
