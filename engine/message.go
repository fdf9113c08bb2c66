package engine

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxIDLen is the longest id accepted: a browser sends the id back as the
// Last-Event-ID request header, which must stay readable.
const MaxIDLen = 256

// ErrInvalid is wrapped by every validation error of a message.
var ErrInvalid = errors.New("invalid message")

// Message is one published message. The fields a publisher sets are ID,
// Event, Data (with HasData) and Comments; the engine sets Seq, Topics and
// Frame. Once published a Message is immutable and shared by every
// subscriber that reads it.
type Message struct {
	ID       string
	Event    string
	Data     string
	HasData  bool // Data was given, even if empty: an empty data line still dispatches an event
	Comments []string
	Topics   []string // topics it goes to; empty means the default topic ""

	// Seq is the engine-wide publish number, assigned under the publish
	// lock: increasing in every topic, never reused in one process.
	Seq uint64
	// Frame is the encoded SSE frame, built once per message.
	Frame []byte
	// local marks a PublishLocal message, which shares its Seq with the
	// message published before it; set under the publish lock.
	local bool
	// State is opaque to the engine: a hook's per-message data (the Lua pub table).
	State any
	// NoHook delivers the message without the Message hook: the server's
	// own messages (the dashboard's stats), which no script published and
	// whose readers the Subscribe hook has already admitted.
	NoHook bool

	// held is its place in the history budget (history.go), under the
	// publish lock only.
	held held
}

// Empty reports whether m carries none of id, event, data and comment.
func (m *Message) Empty() bool {
	return m.ID == "" && m.Event == "" && !m.HasData && len(m.Comments) == 0
}

// Validate refuses what could not be written as one SSE message: a line
// break or NUL in id or event (it would inject fields), invalid UTF-8
// anywhere, an id over MaxIDLen bytes, and an empty message.
func (m *Message) Validate() error {
	if m.Empty() {
		return fmt.Errorf("%w: message has no id, event, data or comment", ErrInvalid)
	}
	if len(m.ID) > MaxIDLen {
		return fmt.Errorf("%w: id is longer than %d bytes", ErrInvalid, MaxIDLen)
	}
	if err := checkField("id", m.ID, true); err != nil {
		return err
	}
	if err := checkField("event", m.Event, true); err != nil {
		return err
	}
	if err := checkField("data", m.Data, false); err != nil {
		return err
	}
	for _, c := range m.Comments {
		if err := checkField("comment", c, false); err != nil {
			return err
		}
	}
	return nil
}

func checkField(name, v string, singleLine bool) error {
	if !utf8.ValidString(v) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, name)
	}
	if singleLine && strings.ContainsAny(v, "\r\n\x00") {
		return fmt.Errorf("%w: %s contains a line break or NUL", ErrInvalid, name)
	}
	return nil
}

// AppendFrame appends m's SSE wire form to dst: id, event, one data line per
// line of Data, one comment line per line of each comment, blank line. It is
// the only place a message is encoded. m must have passed Validate.
func AppendFrame(dst []byte, m *Message) []byte {
	if m.ID != "" {
		dst = append(dst, "id: "...)
		dst = append(dst, m.ID...)
		dst = append(dst, '\n')
	}
	if m.Event != "" {
		dst = append(dst, "event: "...)
		dst = append(dst, m.Event...)
		dst = append(dst, '\n')
	}
	if m.HasData {
		dst = appendLines(dst, "data: ", m.Data)
	}
	for _, c := range m.Comments {
		dst = appendLines(dst, ": ", c)
	}
	return append(dst, '\n')
}

// appendLines writes prefix+line+"\n" for every line of v, where a line ends
// at "\r\n", "\r" or "\n" (the HTML Standard's three line endings).
func appendLines(dst []byte, prefix, v string) []byte {
	for {
		i := strings.IndexAny(v, "\r\n")
		if i < 0 {
			dst = append(dst, prefix...)
			dst = append(dst, v...)
			return append(dst, '\n')
		}
		dst = append(dst, prefix...)
		dst = append(dst, v[:i]...)
		dst = append(dst, '\n')
		if v[i] == '\r' && i+1 < len(v) && v[i+1] == '\n' {
			i++
		}
		v = v[i+1:]
	}
}

// AppendComment appends a comment frame (": text" lines and a blank line).
func AppendComment(dst []byte, text string) []byte {
	return append(appendLines(dst, ": ", text), '\n')
}

// AppendRetry appends a comment and a retry field as one frame.
func AppendRetry(dst []byte, comment string, retryMS int64) []byte {
	dst = appendLines(dst, ": ", comment)
	dst = append(dst, "retry: "...)
	dst = strconv.AppendInt(dst, retryMS, 10)
	return append(dst, "\n\n"...)
}
