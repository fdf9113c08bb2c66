package engine

import (
	"errors"
	"strings"
)

// InternalPrefix starts the names of the server's own topics (the
// dashboard's "_tinysse.stats"). No wildcard matches them: only a pattern
// that names such a topic exactly does.
const InternalPrefix = "_tinysse."

// Pattern is a set of topics, written with the syntax shared by JWT claims
// and pattern subscriptions:
//
//   - a topic name matches that topic only ("news", "" the default stream);
//   - segments are separated by "/"; a segment "*" matches exactly one
//     segment ("news/*" matches "news/a", not "news", "news/a/b" or "newsx");
//   - a last segment "**" matches one or more segments ("news/**" matches
//     "news/a" and "news/a/b", not "news");
//   - "*" (or "**") alone matches every topic, the default stream included.
//
// Wildcards never match an internal topic (InternalPrefix). A "*" inside a
// segment ("a*b") is refused by ParsePattern, so that no pattern means
// something a reader would not guess. The zero Pattern matches the default
// stream "" only.
type Pattern struct {
	src  string
	wild bool // src has a "*" or "**" segment, or is the match-all pattern
	all  bool // "*" or "**" alone
}

// ErrPattern is wrapped by ParsePattern's errors.
var ErrPattern = errors.New("engine: bad topic pattern")

// ParsePattern parses s. It refuses a "*" that is part of a segment and a
// "**" that is not the last segment.
func ParsePattern(s string) (Pattern, error) {
	if s == "*" || s == "**" {
		return Pattern{src: s, wild: true, all: true}, nil
	}
	p := Pattern{src: s}
	if !strings.Contains(s, "*") {
		return p, nil
	}
	for rest := s; ; {
		seg, tail, more := strings.Cut(rest, "/")
		switch {
		case seg == "*":
			p.wild = true
		case seg == "**":
			if more {
				return Pattern{}, errors.Join(ErrPattern, errors.New(`"**" must be the last segment`))
			}
			p.wild = true
		case strings.Contains(seg, "*"):
			return Pattern{}, errors.Join(ErrPattern, errors.New(`"*" must be a whole segment`))
		}
		if !more {
			return p, nil
		}
		rest = tail
	}
}

// MustPattern is ParsePattern for patterns known to be valid; it panics on
// an error.
func MustPattern(s string) Pattern {
	p, err := ParsePattern(s)
	if err != nil {
		panic(err)
	}
	return p
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.src }

// Exact says whether p is a single topic name (no wildcard); the topic is
// then p.String().
func (p Pattern) Exact() bool { return !p.wild }

// Match says whether topic is in p. It does not allocate.
func (p Pattern) Match(topic string) bool {
	if !p.wild {
		return topic == p.src
	}
	if strings.HasPrefix(topic, InternalPrefix) {
		return false
	}
	if p.all {
		return true
	}
	pat := p.src
	for {
		pseg, prest, pmore := strings.Cut(pat, "/")
		if pseg == "**" {
			return true // topic has at least this segment left
		}
		tseg, trest, tmore := strings.Cut(topic, "/")
		if pseg != "*" && pseg != tseg {
			return false
		}
		if !pmore || !tmore {
			return pmore == tmore
		}
		pat, topic = prest, trest
	}
}

// Covers says whether every topic q matches is also matched by p: a JWT
// claim p allows a subscription to q.
func (p Pattern) Covers(q Pattern) bool {
	if !q.wild {
		return p.Match(q.src)
	}
	if p.all {
		return true // q's wildcards match no internal topic either
	}
	if q.all || !p.wild {
		return false
	}
	pat, sub := p.src, q.src
	for {
		pseg, prest, pmore := strings.Cut(pat, "/")
		qseg, qrest, qmore := strings.Cut(sub, "/")
		switch {
		case pseg == "**":
			return true // q has at least one segment here, and p takes them all
		case qseg == "**":
			return false // q takes any number of segments, p exactly one more
		case pseg == "*":
			// matches q's literal or "*" alike
		case pseg != qseg || qseg == "*":
			return false
		}
		if !pmore || !qmore {
			return pmore == qmore
		}
		pat, sub = prest, qrest
	}
}
