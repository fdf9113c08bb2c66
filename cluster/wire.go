package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/jsonobj"
)

// Subjects. A message for one topic goes to <stream>.t.<token>, where token
// is the topic escaped by subjectToken; a message for several topics goes
// once to <stream>.m, with its topics in the payload, so that a subscriber
// of several of them gets it once and every node sees it at one stream
// sequence. Replaying topics a and b filters on <stream>.t.<a>,
// <stream>.t.<b> and <stream>.m, and drops the .m messages for neither.

// subjectToken escapes topic into one subject token: ASCII letters, digits,
// '-' and '_' stand for themselves; every other byte (the token separator
// '.', the wildcards '*' and '>', spaces, '~', UTF-8) is '~' and two
// upper-case hex digits. The default topic "" is "~", which no escaped
// non-empty topic can be. The mapping is one-to-one, so topicOfToken
// reverses it.
func subjectToken(topic string) string {
	if topic == "" {
		return "~"
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(topic))
	for i := 0; i < len(topic); i++ {
		c := topic[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('~')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// topicOfToken reverses subjectToken.
func topicOfToken(tok string) (string, error) {
	if tok == "~" {
		return "", nil
	}
	if tok == "" {
		return "", errors.New("cluster: empty subject token")
	}
	var b strings.Builder
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c != '~' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(tok) {
			return "", fmt.Errorf("cluster: bad escape in subject token %q", tok)
		}
		hi, lo := unhex(tok[i+1]), unhex(tok[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("cluster: bad escape in subject token %q", tok)
		}
		b.WriteByte(byte(hi<<4 | lo))
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// subject is where m goes in stream.
func subject(stream string, topics []string) string {
	switch len(topics) {
	case 0:
		return stream + ".t.~"
	case 1:
		return stream + ".t." + subjectToken(topics[0])
	}
	return stream + ".m"
}

// wireMessage is a message's payload in JetStream: what a publisher set,
// and its topics when there are several (one topic is in the subject). The
// id given by --auto-id is not in it: it is the stream sequence, known to
// every node. The publish hook's own additions to pub
// (engine.Message.State) stay on the node that ran the hook.
type wireMessage struct {
	ID       string   `json:"id,omitempty"`
	Event    string   `json:"event,omitempty"`
	Data     *string  `json:"data,omitempty"`
	Comments []string `json:"comments,omitempty"`
	Topics   []string `json:"topics,omitempty"`
	// State is Config.EncodeState's encoding of m.State, if any.
	State json.RawMessage `json:"state,omitempty"`
}

func encode(m *engine.Message, state []byte) ([]byte, error) {
	w := wireMessage{ID: m.ID, Event: m.Event, Comments: m.Comments, State: state}
	if len(m.Topics) > 1 {
		w.Topics = m.Topics
	}
	if m.HasData {
		w.Data = &m.Data
	}
	return json.Marshal(&w)
}

// decode reads a message stored at subj in stream. Anything that can
// publish to NATS may write there (nats pub tinysse.t.news '{"data":"hi"}'),
// so the payload is checked like an HTTP publish by the engine later, and
// read by the HTTP publish's rule: keys matched exactly, each given once
// (jsonobj), others ignored.
func decode(stream, subj string, b []byte) (*engine.Message, json.RawMessage, error) {
	var w wireMessage
	err := jsonobj.Decode(b, func(name []byte) any {
		switch string(name) {
		case "id":
			return &w.ID
		case "event":
			return &w.Event
		case "data":
			return &w.Data
		case "comments": // a null element refused, as the HTTP publish refuses it
			return (*jsonobj.StringList)(&w.Comments)
		case "topics":
			return (*jsonobj.StringList)(&w.Topics)
		case "state":
			return &w.State
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: undecodable message on %s: %w", subj, err)
	}
	m := &engine.Message{ID: w.ID, Event: w.Event, Comments: w.Comments}
	switch rest, _ := strings.CutPrefix(subj, stream+"."); {
	case rest == "m":
		if len(w.Topics) < 2 {
			return nil, nil, fmt.Errorf("cluster: message on %s names fewer than two topics", subj)
		}
		m.Topics = w.Topics
	case strings.HasPrefix(rest, "t.") && !strings.Contains(rest[2:], "."):
		topic, err := topicOfToken(rest[2:])
		if err != nil {
			return nil, nil, err
		}
		if topic != "" {
			m.Topics = []string{topic}
		}
	default:
		return nil, nil, fmt.Errorf("cluster: message on unknown subject %s", subj)
	}
	if w.Data != nil {
		m.Data, m.HasData = *w.Data, true
	}
	return m, w.State, nil
}

// decode reads a stream message, with its State when Config.DecodeState
// is set.
func (n *Node) decode(msg jetstream.Msg) (*engine.Message, error) {
	m, state, err := decode(n.cfg.Stream, msg.Subject(), msg.Data())
	if err != nil {
		return nil, err
	}
	if len(state) > 0 && n.cfg.DecodeState != nil {
		if err := n.cfg.DecodeState(m, state); err != nil {
			// The message still goes out; its hooks see no request.
			n.cfg.Logger.Warn("cluster: message state skipped", "subject", msg.Subject(), "err", err)
		}
	}
	return m, nil
}
