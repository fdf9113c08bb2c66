package transport

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"unicode/utf8"

	"github.com/tinysse/tinysse/auth"
	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/jsonobj"
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
	// The token first: a client without a good one learns nothing of the
	// rest. Its topics are checked once the body has given them.
	var grant *auth.Grant
	if s.cfg.Auth != nil {
		token, cookie := s.tokenFrom(ctx)
		if cookie && token != "" && !s.cookieOriginOK(ctx) {
			refuseAuth(ctx, &auth.Error{Status: fasthttp.StatusForbidden, Code: "invalid_request",
				Msg: "a token from a cookie publishes only from this server's origin or one --cors-allow-origin names"})
			return
		}
		g, aerr := s.cfg.Auth.Verify(token, auth.Publish)
		if aerr != nil {
			refuseAuth(ctx, aerr)
			return
		}
		grant = g
	}
	if ct, body := ctx.Request.Header.ContentType(), ctx.PostBody(); isBatch(ct, body) {
		s.publishBatch(ctx, grant, mediaType(ct), body)
		return
	}
	m, status, err := decodePublish(ctx.Request.Header.ContentType(), ctx.PostBody())
	if err != nil {
		writeError(ctx, status, err.Error())
		return
	}
	key, ok := s.idempotencyKey(ctx)
	if !ok {
		return
	}
	if !s.checkMessage(ctx, grant, m, queryTopics(ctx), "") {
		return
	}
	if h := s.hooks.Publish; h != nil {
		req := newRequest(ctx)
		if grant != nil {
			req.Claims = grant.Claims
		}
		if !s.publishHook(ctx, h, req, grant, m, "") {
			return
		}
	}
	var res engine.PublishResult
	if s.cfg.Publish != nil {
		res, err = s.cfg.Publish(m, key)
	} else {
		res, err = s.eng.Publish(m)
	}
	s.answerPublish(ctx, res, err, "")
}

// checkMessage gives m its topics and those of the query (extra), each
// once, and refuses m (400, or the token's 403) when they or the message
// will not do; prefix names m in a batch. It reports whether m may go on.
func (s *Server) checkMessage(ctx *fasthttp.RequestCtx, grant *auth.Grant, m *engine.Message, extra []string, prefix string) bool {
	m.Topics = uniqueTopics(append(m.Topics, extra...))
	if err := checkTopics(m.Topics); err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, prefix+err.Error())
		return false
	}
	if err := m.Validate(); err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, prefix+err.Error())
		return false
	}
	return grant == nil || s.allowed(ctx, grant, auth.Publish, m.Topics, prefix)
}

// checkHookTopics is checkMessage's topic check again after the publish
// hook accepted m: the topics it set, each once, must be valid, and a hook
// may narrow what the token allows, never widen it.
func (s *Server) checkHookTopics(ctx *fasthttp.RequestCtx, grant *auth.Grant, m *engine.Message, prefix string) bool {
	m.Topics = uniqueTopics(m.Topics)
	if err := checkTopics(m.Topics); err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, prefix+"publish hook set bad topics: "+err.Error())
		return false
	}
	return grant == nil || s.allowed(ctx, grant, auth.Publish, m.Topics, prefix+"the publish hook set topics the token does not allow: ")
}

// answerPublish answers a publish (or a batch: prefix names the message
// an error is about) with its result or the error's status.
func (s *Server) answerPublish(ctx *fasthttp.RequestCtx, res engine.PublishResult, err error, prefix string) {
	switch {
	case errors.Is(err, engine.ErrInvalid):
		var be *engine.BatchError
		if errors.As(err, &be) {
			err = be.Err // prefix names the message
		}
		writeError(ctx, fasthttp.StatusBadRequest, prefix+err.Error())
		return
	case errors.Is(err, engine.ErrTooLarge):
		writeError(ctx, fasthttp.StatusRequestEntityTooLarge, prefix+"message is larger than the server keeps in history (--max-history-bytes)")
		return
	case errors.Is(err, engine.ErrTooManyTopics):
		ctx.SetUserValue(rejectKey, RejectLimit)
		writeError(ctx, fasthttp.StatusServiceUnavailable, prefix+"server is at its topic limit: publish to an existing topic")
		return
	case errors.Is(err, engine.ErrClosed):
		writeError(ctx, fasthttp.StatusServiceUnavailable, "server is shutting down")
		return
	case err != nil && s.cfg.Publish != nil:
		status := fasthttp.StatusServiceUnavailable
		var sc interface{ StatusCode() int }
		if errors.As(err, &sc) {
			status = sc.StatusCode()
		}
		if status == fasthttp.StatusServiceUnavailable || status == fasthttp.StatusGatewayTimeout {
			ctx.SetUserValue(rejectKey, RejectUnavailable)
		}
		writeError(ctx, status, err.Error())
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

// idempotencyHeader names a publish, so that a retry of it is stored once
// (IETF draft-ietf-httpapi-idempotency-key-header); maxIdempotencyKey
// bounds its value.
const (
	idempotencyHeader = "Idempotency-Key"
	maxIdempotencyKey = 128
)

// idempotencyKey checks an Idempotency-Key value: absent, or 1 to
// maxIdempotencyKey printable ASCII characters (it becomes a NATS header
// value). A quoted value (the draft's structured-field string) is taken
// without its quotes.
func idempotencyKey(v []byte) (string, error) {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
		if len(v) == 0 {
			return "", errors.New("Idempotency-Key is empty")
		}
	}
	if len(v) > maxIdempotencyKey {
		return "", fmt.Errorf("Idempotency-Key is longer than %d characters", maxIdempotencyKey)
	}
	for _, c := range v {
		if c < 0x21 || c > 0x7e {
			return "", errors.New("Idempotency-Key may hold only printable ASCII characters, without spaces")
		}
	}
	return string(v), nil
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
		return nil, fasthttp.StatusUnsupportedMediaType, errors.New("content type missing: send application/json (a message or an array of them), application/x-ndjson or application/x-www-form-urlencoded")
	default:
		return nil, fasthttp.StatusUnsupportedMediaType, errors.New("unsupported content type: send application/json (a message or an array of them), application/x-ndjson or application/x-www-form-urlencoded")
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
	if s, ok := jsonobj.String(b); ok {
		*l = []string{s}
		return nil
	}
	ss, ok := jsonobj.Strings(b)
	if !ok {
		return errors.New("must be a string or a list of strings")
	}
	*l = ss
	return nil
}

// decodeJSON reads a JSON publish body. Member names are matched exactly
// and each may be given once (jsonobj): "Data" is not data, and a body
// naming data twice is refused rather than read one way here and another
// way by whatever sits in front. Other names are ignored.
func decodeJSON(body []byte) (*engine.Message, error) {
	if !utf8.Valid(body) {
		return nil, errors.New("body is not valid UTF-8")
	}
	m := &engine.Message{}
	if err := jsonobj.Decode(body, func(name []byte) any { return messageField(m, name) }); err != nil {
		return nil, jsonError(err)
	}
	return m, nil
}

// messageField is where a JSON message member named name goes (nil: an
// unknown name, ignored). None of the targets allocates: a pointer into
// m, or a value holding m alone.
func messageField(m *engine.Message, name []byte) any {
	switch string(name) {
	case "id":
		return &m.ID
	case "event":
		return &m.Event
	case "data":
		return dataField{m}
	case "comment":
		// A list of strings only: a single string is refused, as Tiny
		// SSE refuses it (its comment is a Vec<String>), so that a body
		// it answers 400 is not accepted here either.
		return (*jsonobj.StringList)(&m.Comments)
	case "topic":
		return (*stringList)(&m.Topics)
	}
	return nil
}

// dataField takes a message's data member: a string sets Data and
// HasData (an empty data line still dispatches an event); null leaves
// the message without data, as if the member were not there.
type dataField struct{ m *engine.Message }

func (f dataField) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	s, ok := jsonobj.String(b)
	if !ok {
		return errors.New("must be a string")
	}
	f.m.Data, f.m.HasData = s, true
	return nil
}

// jsonError is the client's account of why a JSON body was refused.
func jsonError(err error) error {
	var dup *jsonobj.DuplicateError
	var field *jsonobj.FieldError
	switch {
	case errors.As(err, &dup):
		return fmt.Errorf("key %q given twice", dup.Name)
	case errors.As(err, &field):
		// Well-formed JSON with a member of the wrong type: name the
		// member and what it must be, and nothing about the syntax.
		return fmt.Errorf("field %q must be a %s", field.Name, fieldKind(field.Name))
	case errors.Is(err, jsonobj.ErrEmpty):
		return errors.New("malformed JSON: empty body")
	case errors.Is(err, jsonobj.ErrNotObject):
		return errors.New("malformed JSON: body must be a JSON object")
	case errors.Is(err, jsonobj.ErrNotArray):
		return errors.New("malformed JSON: a batch must be a JSON array of objects")
	}
	return fmt.Errorf("malformed JSON: %v", err)
}

func fieldKind(field string) string {
	switch field {
	case "comment":
		return "list of strings"
	case "topic":
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
	// comment and topic are lists, given by repeating the key; the other
	// fields are single, and given twice they are refused as in JSON.
	for _, k := range [...]string{"id", "event", "data"} {
		if len(v[k]) > 1 {
			return nil, fmt.Errorf("key %q given twice", k)
		}
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

// publishHook runs the publish hook on m (a batch's message, whose
// answers start with prefix) and answers the refusal if it refuses it,
// fails, or sends it where the publisher's grant does not reach. Single
// and batch publishes answer the same, the batch naming the message.
func (s *Server) publishHook(ctx *fasthttp.RequestCtx, h func(*engine.Request, *engine.Message) (bool, error), req *engine.Request, grant *auth.Grant, m *engine.Message, prefix string) bool {
	accept, err := h(req, m)
	switch {
	case errors.Is(err, engine.ErrInvalid):
		writeError(ctx, fasthttp.StatusBadRequest, prefix+"publish hook returned a bad message: "+err.Error())
		return false
	case err != nil:
		writeError(ctx, fasthttp.StatusInternalServerError, prefix+hookFailure("publish", err)) // the runtime logged it with file and line
		return false
	case !accept:
		writeError(ctx, fasthttp.StatusForbidden, prefix+"message rejected by script")
		return false
	}
	return s.checkHookTopics(ctx, grant, m, prefix)
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

// idempotencyKey reads the Idempotency-Key header when publishes go to a
// cluster (Config.Publish), answering 400 and returning false when it is
// malformed; without a cluster the header is ignored.
func (s *Server) idempotencyKey(ctx *fasthttp.RequestCtx) (key string, ok bool) {
	if s.cfg.Publish == nil {
		return "", true
	}
	key, err := idempotencyKey(ctx.Request.Header.Peek(idempotencyHeader))
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, err.Error())
		return "", false
	}
	return key, true
}
