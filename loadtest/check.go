package main

import (
	"bytes"
	"sort"
	"strconv"
)

// The payload of every published message is
//
//	LT1 <publisher> <seq> <send time, unix ns> xxxx...
//
// padded with 'x' to --size bytes. Sequence numbers count from 1 on each
// publisher connection, whose publishes are sequential, so a server must
// deliver one publisher's messages in seq order. The marker lets a
// subscriber find the payload inside whatever a target wraps it in.
var payloadMarker = []byte("LT1 ")

// appendPayload appends a payload of at least size bytes.
func appendPayload(dst []byte, pub int, seq uint64, sentNS int64, size int) []byte {
	start := len(dst)
	dst = append(dst, payloadMarker...)
	dst = strconv.AppendInt(dst, int64(pub), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, sentNS, 10)
	dst = append(dst, ' ')
	for len(dst)-start < size {
		dst = append(dst, 'x')
	}
	return dst
}

// parsePayload finds a payload in b (an SSE data line or field value).
func parsePayload(b []byte) (pub int, seq uint64, sentNS int64, ok bool) {
	i := bytes.Index(b, payloadMarker)
	if i < 0 {
		return 0, 0, 0, false
	}
	b = b[i+len(payloadMarker):]
	var v [3]uint64
	for k := range v {
		n := 0
		for n < len(b) && b[n] >= '0' && b[n] <= '9' {
			v[k] = v[k]*10 + uint64(b[n]-'0')
			n++
		}
		if n == 0 || n > 19 {
			return 0, 0, 0, false
		}
		b = b[n:]
		if len(b) > 0 && b[0] == ' ' {
			b = b[1:]
		} else if k < 2 {
			return 0, 0, 0, false
		}
	}
	if v[0] > 1<<16 {
		return 0, 0, 0, false
	}
	return int(v[0]), v[1], int64(v[2]), true
}

// window tracks one publisher's sequence numbers on one stream: the
// highest seen and which of the 64 below it were seen, as in IPsec's
// anti-replay window. 16 bytes per publisher per subscriber, however long
// the run.
type window struct {
	top  uint64 // highest seq seen; 0 before the first
	seen uint64 // bit i: seq top-i was seen
}

// verdict of one delivery against its window.
type verdict uint8

const (
	inOrder   verdict = iota // newer than everything before it
	late                     // older than the newest, not seen before: out of order
	tooLate                  // older than the window remembers: out of order, maybe a duplicate
	duplicate                // seen before
)

func (w *window) see(seq uint64) verdict {
	switch {
	case seq > w.top:
		if d := seq - w.top; d >= 64 {
			w.seen = 1
		} else {
			w.seen = w.seen<<d | 1
		}
		w.top = seq
		return inOrder
	case w.top-seq >= 64:
		return tooLate
	case w.seen&(1<<(w.top-seq)) != 0:
		return duplicate
	default:
		w.seen |= 1 << (w.top - seq)
		return late
	}
}

// timeline is what the publishers report: for each publisher, the send
// times of its acknowledged publishes, in seq order (so increasing).
type timeline [][]int64

// expectedAfter is how many acknowledged messages were sent at or after
// readyNS, summed over publishers: what a stream ready at readyNS must get.
func (t timeline) expectedAfter(readyNS int64) int64 {
	var n int64
	for _, sent := range t {
		i := sort.Search(len(sent), func(i int) bool { return sent[i] >= readyNS })
		n += int64(len(sent) - i)
	}
	return n
}
