// Package sseparse reads an event stream exactly as the HTML Standard's
// "Server-sent events" section says (9.2.6, "Interpreting an event
// stream"). It is written from the Standard, not from tinysse's encoder,
// so that tests reading the server's bytes through it judge the wire
// format by what a browser's EventSource would see.
//
// Beyond the events a browser dispatches, it keeps what a test asserts
// and a browser throws away: comments, retry fields, and each block's raw
// bytes and lines. A Parser is for one goroutine.
package sseparse

import (
	"strings"
	"unicode/utf8"
)

// Event is a dispatched event, as EventSource sees it.
type Event struct {
	Type        string // "message" when the block set no event type
	Data        string
	LastEventID string
}

// Block is what the stream carried up to and including one empty line.
type Block struct {
	Raw      string   // the bytes, line terminators included
	Lines    []string // the lines, without terminators
	Comments []string // comment lines, ':' and one leading space removed
	Retry    int64    // the retry field's value in this block; -1 if none
	Event    *Event   // nil when the block dispatched nothing
}

// Parser interprets a stream fed to it in chunks split anywhere.
type Parser struct {
	Events   []Event  // every dispatched event, oldest first
	Comments []string // every comment line, ':' and one leading space removed
	Retry    int64    // the last valid reconnection time; -1 until one is seen

	lines  Lines
	cur    Block
	blocks []Block // complete blocks not yet taken by Next

	data        strings.Builder // the data buffer
	eventType   string          // the event type buffer
	lastIDBuf   string          // the last event ID buffer
	lastEventID string          // the event source's last event ID string
}

const bom = "\uFEFF"

// New returns a parser at the start of a stream.
func New() *Parser {
	return &Parser{Retry: -1, cur: Block{Retry: -1}}
}

// Parse reads a whole stream; an unfinished block at its end is dropped,
// as the Standard says.
func Parse(s string) *Parser {
	p := New()
	p.Feed([]byte(s))
	return p
}

// LastEventID is the event source's last event ID string: what a browser
// would send as Last-Event-ID on reconnecting.
func (p *Parser) LastEventID() string { return p.lastEventID }

// Next returns the oldest complete block not yet returned, if any.
func (p *Parser) Next() (Block, bool) {
	if len(p.blocks) == 0 {
		return Block{}, false
	}
	b := p.blocks[0]
	p.blocks = p.blocks[1:]
	return b, true
}

// Feed parses the next chunk of the stream, which may end anywhere (in a
// line, in a CRLF pair, in the leading BOM).
func (p *Parser) Feed(b []byte) {
	p.lines.Feed(b, p.feedLine)
}

// feedLine takes one line from p.lines.
func (p *Parser) feedLine(line []byte, end string) {
	if line == nil { // the LF of a CRLF whose CR ended the last Feed
		p.appendRaw(end)
		return
	}
	p.cur.Raw += string(line) + end
	p.processLine(line)
}

// decode turns a line's bytes into text as the UTF-8 decode algorithm
// does, with U+FFFD for malformed bytes (Go replaces byte by byte where the
// Standard replaces maximal subparts; valid frames never show the
// difference).
func decode(line []byte) string {
	if utf8.Valid(line) {
		return string(line)
	}
	var b strings.Builder
	for _, r := range string(line) {
		b.WriteRune(r)
	}
	return b.String()
}

func (p *Parser) processLine(raw []byte) {
	if len(raw) == 0 {
		p.dispatch()
		return
	}
	p.cur.Lines = append(p.cur.Lines, decode(raw))
	// The split is made on the bytes: ':' and ' ' are ASCII, which no
	// malformed sequence decodes into.
	n, v, comment := Field(raw)
	if comment {
		c := decode(v)
		p.cur.Comments = append(p.cur.Comments, c)
		p.Comments = append(p.Comments, c)
		return
	}
	name, value := string(n), decode(v)
	switch name {
	case "event":
		p.eventType = value
	case "data":
		p.data.WriteString(value)
		p.data.WriteByte('\n')
	case "id":
		if !strings.ContainsRune(value, 0) {
			p.lastIDBuf = value
		}
	case "retry":
		if value != "" && strings.Trim(value, "0123456789") == "" {
			var n int64
			for _, d := range value {
				n = n*10 + int64(d-'0') // overflow is the user agent's business
			}
			p.Retry = n
			p.cur.Retry = n
		}
	}
	// any other field is ignored
}

// dispatch ends the current block. It sets the last event ID string, and
// carries an event only when the data buffer is not empty.
func (p *Parser) dispatch() {
	p.lastEventID = p.lastIDBuf
	if p.data.Len() > 0 {
		typ := p.eventType
		if typ == "" {
			typ = "message"
		}
		e := Event{Type: typ, Data: strings.TrimSuffix(p.data.String(), "\n"), LastEventID: p.lastEventID}
		p.Events = append(p.Events, e)
		p.cur.Event = &e
	}
	p.data.Reset()
	p.eventType = ""
	p.blocks = append(p.blocks, p.cur)
	p.cur = Block{Retry: -1}
}

// appendRaw adds the LF of a CRLF to the block its CR ended.
func (p *Parser) appendRaw(s string) {
	if p.cur.Raw == "" && len(p.blocks) > 0 {
		p.blocks[len(p.blocks)-1].Raw += s
		return
	}
	p.cur.Raw += s
}
