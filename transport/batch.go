package transport

import (
	"bytes"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/tinysse/tinysse/auth"
	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/jsonobj"
	"github.com/valyala/fasthttp"
)

// Batch publish (issue 19): POST {pub-path} with a JSON array of messages
// (Content-Type application/json, the body's first character '[') or
// with Content-Type application/x-ndjson, one message object per line
// (blank lines skipped). Every message is decoded, checked (topics, the
// token's grant) and passed through the publish hook before any is
// published; the first refused one answers with its index ("message 3:
// ...") and nothing is published. Then all are published in order as one
// unit (engine.PublishBatch; in cluster mode Config.PublishBatch), with
// one 202 {"queued":Q,"subscribers":S}: Q as for one message, over every
// topic of the batch, and S the subscribers of those topics (each topic
// counted once). ?topic= applies to every message. --max-body-size bounds
// the body and Config.MaxBatch (--max-batch) the messages.

const ndjsonType = "application/x-ndjson"

// isBatch says whether a publish body is a batch.
func isBatch(contentType, body []byte) bool {
	switch mediaType(contentType) {
	case ndjsonType:
		return true
	case "application/json":
		i := 0
		for i < len(body) && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n') {
			i++
		}
		return i < len(body) && body[i] == '['
	}
	return false
}

// batchLines is where each message of an NDJSON batch began: lines[i]
// is message i's 1-based line (nil for a JSON array).
type batchLines []int

// prefix is how an error about message i begins: its index, and for
// NDJSON its line, so a refusal found after decoding (a bad id or topic,
// the token, the publish hook, the engine's limits) points at the line
// as a decoding error does.
func (l batchLines) prefix(i int) string {
	if i < len(l) {
		return fmt.Sprintf("message %d (line %d): ", i, l[i])
	}
	return fmt.Sprintf("message %d: ", i)
}

// decodeBatch reads a batch body into messages, at most max of them.
// Invalid UTF-8 is refused naming the message (and line) that holds it.
func decodeBatch(mt string, body []byte, max int) ([]*engine.Message, batchLines, int, error) {
	tooMany := func() error {
		return fmt.Errorf("batch of more than %d messages (--max-batch)", max)
	}
	var ms []*engine.Message
	var lines batchLines
	if mt == ndjsonType {
		for n, rest := 0, body; len(rest) > 0; n++ {
			line := rest
			if i := bytes.IndexByte(rest, '\n'); i >= 0 {
				line, rest = rest[:i], rest[i+1:]
			} else {
				rest = nil
			}
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			if len(ms) == max {
				return nil, nil, fasthttp.StatusRequestEntityTooLarge, tooMany()
			}
			lines = append(lines, n+1)
			m, err := decodeJSON(line) // checks the line's UTF-8
			if err != nil {
				return nil, nil, fasthttp.StatusBadRequest, fmt.Errorf("%s%w", lines.prefix(len(ms)), err)
			}
			ms = append(ms, m)
		}
	} else {
		var elemErr error // an element that is not a good message (the body is valid JSON)
		// json.Valid (jsonobj) lets invalid UTF-8 through inside strings,
		// and any outside them is a syntax error: checking each element
		// covers the body and names the element.
		err := jsonobj.Array(body, func(i int, v []byte) error {
			if i == max {
				return errTooMany
			}
			if !utf8.Valid(v) {
				elemErr = fmt.Errorf("message %d: not valid UTF-8", i)
				return elemErr
			}
			m, err := decodeElement(v)
			if err != nil {
				elemErr = fmt.Errorf("message %d: %w", i, err)
				return elemErr
			}
			ms = append(ms, m)
			return nil
		})
		switch {
		case errors.Is(err, errTooMany):
			return nil, nil, fasthttp.StatusRequestEntityTooLarge, tooMany()
		case elemErr != nil:
			return nil, nil, fasthttp.StatusBadRequest, elemErr
		case err != nil:
			if !utf8.Valid(body) { // outside every element: what a single message says
				return nil, nil, fasthttp.StatusBadRequest, errors.New("body is not valid UTF-8")
			}
			return nil, nil, fasthttp.StatusBadRequest, jsonError(err)
		}
	}
	if len(ms) == 0 {
		return nil, nil, fasthttp.StatusBadRequest, errors.New("empty batch: no message")
	}
	return ms, lines, 0, nil
}

var errTooMany = errors.New("transport: batch too large")

// decodeElement is decodeJSON for one element of a JSON array body
// (checked as JSON already).
func decodeElement(v []byte) (*engine.Message, error) {
	m := &engine.Message{}
	if err := jsonobj.DecodeElement(v, func(name []byte) any { return messageField(m, name) }); err != nil {
		return nil, jsonError(err)
	}
	return m, nil
}

// publishBatch handles a batch body; grant is the request's token's (nil
// without access control).
func (s *Server) publishBatch(ctx *fasthttp.RequestCtx, grant *auth.Grant, mt string, body []byte) {
	if s.cfg.Publish != nil && s.cfg.PublishBatch == nil {
		writeError(ctx, fasthttp.StatusNotImplemented, "batch publish is not available in this mode: publish one message per request")
		return
	}
	ms, lines, status, err := decodeBatch(mt, body, s.cfg.MaxBatch)
	if err != nil {
		writeError(ctx, status, err.Error())
		return
	}
	key, ok := s.idempotencyKey(ctx)
	if !ok {
		return
	}
	query := queryTopics(ctx)
	for i, m := range ms {
		if !s.checkMessage(ctx, grant, m, query, lines.prefix(i)) {
			return
		}
	}
	if h := s.hooks.Publish; h != nil {
		req := newRequest(ctx) // one for the batch: the hook sees the same request for each message
		if grant != nil {
			req.Claims = grant.Claims
		}
		for i, m := range ms {
			if !s.publishHook(ctx, h, req, grant, m, lines.prefix(i)) {
				return
			}
		}
	}
	var res engine.PublishResult
	if s.cfg.PublishBatch != nil {
		res, err = s.cfg.PublishBatch(ms, key)
	} else {
		res, err = s.eng.PublishBatch(ms)
	}
	prefix := ""
	var be *engine.BatchError
	if errors.As(err, &be) {
		prefix = lines.prefix(be.Index)
	}
	s.answerPublish(ctx, res, err, prefix)
}
