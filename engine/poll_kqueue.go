//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package engine

import (
	"golang.org/x/sys/unix"
)

// pollSet is a kqueue and a pipe that wakes it for stop.
type pollSet struct {
	kq           int
	wakeR, wakeW int
	events       []unix.Kevent_t // the waiter's only
}

func openPollSet() (*pollSet, error) {
	kq, err := unix.Kqueue()
	if err != nil {
		return nil, err
	}
	unix.CloseOnExec(kq)
	var p [2]int
	if err := unix.Pipe(p[:]); err != nil {
		unix.Close(kq)
		return nil, err
	}
	for _, fd := range p {
		unix.CloseOnExec(fd)
		_ = unix.SetNonblock(fd, true)
	}
	set := &pollSet{kq: kq, wakeR: p[0], wakeW: p[1], events: make([]unix.Kevent_t, 256)}
	if err := set.change(p[0], unix.EV_ADD); err != nil {
		set.close()
		return nil, err
	}
	return set, nil
}

func (p *pollSet) change(fd, flags int) error {
	var ch [1]unix.Kevent_t
	unix.SetKevent(&ch[0], fd, unix.EVFILT_READ, flags)
	_, err := unix.Kevent(p.kq, ch[:], nil, nil)
	return err
}

// add and rearm ask for one readability event (data, or EOF: the peer
// hung up) on fd.
func (p *pollSet) add(fd int) error   { return p.change(fd, unix.EV_ADD|unix.EV_ONESHOT) }
func (p *pollSet) rearm(fd int) error { return p.change(fd, unix.EV_ADD|unix.EV_ONESHOT) }

// remove fails harmlessly (ENOENT) when the one-shot filter has fired.
func (p *pollSet) remove(fd int) { _ = p.change(fd, unix.EV_DELETE) }

func (p *pollSet) wait(fds []int) (_ []int, stop bool, err error) {
	n, err := unix.Kevent(p.kq, nil, p.events, nil)
	if err != nil {
		return fds, false, err
	}
	for _, ev := range p.events[:n] {
		if int(ev.Ident) == p.wakeR {
			stop = true
			continue
		}
		fds = append(fds, int(ev.Ident))
	}
	return fds, stop, nil
}

func (p *pollSet) wake() { _, _ = unix.Write(p.wakeW, []byte{0}) }

func (p *pollSet) close() {
	unix.Close(p.kq)
	unix.Close(p.wakeR)
	unix.Close(p.wakeW)
}
