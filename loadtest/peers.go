package main

import (
	"bytes"
	"net/url"
	"strconv"

	"github.com/golang-jwt/jwt/v5"
)

// The peers tinysse is compared with, driven with the same workload:
// loadtest/peers/install.sh installs them and loadtest/peers holds the
// configurations these targets expect. Both publish to one channel (topic),
// peerChannel.
const peerChannel = "news"

// centrifugoTarget drives Centrifugo v6: unidirectional SSE
// (GET /connection/uni_sse?cf_connect={"subs":{"news":{}}}) and the server
// HTTP API (POST /api/publish {"channel":"news","data":"<payload>"}).
//
// Its stream is one JSON reply per event, "data: {...}": first
// {"connect":{...}}, sent once the connect command, server-side
// subscriptions included, is done (so it is the ready signal), then a push
// per publication, {"channel":"news","pub":{"data":"<payload>",...}}, and
// {} as ping.
func centrifugoTarget() *Target {
	connect := url.QueryEscape(`{"subs":{"` + peerChannel + `":{}}}`)
	return &Target{
		Name:            "centrifugo",
		DefaultURL:      "http://127.0.0.1:18000/connection/uni_sse",
		SubPath:         "/connection/uni_sse",
		PubPath:         "/api/publish",
		AppendSubscribe: func(b []byte, u *url.URL) []byte { return appendPeerGET(b, u, "cf_connect="+connect) },
		Ready: func(line []byte) bool {
			return bytes.HasPrefix(line, []byte(`data: {"connect":`))
		},
		AppendPublish: func(b []byte, u *url.URL, _, data []byte) []byte {
			const head = `{"channel":"` + peerChannel + `","data":"`
			b = appendPost(b, u, "application/json", "", len(head)+len(data)+len(`"}`))
			b = append(b, head...)
			b = append(b, data...)
			return append(b, `"}`...)
		},
		// The API answers 200 with {"error":{...}} when it refuses.
		Published: func(status int, body []byte) bool {
			return status == 200 && !bytes.Contains(body, []byte(`"error"`))
		},
		Payload: centrifugoPayload,
	}
}

// centrifugoPayload decodes a uni_sse event: a publication push on
// peerChannel carries the payload as its data string; anything else (the
// connect reply, a ping, another channel) is not a publication.
func centrifugoPayload(v []byte) ([]byte, bool) {
	v = bytes.TrimLeft(v, " ")
	const channel = `"channel":"` + peerChannel + `"`
	if len(v) == 0 || v[0] != '{' || !bytes.Contains(v, []byte(channel)) {
		return nil, false
	}
	_, pub, ok := bytes.Cut(v, []byte(`"pub":{`))
	if !ok {
		return nil, false
	}
	_, data, ok := bytes.Cut(pub, []byte(`"data":"`))
	if !ok {
		return nil, true // a publication without our string: foreign
	}
	end := bytes.IndexByte(data, '"')
	if end < 0 {
		return nil, true
	}
	return data[:end], true
}

// defaultMercureKey is the HS256 key of loadtest/peers/Caddyfile: a
// benchmark constant for a hub on 127.0.0.1, not a secret. --mercure-key
// sets another.
const defaultMercureKey = "tinysse-loadtest-mercure-key-not-a-secret-0123456789"

// mercureTarget drives a Mercure hub: anonymous subscribers
// (GET /.well-known/mercure?topic=news) and form publishes
// (topic, id, data) authorised by a JWT signed with key whose claims allow
// publishing anywhere. The stream opens with ":" once the subscriber is
// registered; events are "id: ..." and "data: <payload>".
func mercureTarget(key string) *Target {
	token := mercureToken(key)
	return &Target{
		Name:            "mercure",
		DefaultURL:      "http://127.0.0.1:13000/.well-known/mercure",
		SubPath:         "/.well-known/mercure",
		PubPath:         "/.well-known/mercure",
		AppendSubscribe: func(b []byte, u *url.URL) []byte { return appendPeerGET(b, u, "topic="+peerChannel) },
		Ready:           func(line []byte) bool { return bytes.Equal(line, []byte(":")) },
		AppendPublish: func(b []byte, u *url.URL, id, data []byte) []byte {
			n := len("topic="+peerChannel+"&data=") + len(data)
			if len(id) > 0 {
				n += len("&id=") + len(id)
			}
			b = appendPost(b, u, "application/x-www-form-urlencoded", "Bearer "+token, n)
			b = append(b, "topic="+peerChannel...)
			if len(id) > 0 {
				b = append(b, "&id="...)
				b = append(b, id...)
			}
			b = append(b, "&data="...)
			return appendFormValue(b, data)
		},
		Published: func(status int, _ []byte) bool { return status == 200 },
	}
}

// mercureToken signs the publisher JWT: {"mercure":{"publish":["*"]}}.
func mercureToken(key string) string {
	claims := jwt.MapClaims{"mercure": map[string]any{"publish": []string{"*"}}}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(key))
	if err != nil {
		panic(err) // HS256 with a []byte key cannot fail
	}
	return s
}

// appendPost appends a POST request head for a body of n bytes.
func appendPost(b []byte, u *url.URL, contentType, authorization string, n int) []byte {
	b = append(b, "POST "...)
	b = append(b, u.RequestURI()...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, u.Host...)
	b = append(b, "\r\nContent-Type: "...)
	b = append(b, contentType...)
	if authorization != "" {
		b = append(b, "\r\nAuthorization: "...)
		b = append(b, authorization...)
	}
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, "\r\n\r\n"...)
}

// appendFormValue appends v form-encoded. Payloads are ASCII letters,
// digits and spaces (see appendPayload), so only the space changes, to '+',
// and the length stays len(v).
func appendFormValue(b, v []byte) []byte {
	for _, c := range v {
		if c == ' ' {
			c = '+'
		}
		b = append(b, c)
	}
	return b
}

// appendPeerGET appends a peer's stream request: u's path with u's query,
// or with defaultQuery (the peer's way to name the channel) when u has none.
func appendPeerGET(b []byte, u *url.URL, defaultQuery string) []byte {
	b = append(b, "GET "...)
	b = append(b, u.EscapedPath()...)
	b = append(b, '?')
	if u.RawQuery != "" {
		b = append(b, u.RawQuery...)
	} else {
		b = append(b, defaultQuery...)
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, u.Host...)
	return append(b, "\r\nAccept: text/event-stream\r\n\r\n"...)
}
