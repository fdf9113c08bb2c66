//go:build linux

package engine

import (
	"golang.org/x/sys/unix"
)

// pollSet is an epoll instance and a pipe that wakes it for stop.
type pollSet struct {
	ep           int
	wakeR, wakeW int
	events       []unix.EpollEvent // the waiter's only
}

// watchEvents: readable (the client sent bytes, or EOF), peer hang-up,
// reported once until rearmed.
const watchEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

func openPollSet() (*pollSet, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		unix.Close(ep)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(p[0])}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, p[0], &ev); err != nil {
		unix.Close(ep)
		unix.Close(p[0])
		unix.Close(p[1])
		return nil, err
	}
	return &pollSet{ep: ep, wakeR: p[0], wakeW: p[1], events: make([]unix.EpollEvent, 256)}, nil
}

func (p *pollSet) add(fd int) error {
	ev := unix.EpollEvent{Events: watchEvents, Fd: int32(fd)}
	return unix.EpollCtl(p.ep, unix.EPOLL_CTL_ADD, fd, &ev)
}

func (p *pollSet) rearm(fd int) error {
	ev := unix.EpollEvent{Events: watchEvents, Fd: int32(fd)}
	return unix.EpollCtl(p.ep, unix.EPOLL_CTL_MOD, fd, &ev)
}

func (p *pollSet) remove(fd int) {
	_ = unix.EpollCtl(p.ep, unix.EPOLL_CTL_DEL, fd, nil)
}

// wait blocks until some descriptor reports and appends them to fds;
// stop reports that wake was called.
func (p *pollSet) wait(fds []int) (_ []int, stop bool, err error) {
	n, err := unix.EpollWait(p.ep, p.events, -1)
	if err != nil {
		return fds, false, err
	}
	for _, ev := range p.events[:n] {
		if int(ev.Fd) == p.wakeR {
			stop = true
			continue
		}
		fds = append(fds, int(ev.Fd))
	}
	return fds, stop, nil
}

func (p *pollSet) wake() { _, _ = unix.Write(p.wakeW, []byte{0}) }

func (p *pollSet) close() {
	unix.Close(p.ep)
	unix.Close(p.wakeR)
	unix.Close(p.wakeW)
}
