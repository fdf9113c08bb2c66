package transport

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/jsonobj"
	"github.com/valyala/fasthttp"
)

// The server API (Config.APIPath; described in docs/api.yaml): what the
// server holds, read per node.
//
//	GET  topics      topics: subscribers, history held, publish rate, last id
//	GET  history     a topic's messages after an id or cursor, or the newest
//	GET  presence    a topic's (or every) subscribers, a page at a time
//	POST disconnect  end a subscriber's stream, or every stream of a topic
//	POST publish     the publish handler itself, as POST {pub-path}
//
// Every answer is JSON, errors {"error": "..."}. Pages hold at most
// apiMaxLimit items and carry an opaque next_cursor. Requests run on
// fasthttp's workers; what they read of the engine is documented in
// engine/inspect.go (no publish waits for them; a shard's lock is held
// for a walk of its subscribers, never across I/O), and Lua keys are read
// on each subscriber's VM (Config.APIKeys).

// Page bounds of the API.
const (
	apiDefaultLimit = 100
	apiMaxLimit     = 1000
	// apiMaxRetry bounds the retry hint of a disconnect: a day.
	apiMaxRetry = 24 * time.Hour
)

// StoredHistory is a run of a topic's messages read beyond the rings
// (Config.APIHistory; the same fields as cluster.HistoryPage).
type StoredHistory struct {
	Messages []*engine.Message // with Seq set, oldest first
	Next     uint64            // read up to this Seq: the cursor to go on from
	More     bool              // more messages may follow Next
	Gap      bool              // some messages after the one asked from are no longer kept
}

// SubscriberKeys are the keys hooks attached to one subscriber
// (Config.APIKeys; the same fields as lua.SubKeys).
type SubscriberKeys struct {
	Values    map[string]any
	Truncated bool
}

// api serves Config.APIPath.
type api struct {
	s      *Server
	prefix string // APIPath, ending in "/"
	// rates is the base the publish rates are measured from: replaced
	// whole by sampleRates (one goroutine), read by any request.
	rates atomic.Pointer[rateBase]
	stop  chan struct{} // closed by Shutdown: ends sampleRates
}

func newAPI(s *Server) *api {
	a := &api{s: s, prefix: s.cfg.APIPath, stop: make(chan struct{})}
	a.rates.Store(&rateBase{newest: &rateSample{at: time.Now()}})
	return a
}

// handle serves one API request; s.guard has checked admin rights.
func (a *api) handle(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set("Cache-Control", "no-store")
	if a.s.cfg.Auth == nil && !ctx.RemoteIP().IsLoopback() {
		// Nothing protects the API: it answers this machine only.
		writeError(ctx, fasthttp.StatusForbidden, "the server API answers loopback clients only unless an admin token or JWT keys protect it")
		return
	}
	name := strings.TrimPrefix(string(ctx.Path()), a.prefix)
	method := "GET"
	switch name {
	case "disconnect", "publish":
		method = "POST"
	case "topics", "history", "presence":
	default:
		writeError(ctx, fasthttp.StatusNotFound, "no such API endpoint: try topics, history, presence, disconnect or publish")
		return
	}
	if string(ctx.Method()) != method {
		ctx.Response.Header.Set("Allow", method+", OPTIONS")
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed: "+name+" takes "+method)
		return
	}
	switch name {
	case "topics":
		a.topics(ctx)
	case "history":
		a.history(ctx)
	case "presence":
		a.presence(ctx)
	case "disconnect":
		a.disconnect(ctx)
	case "publish":
		if ctx.Request.Header.ContentLength() <= 0 {
			a.s.chunked.take(&ctx.Request.Header) // its body was read
		}
		a.s.publish(ctx) // the same handler as POST {pub-path}
		a.s.countPublish(ctx)
	}
}

// writeJSON answers 200 with v in JSON.
func writeJSON(ctx *fasthttp.RequestCtx, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(ctx, fasthttp.StatusInternalServerError, "encoding the answer: "+err.Error())
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// limit reads ?limit= (default apiDefaultLimit, 1..apiMaxLimit).
func limit(ctx *fasthttp.RequestCtx) (int, error) {
	v, has, err := oneParam(ctx, "limit")
	if err != nil {
		return 0, err
	}
	if !has {
		return apiDefaultLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > apiMaxLimit {
		return 0, fmt.Errorf("limit must be a whole number from 1 to %d", apiMaxLimit)
	}
	return n, nil
}

// oneParam reads a query parameter given at most once.
func oneParam(ctx *fasthttp.RequestCtx, name string) (v string, has bool, err error) {
	vs := ctx.QueryArgs().PeekMulti(name)
	switch len(vs) {
	case 0:
		return "", false, nil
	case 1:
		return string(vs[0]), true, nil
	}
	return "", false, fmt.Errorf("%s is given more than once", name)
}

// topicParam reads ?topic=, checked as a subscription's topic is.
func topicParam(ctx *fasthttp.RequestCtx) (string, bool, error) {
	t, has, err := oneParam(ctx, "topic")
	if err == nil && has {
		err = checkTopics([]string{t})
	}
	return t, has, err
}

// seqCursor reads a cursor that is a number (a Seq or a subscriber id).
func seqCursor(ctx *fasthttp.RequestCtx) (uint64, bool, error) {
	v, has, err := oneParam(ctx, "cursor")
	if err != nil || !has {
		return 0, false, err
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, false, errors.New("bad cursor: pass back a next_cursor this endpoint gave")
	}
	return n, true, nil
}

func cursorOf(n uint64) string { return strconv.FormatUint(n, 10) }

// Topic cursors carry a name, which may be anything: base64url of a tag
// and the name, so that the default topic "" has a cursor too. The tag
// says whether the page ended with a topic or with a pattern, which may
// share a topic's name.
const (
	topicCursorTag   = "t:"
	patternCursorTag = "p:"
)

func topicCursor(name string, pattern bool) string {
	tag := topicCursorTag
	if pattern {
		tag = patternCursorTag
	}
	return base64.RawURLEncoding.EncodeToString([]byte(tag + name))
}

func parseTopicCursor(c string) (name string, pattern bool, err error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	switch {
	case err != nil:
	case strings.HasPrefix(string(b), topicCursorTag):
		return string(b[len(topicCursorTag):]), false, nil
	case strings.HasPrefix(string(b), patternCursorTag):
		return string(b[len(patternCursorTag):]), true, nil
	}
	return "", false, errors.New("bad cursor: pass back a next_cursor this endpoint gave")
}

// apiTopic is one topic in GET topics.
type apiTopic struct {
	Name        string  `json:"name"`
	Subscribers int64   `json:"subscribers"`
	Messages    int     `json:"messages"`
	Bytes       int64   `json:"bytes"`
	Published   uint64  `json:"published"`
	PublishRate float64 `json:"publish_rate"`
	LastID      string  `json:"last_id,omitempty"`
	LastCursor  string  `json:"last_cursor,omitempty"`
	Pattern     bool    `json:"pattern,omitempty"`
}

type apiTopics struct {
	Topics     []apiTopic `json:"topics"`
	Total      int        `json:"total"`
	NextCursor string     `json:"next_cursor,omitempty"`
}

// topics answers GET topics?limit=N&cursor=C: the topics this node holds,
// in name order.
func (a *api) topics(ctx *fasthttp.RequestCtx) {
	n, err := limit(ctx)
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	c, has, err := oneParam(ctx, "cursor")
	after, afterPattern := "", false
	if err == nil && has {
		after, afterPattern, err = parseTopicCursor(c)
	}
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	page, more, total := a.s.eng.TopicPageFrom(after, afterPattern, !has, n)
	base, now := a.rates.Load(), time.Now()
	out := apiTopics{Topics: make([]apiTopic, len(page)), Total: total}
	for i, t := range page {
		out.Topics[i] = apiTopic{
			Name: t.Name, Subscribers: t.Subscribers, Messages: t.Messages, Bytes: t.Bytes,
			Published: t.Published, PublishRate: base.rate(t.Name, t.Published, now, t.Pattern), LastID: t.LastID,
			Pattern: t.Pattern,
		}
		if t.LastSeq != 0 {
			out.Topics[i].LastCursor = cursorOf(t.LastSeq)
		}
	}
	if more {
		last := page[len(page)-1]
		out.NextCursor = topicCursor(last.Name, last.Pattern)
	}
	writeJSON(ctx, out)
}

// apiMessage is one message in GET history.
type apiMessage struct {
	ID       string   `json:"id,omitempty"`
	Event    string   `json:"event,omitempty"`
	Data     *string  `json:"data,omitempty"`
	Comments []string `json:"comments,omitempty"`
	Topics   []string `json:"topics"`
	Cursor   string   `json:"cursor"`
}

type apiHistory struct {
	Topic      string       `json:"topic"`
	Messages   []apiMessage `json:"messages"`
	NextCursor string       `json:"next_cursor"`
	More       bool         `json:"more"`
	Gap        bool         `json:"gap"`
	Source     string       `json:"source"`
}

// history answers GET history?topic=T&since=ID|cursor=C&limit=N: the
// messages after the one with id ID (or after cursor C), or the newest N;
// from the ring, or beyond it from Config.APIHistory (cluster mode).
func (a *api) history(ctx *fasthttp.RequestCtx) {
	n, err := limit(ctx)
	var topic, since string
	var hasSince, hasCursor bool
	var after uint64
	if err == nil {
		topic, _, err = topicParam(ctx)
	}
	if err == nil {
		since, hasSince, err = oneParam(ctx, "since")
	}
	if err == nil {
		after, hasCursor, err = seqCursor(ctx)
	}
	if err == nil && hasSince && hasCursor {
		err = errors.New("give since or cursor, not both")
	}
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	eng := a.s.eng
	out := apiHistory{Topic: topic, Source: "ring"}
	var msgs []*engine.Message
	switch {
	case !hasSince && !hasCursor:
		hr := eng.Newest(topic, n)
		msgs, out.More = hr.Messages, hr.More
		out.NextCursor = cursorOf(eng.LastSeq()) // nothing yet: only what comes next
	case hasSince:
		seq, found := eng.SeqOfID(topic, since)
		if !found {
			num, nerr := strconv.ParseUint(since, 10, 64)
			if a.s.cfg.APIHistory != nil && eng.Config().AutoID && nerr == nil {
				// An auto id is the Seq: the stream has what followed it.
				seq, found = num, true
			}
		}
		if !found {
			out.Gap = true // unknown id: everything held, as a replay gap
		}
		if msgs, err = a.after(&out, topic, seq, n); err != nil {
			a.unavailable(ctx, err)
			return
		}
	default:
		if msgs, err = a.after(&out, topic, after, n); err != nil {
			a.unavailable(ctx, err)
			return
		}
	}
	out.Messages = make([]apiMessage, len(msgs))
	autoID := eng.Config().AutoID
	for i, m := range msgs {
		am := apiMessage{ID: m.ID, Event: m.Event, Comments: m.Comments, Topics: m.Topics, Cursor: cursorOf(m.Seq)}
		if am.ID == "" && autoID && out.Source == "stream" {
			am.ID = cursorOf(m.Seq) // as the engine gives it on apply
		}
		if m.HasData {
			d := m.Data
			am.Data = &d
		}
		if len(am.Topics) == 0 {
			am.Topics = []string{""}
		}
		out.Messages[i] = am
	}
	if len(msgs) > 0 && out.Source == "ring" {
		out.NextCursor = cursorOf(msgs[len(msgs)-1].Seq)
	}
	writeJSON(ctx, out)
}

// after reads up to n messages of topic after Seq after into out (More,
// Gap, Source, NextCursor): from the ring when it holds all of them, else
// from Config.APIHistory when set, else from the ring with Gap set.
func (a *api) after(out *apiHistory, topic string, after uint64, n int) ([]*engine.Message, error) {
	eng := a.s.eng
	hr := eng.History(topic, after, n)
	// The ring holds every message of the topic after `after` when its
	// oldest is at most after+1, or when it never lost one (on one node:
	// in cluster mode the node's rings start when it does).
	covered := hr.Oldest != 0 && hr.Oldest <= after+1
	stored := a.s.cfg.APIHistory != nil
	if !covered && (!stored && !hr.Lost || stored && after >= eng.LastSeq()) {
		covered = true
	}
	if covered || !stored {
		out.Gap = out.Gap || !covered
		out.More = hr.More
		out.NextCursor = cursorOf(after)
		return hr.Messages, nil
	}
	page, err := a.s.cfg.APIHistory(topic, after, n)
	if err != nil {
		return nil, err
	}
	out.Source = "stream"
	out.Gap = out.Gap || page.Gap
	out.More = page.More
	out.NextCursor = cursorOf(page.Next)
	return page.Messages, nil
}

func (a *api) unavailable(ctx *fasthttp.RequestCtx, err error) {
	writeError(ctx, fasthttp.StatusServiceUnavailable, "the stored history could not be read: "+err.Error())
}

// apiSubscriber is one subscriber in GET presence.
type apiSubscriber struct {
	ID            uint64         `json:"id"`
	Remote        string         `json:"remote"`
	ConnectedAt   string         `json:"connected_at"`
	Topics        []string       `json:"topics"`
	Keys          map[string]any `json:"keys,omitempty"`
	KeysTruncated bool           `json:"keys_truncated,omitempty"`
}

type apiPresence struct {
	Topic       *string         `json:"topic,omitempty"`
	Count       int64           `json:"count"`
	Subscribers []apiSubscriber `json:"subscribers"`
	NextCursor  string          `json:"next_cursor,omitempty"`
}

// presence answers GET presence?topic=T&cursor=C&limit=N: how many
// subscribers the topic has on this node (every subscriber without
// topic) and a page of them in id order.
func (a *api) presence(ctx *fasthttp.RequestCtx) {
	n, err := limit(ctx)
	var topic string
	var hasTopic bool
	var after uint64
	if err == nil {
		topic, hasTopic, err = topicParam(ctx)
	}
	if err == nil {
		after, _, err = seqCursor(ctx)
	}
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	page, more, total := a.s.eng.Presence(topic, !hasTopic, after, n)
	out := apiPresence{Count: total, Subscribers: make([]apiSubscriber, len(page))}
	if hasTopic {
		out.Topic = &topic
	}
	var keys []SubscriberKeys
	if a.s.cfg.APIKeys != nil && len(page) > 0 {
		keys = a.s.cfg.APIKeys(page) // after the shard locks are let go
	}
	for i, sub := range page {
		as := apiSubscriber{ID: sub.ID, ConnectedAt: sub.Start.UTC().Format(time.RFC3339Nano), Topics: sub.Topics}
		if addr := sub.RemoteAddr(); addr != nil {
			as.Remote = addr.String()
		}
		if len(as.Topics) == 0 {
			as.Topics = []string{""}
		}
		if i < len(keys) {
			as.Keys, as.KeysTruncated = keys[i].Values, keys[i].Truncated
		}
		out.Subscribers[i] = as
	}
	if more {
		out.NextCursor = cursorOf(page[len(page)-1].ID)
	}
	writeJSON(ctx, out)
}

// disconnect answers POST disconnect with {"subscriber": ID} or
// {"topic": T}, and an optional "retry" hint in milliseconds: the
// streams end with ": disconnected" (and "retry: N").
func (a *api) disconnect(ctx *fasthttp.RequestCtx) {
	if mediaType(ctx.Request.Header.ContentType()) != "application/json" {
		writeError(ctx, fasthttp.StatusUnsupportedMediaType, "send application/json")
		return
	}
	var (
		sub     *uint64
		topic   *string
		retry   *int64
		unknown string
	)
	err := jsonobj.Decode(ctx.PostBody(), func(name []byte) any {
		switch string(name) {
		case "subscriber":
			return &sub
		case "topic":
			return &topic
		case "retry":
			return &retry
		}
		if unknown == "" {
			unknown = string(name)
		}
		return nil
	})
	var field *jsonobj.FieldError
	switch {
	case errors.As(err, &field) && field.Name == "topic":
		err = errors.New("topic must be a string")
	case errors.As(err, &field):
		err = fmt.Errorf("%s must be a whole number, not negative", field.Name)
	case err != nil:
		err = jsonError(err)
	case unknown != "":
		err = fmt.Errorf("unknown key %q: give subscriber or topic, and optionally retry", unknown)
	case (sub == nil) == (topic == nil):
		err = errors.New("give one of subscriber (an id from presence) or topic")
	case retry != nil && (*retry < 0 || *retry > apiMaxRetry.Milliseconds()):
		err = fmt.Errorf("retry must be from 0 to %d milliseconds", apiMaxRetry.Milliseconds())
	case topic != nil:
		err = checkTopics([]string{*topic})
	}
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	hint := time.Duration(-1) // no retry line
	if retry != nil {
		hint = time.Duration(*retry) * time.Millisecond
	}
	n := 0
	if topic != nil {
		n = a.s.eng.DisconnectTopic(*topic, hint)
	} else if a.s.eng.Disconnect(*sub, hint) {
		n = 1
	} else {
		writeError(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no subscriber %d on this node", *sub))
		return
	}
	writeJSON(ctx, struct {
		Disconnected int `json:"disconnected"`
	}{n})
}

// rateSample is how many messages each topic had been published at one
// moment. Immutable once made.
type rateSample struct {
	at        time.Time
	published map[string]uint64 // by topic
	patterns  map[string]uint64 // by pattern (a topic may be named like one)
}

// count is name's count in s, and whether s has it.
func (s *rateSample) count(name string, pattern bool) (uint64, bool) {
	if pattern {
		n, ok := s.patterns[name]
		return n, ok
	}
	n, ok := s.published[name]
	return n, ok
}

// rateBase is what publish rates are measured against: the older of the
// last two samples. Immutable once stored in api.rates.
type rateBase struct {
	base, newest *rateSample
}

// rate is topic name's (or pattern name's) messages per second since
// the base sample. One not in that sample was made since, and every
// message it counts came after it (a pattern does not count its
// backfill: Engine.TopicPage).
func (b *rateBase) rate(name string, published uint64, now time.Time, pattern bool) float64 {
	s := b.base
	if s == nil {
		s = b.newest // no two samples yet: since the server started
	}
	before, _ := s.count(name, pattern)
	secs := now.Sub(s.at).Seconds()
	if secs <= 0 {
		return 0
	}
	if before > published {
		before = 0 // the topic was removed and made again since
	}
	r := float64(published-before) / secs
	return math.Round(r*1000) / 1000
}

// sampleRates takes a sample of every topic's count each window until
// stop is closed, so that a rate covers the last one to two windows.
func (a *api) sampleRates(window time.Duration) {
	t := time.NewTicker(window)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case now := <-t.C:
			st := a.s.eng.Stats()
			s := &rateSample{at: now, published: make(map[string]uint64, len(st.Topics)), patterns: make(map[string]uint64, len(st.Patterns))}
			for _, ti := range st.Topics {
				s.published[ti.Name] = ti.Published
			}
			for _, ti := range st.Patterns {
				s.patterns[ti.Name] = ti.Published
			}
			a.rates.Store(&rateBase{base: a.rates.Load().newest, newest: s})
		}
	}
}
