package sseparse

import "bytes"

// Lines cuts an event stream fed in chunks, split anywhere, into lines as
// the Standard does: a line ends at CRLF, at a lone LF or at a lone CR, and
// one byte order mark at the very start of the stream is dropped. It is
// the one line splitter of the module: the Parser reads through it, and
// so does the load tool, which cannot afford the Parser's copies (it only
// wants each line's bytes, once, to count what it reads). A Lines is for
// one goroutine; the zero value is at the start of a stream.
type Lines struct {
	partial []byte // the line read so far, not yet terminated
	skipLF  bool   // the last byte fed was a CR: a following LF belongs to it
	started bool   // past the optional leading BOM
}

// Feed calls line for every line that b completes, in order, with the
// line's bytes (valid only during the call) and the terminator consumed
// with it: "\n", "\r" or "\r\n". A CR at the end of b is a line's end at
// once (a live stream does not wait for the next byte); when the next
// Feed starts with the LF that makes it a CRLF, line is called with a nil
// line and end "\n", so that a caller keeping the raw bytes can add it.
func (l *Lines) Feed(b []byte, line func(line []byte, end string)) {
	if !l.started {
		// One leading byte order mark is dropped; wait until we can tell.
		l.partial = append(l.partial, b...)
		if len(l.partial) < len(bom) && bytes.HasPrefix([]byte(bom), l.partial) {
			return
		}
		b = bytes.TrimPrefix(l.partial, []byte(bom))
		l.partial = nil
		l.started = true
	}
	for len(b) > 0 {
		if l.skipLF {
			l.skipLF = false
			if b[0] == '\n' {
				line(nil, "\n")
				b = b[1:]
				continue
			}
		}
		i := lineEnd(b)
		if i < 0 {
			l.partial = append(l.partial, b...)
			return
		}
		text := b[:i]
		if len(l.partial) > 0 {
			l.partial = append(l.partial, text...)
			text = l.partial
		}
		end, n := "\n", 1
		if b[i] == '\r' {
			switch {
			case i+1 == len(b):
				end, l.skipLF = "\r", true
			case b[i+1] == '\n':
				end, n = "\r\n", 2
			default:
				end = "\r"
			}
		}
		line(text, end)
		l.partial = l.partial[:0]
		b = b[i+n:]
	}
}

// lineEnd is the index of the first CR or LF in b, or -1.
func lineEnd(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	lim := b
	if i >= 0 {
		lim = b[:i]
	}
	if j := bytes.IndexByte(lim, '\r'); j >= 0 {
		return j
	}
	return i
}

// Field splits a non-empty line as the Standard does: a line starting
// with ':' is a comment (value is the rest, without the colon, and one
// leading space removed as tinysse's tests and the load tool read it);
// otherwise name is up to the first ':' and value after it, one leading
// space removed, or the whole line is the name and value is empty.
func Field(line []byte) (name, value []byte, comment bool) {
	if len(line) > 0 && line[0] == ':' {
		return nil, bytes.TrimPrefix(line[1:], []byte(" ")), true
	}
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		return line[:i], bytes.TrimPrefix(line[i+1:], []byte(" ")), false
	}
	return line, nil, false
}
