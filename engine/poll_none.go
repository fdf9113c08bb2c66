//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package engine

import "errors"

// pollSet does not exist here (Windows, and systems without epoll or
// kqueue): every subscriber keeps a goroutine parked in Read.
type pollSet struct{}

var errNoPoller = errors.New("engine: no poller on this platform")

func openPollSet() (*pollSet, error)                   { return nil, errNoPoller }
func (p *pollSet) add(int) error                       { return errNoPoller }
func (p *pollSet) rearm(int) error                     { return errNoPoller }
func (p *pollSet) remove(int)                          {}
func (p *pollSet) wait(fds []int) ([]int, bool, error) { return fds, true, errNoPoller }
func (p *pollSet) wake()                               {}
func (p *pollSet) close()                              {}
