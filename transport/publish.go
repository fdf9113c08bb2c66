package transport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"unicode/utf8"

	"github.com/tinysse/tinysse/engine"
	"github.com/valyala/fasthttp"
)

// maxTopicLen bounds a topic name; maxTopics the topics of one request.
const (
	maxTopicLen = 256
	maxTopics   = 64
)

// publish handles POST {pub-path}.
func (s *Server) publish(ctx *fasthttp.RequestCtx) {
	if s.closing.Load() || s.eng.Closing() {
		writeError(ctx, fasthttp.StatusServiceUnavailable, "server is shutting down")
		return
	}
	m, status, err := decodePublish(ctx.Request.Header.ContentType(), ctx.PostBody())
	if err != nil {
		writeError(ctx, status, err.Error())
		return
	}
	m.Topics = uniqueTopics(append(m.Topics, queryTopics(ctx)...))
	if err := checkTopics(m.Topics); err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	if err := m.Validate(); err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	if h := s.hooks.Publish; h != nil {
		accept, err := h(newRequest(ctx), m)
		switch {
		case errors.Is(err, engine.ErrInvalid):
			writeError(ctx, fasthttp.StatusBadRequest, "publish hook returned a bad message: "+err.Error())
			return
		case err != nil:
			writeError(ctx, fasthttp.StatusInternalServerError, hookFailure("publish", err)) // the runtime logged it with file and line
			return
		case !accept:
			writeError(ctx, fasthttp.StatusForbidden, "message rejected by script")
			return
		}
		m.Topics = uniqueTopics(m.Topics)
		if err := checkTopics(m.Topics); err != nil {
			writeError(ctx, fasthttp.StatusBadRequest, "publish hook set bad topics: "+err.Error())
			return
		}
	}
	publish := s.eng.Publish
	if s.cfg.Publish != nil {
		publish = s.cfg.Publish
	}
	res, err := publish(m)
	switch {
	case errors.Is(err, engine.ErrInvalid):
		writeError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	case errors.Is(err, engine.ErrTooManyTopics):
		ctx.SetUserValue(rejectKey, RejectLimit)
		writeError(ctx, fasthttp.StatusServiceUnavailable, "server is at its topic limit: publish to an existing topic")
		return
	case errors.Is(err, engine.ErrClosed):
		writeError(ctx, fasthttp.StatusServiceUnavailable, "server is shutting down")
		return
	case err != nil && s.cfg.Publish != nil:
		ctx.SetUserValue(rejectKey, RejectUnavailable)
		writeError(ctx, fasthttp.StatusServiceUnavailable, err.Error())
		return
	case err != nil:
		writeError(ctx, fasthttp.StatusInternalServerError, err.Error())
		return
	}
	ctx.SetStatusCode(fasthttp.StatusAccepted)
	ctx.SetContentType("application/json")
	var buf [64]byte
	b := append(buf[:0], `{"queued":`...)
	b = strconv.AppendInt(b, int64(res.Queued), 10)
	b = append(b, `,"subscribers":`...)
	b = strconv.AppendInt(b, int64(res.Subscribers), 10)
	ctx.SetBody(append(b, '}'))
}

// decodePublish turns a publish body into a Message, or says which status
// and why it is refused.
func decodePublish(contentType, body []byte) (*engine.Message, int, error) {
	switch mediaType(contentType) {
	case "application/json":
		m, err := decodeJSON(body)
		if err != nil {
			return nil, fasthttp.StatusBadRequest, err
		}
		return m, 0, nil
	case "application/x-www-form-urlencoded":
		m, err := decodeForm(body)
		if err != nil {
			return nil, fasthttp.StatusBadRequest, err
		}
		return m, 0, nil
	case "":
		return nil, fasthttp.StatusUnsupportedMediaType, errors.New("content type missing: send application/json or application/x-www-form-urlencoded")
	default:
		return nil, fasthttp.StatusUnsupportedMediaType, errors.New("unsupported content type: send application/json or application/x-www-form-urlencoded")
	}
}

// mediaType is the lower-case type/subtype of a Content-Type value.
func mediaType(ct []byte) string {
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return string(bytes.ToLower(bytes.TrimSpace(ct)))
}

// stringList accepts a JSON string or a list of strings (null: none).
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*l = []string{s}
		return nil
	}
	var ss []string
	if err := json.Unmarshal(b, &ss); err != nil {
		return errors.New("must be a string or a list of strings")
	}
	*l = ss
	return nil
}

type publishBody struct {
	ID      *string    `json:"id"`
	Event   *string    `json:"event"`
	Data    *string    `json:"data"`
	Comment stringList `json:"comment"`
	Topic   stringList `json:"topic"`
}

func decodeJSON(body []byte) (*engine.Message, error) {
	if !utf8.Valid(body) {
		return nil, errors.New("body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var b publishBody
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("malformed JSON: %s", jsonErrorText(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("malformed JSON: data after the object")
	}
	m := &engine.Message{Comments: b.Comment, Topics: b.Topic}
	if b.ID != nil {
		m.ID = *b.ID
	}
	if b.Event != nil {
		m.Event = *b.Event
	}
	if b.Data != nil {
		m.Data, m.HasData = *b.Data, true
	}
	return m, nil
}

func jsonErrorText(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return "body must be a JSON object"
		}
		return fmt.Sprintf("field %q must be a %s", te.Field, fieldKind(te.Field))
	}
	if errors.Is(err, io.EOF) {
		return "empty body"
	}
	return err.Error()
}

func fieldKind(field string) string {
	if field == "comment" || field == "topic" {
		return "string or a list of strings"
	}
	return "string"
}

func decodeForm(body []byte) (*engine.Message, error) {
	if !utf8.Valid(body) {
		return nil, errors.New("body is not valid UTF-8")
	}
	v, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("malformed form: %v", err)
	}
	m := &engine.Message{Comments: v["comment"], Topics: v["topic"]}
	if x, ok := v["id"]; ok {
		m.ID = x[0]
	}
	if x, ok := v["event"]; ok {
		m.Event = x[0]
	}
	if x, ok := v["data"]; ok {
		m.Data, m.HasData = x[0], true
	}
	return m, nil
}

// queryTopics returns the request's ?topic= values.
func queryTopics(ctx *fasthttp.RequestCtx) []string {
	var ts []string
	for _, t := range ctx.QueryArgs().PeekMulti("topic") {
		ts = append(ts, string(t))
	}
	return ts
}

func checkTopics(ts []string) error {
	if len(ts) > maxTopics {
		return fmt.Errorf("more than %d topics", maxTopics)
	}
	for _, t := range ts {
		if len(t) > maxTopicLen {
			return fmt.Errorf("topic longer than %d bytes", maxTopicLen)
		}
		if !utf8.ValidString(t) {
			return errors.New("topic is not valid UTF-8")
		}
		for _, r := range t {
			if r < 0x20 || r == 0x7f {
				return errors.New("topic contains a control character")
			}
		}
	}
	return nil
}

// hookFailure is the client's error for a failed hook: "publish hook
// failed", or for a hook stopped at a script limit the limit's own words
// ("publish hook timed out: longer than --script-timeout 5s"). The
// script's messages and positions stay in the log.
func hookFailure(hook string, err error) string {
	var limit interface{ Public() string }
	if errors.Is(err, engine.ErrHookLimit) && errors.As(err, &limit) {
		return limit.Public()
	}
	return hook + " hook failed"
}
