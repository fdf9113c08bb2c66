package transport

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tinysse/tinysse/auth"
	"github.com/tinysse/tinysse/engine"
	"github.com/tinysse/tinysse/internal/testjwt"
	"github.com/valyala/fasthttp"
)

// The built-in JWT check, end to end: every case is a real request to a
// server on 127.0.0.1.

const testSecret = "a test secret of some length"

// newAuth builds an Auth, failing the test on error.
func newAuth(t testing.TB, cfg auth.Config) *auth.Auth {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	a, err := auth.New(cfg)
	if err != nil {
		t.Fatalf("auth.New: %v", err)
	}
	return a
}

func secretKey(t testing.TB, s string) auth.Key {
	t.Helper()
	k, err := auth.SecretKey([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pemKey(t testing.TB, p testjwt.Pair) auth.Key {
	t.Helper()
	k, err := auth.ParseKey(p.PublicPEM)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func bearerHeader(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// publishWith posts {"data": data} to topic with the given headers.
func (p proto) publishWith(t testing.TB, addr, topic, data string, headers ...string) answer {
	t.Helper()
	target := "http://" + addr + "/sse"
	if topic != "" {
		target += "?topic=" + url.QueryEscape(topic)
	}
	body, _ := json.Marshal(map[string]string{"data": data})
	return p.do(t, http.MethodPost, target, string(body), append([]string{"Content-Type", "application/json"}, headers...)...)
}

// wantRefused checks a refusal's status, its JSON error (containing
// want) and its WWW-Authenticate challenge.
func wantRefused(t testing.TB, status int, header http.Header, body, want string) {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.Contains(e.Error, want) {
		t.Errorf("body %q (%v), want a JSON error containing %q", body, err, want)
	}
	code := map[int]string{401: `error="invalid_token"`, 403: `error="insufficient_scope"`}[status]
	if ch := header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer ") || !strings.Contains(ch, code) {
		t.Errorf("WWW-Authenticate %q, want Bearer with %s", ch, code)
	}
}

func wantAnswer(t testing.TB, a answer, status int, want string) {
	t.Helper()
	if a.Status != status {
		t.Fatalf("status %d (%s), want %d", a.Status, a.Body, status)
	}
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		wantRefused(t, status, a.Header, a.Body, want)
	}
}

func wantStream(t testing.TB, s *sseClient, status int, want string) {
	t.Helper()
	if s.Status != status {
		t.Fatalf("subscribe: status %d (%s), want %d", s.Status, s.Body, status)
	}
	if status != http.StatusOK {
		wantRefused(t, status, s.Header, s.Body, want)
	}
}

// TestAuthKeyTypes: a token signed by each kind of key is accepted for
// publishing and subscribing; expired, not yet valid, wrongly signed and
// missing tokens are refused with 401, and nothing is published.
func TestAuthKeyTypes(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		pairs := testjwt.Pairs()
		type kind struct {
			key    auth.Key
			sign   func(jwt.MapClaims) string
			forged func(jwt.MapClaims) string // the same algorithm, another key
		}
		kinds := map[string]kind{
			"HS256": {secretKey(t, testSecret),
				func(c jwt.MapClaims) string { return testjwt.HS256(t, testSecret, c) },
				func(c jwt.MapClaims) string { return testjwt.HS256(t, "another secret", c) }},
		}
		for _, name := range []string{"RS", "PS", "ES", "EdDSA"} {
			pair := pairs[name]
			other := pair // RSA: the same key, its signature broken (a second 2048-bit key is slow to make)
			if name == "ES" || name == "EdDSA" {
				other = testjwt.NewPair(name)
			}
			kinds[pair.Alg] = kind{pemKey(t, pair),
				func(c jwt.MapClaims) string { return testjwt.Sign(t, pair.Method(), pair.Private, c) },
				func(c jwt.MapClaims) string {
					if name == "RS" || name == "PS" {
						tok := testjwt.Sign(t, pair.Method(), pair.Private, c)
						return tok[:len(tok)-8] + "AAAAAAAA"
					}
					return testjwt.Sign(t, other.Method(), other.Private, c)
				}}
		}
		all := testjwt.Topics([]string{"*"}, []string{"*"})
		for name, k := range kinds {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				addr, _, _ := p.startServer(t, engine.Config{}, Config{Auth: newAuth(t, auth.Config{Keys: []auth.Key{k.key}})})
				good := k.sign(testjwt.Claims(time.Hour, all))
				sub := p.subscribe(t, addr, "/sse?topic=a", bearerHeader(good)...)
				wantStream(t, sub, http.StatusOK, "")
				sub.expectOK()
				wantAnswer(t, p.publishWith(t, addr, "a", "hello", bearerHeader(good)...), http.StatusAccepted, "")
				sub.expectLines("data: hello")

				for _, c := range []struct{ name, token, why string }{
					{"none", "", "a token is required"},
					{"expired", k.sign(testjwt.Claims(-time.Minute, all)), "token expired"},
					{"not yet valid", k.sign(jwt.MapClaims{"nbf": time.Now().Add(time.Hour).Unix(), "tinysse": all}), "token not yet valid"},
					{"wrong signature", k.forged(testjwt.Claims(time.Hour, all)), "bad signature"},
					{"garbage", "abc.def.ghi", "malformed token"},
				} {
					var hdr []string
					if c.token != "" {
						hdr = bearerHeader(c.token)
					}
					wantAnswer(t, p.publishWith(t, addr, "a", "refused "+c.name, hdr...), http.StatusUnauthorized, c.why)
					wantStream(t, p.subscribe(t, addr, "/sse?topic=a", hdr...), http.StatusUnauthorized, c.why)
				}
				wantAnswer(t, p.publishWith(t, addr, "a", "after", bearerHeader(good)...), http.StatusAccepted, "")
				sub.expectLines("data: after") // nothing refused came in between
			})
		}
	})
}

// TestAuthAlgorithms: "none" and HS256 signed with the RSA public key's
// own PEM bytes (key confusion) are refused; so is an algorithm of
// another family or curve than the key's.
func TestAuthAlgorithms(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		rs := testjwt.Pairs()["RS"]
		es := testjwt.Pairs()["ES"]
		addr, _, _ := p.startServer(t, engine.Config{}, Config{Auth: newAuth(t, auth.Config{Keys: []auth.Key{pemKey(t, rs)}})})
		claims := testjwt.Claims(time.Hour, testjwt.Topics([]string{"*"}, []string{"*"}))
		for name, tok := range map[string]string{
			"none":          testjwt.Sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims),
			"key confusion": testjwt.Sign(t, jwt.SigningMethodHS256, rs.PublicPEM, claims),
			"another type":  testjwt.Sign(t, es.Method(), es.Private, claims),
		} {
			t.Run(name, func(t *testing.T) {
				wantAnswer(t, p.publishWith(t, addr, "", "x", bearerHeader(tok)...), http.StatusUnauthorized, "wrong algorithm")
				wantStream(t, p.subscribe(t, addr, "/sse", bearerHeader(tok)...), http.StatusUnauthorized, "wrong algorithm")
			})
		}
		// The right one goes through.
		wantAnswer(t, p.publishWith(t, addr, "", "x", bearerHeader(testjwt.Sign(t, rs.Method(), rs.Private, claims))...), http.StatusAccepted, "")
	})
}

// TestAuthAudienceIssuer: with an audience and an issuer set, a token
// must carry both.
func TestAuthAudienceIssuer(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		addr, _, _ := p.startServer(t, engine.Config{}, Config{Auth: newAuth(t, auth.Config{
			Keys: []auth.Key{secretKey(t, testSecret)}, Audience: "feed", Issuer: "https://id.example",
		})})
		tok := func(aud, iss string) []string {
			c := testjwt.Claims(time.Hour, testjwt.Topics([]string{"*"}, []string{"*"}))
			if aud != "" {
				c["aud"] = aud
			}
			if iss != "" {
				c["iss"] = iss
			}
			return bearerHeader(testjwt.HS256(t, testSecret, c))
		}
		wantAnswer(t, p.publishWith(t, addr, "", "x", tok("feed", "https://id.example")...), http.StatusAccepted, "")
		wantAnswer(t, p.publishWith(t, addr, "", "x", tok("other", "https://id.example")...), http.StatusUnauthorized, "wrong audience")
		wantAnswer(t, p.publishWith(t, addr, "", "x", tok("feed", "https://evil.example")...), http.StatusUnauthorized, "wrong issuer")
		wantAnswer(t, p.publishWith(t, addr, "", "x", tok("", "https://id.example")...), http.StatusUnauthorized, "aud")
		wantStream(t, p.subscribe(t, addr, "/sse", tok("other", "https://id.example")...), http.StatusUnauthorized, "wrong audience")
	})
}

// TestAuthTopics: the claim's patterns decide which topics: news/* covers
// news/a only (not news, news/a/b nor newsx); a message is published only
// when every one of its topics is covered; "*" covers no internal topic,
// an admin claim does.
func TestAuthTopics(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		addr, eng, _ := p.startServer(t, engine.Config{}, Config{Auth: newAuth(t, auth.Config{Keys: []auth.Key{secretKey(t, testSecret)}})})
		tok := func(publish, subscribe []string) []string {
			return bearerHeader(testjwt.HS256(t, testSecret, testjwt.Claims(time.Hour, testjwt.Topics(publish, subscribe))))
		}
		news := tok([]string{"news/*"}, []string{"news/*"})
		watcher := p.subscribe(t, addr, "/sse?topic=news/a&topic=news/b", news...)
		wantStream(t, watcher, http.StatusOK, "")
		watcher.expectOK()

		wantAnswer(t, p.publishWith(t, addr, "news/a", "1", news...), http.StatusAccepted, "")
		watcher.expectLines("data: 1")
		for _, topic := range []string{"news/a/b", "newsx", "news", ""} {
			wantAnswer(t, p.publishWith(t, addr, topic, "no", news...), http.StatusForbidden, "does not allow")
			wantStream(t, p.subscribe(t, addr, "/sse?topic="+url.QueryEscape(topic), news...), http.StatusForbidden, "")
		}
		// Two topics, one not covered: refused whole.
		a := p.do(t, http.MethodPost, "http://"+addr+"/sse?topic=news/b&topic=sport/b", `{"data":"half"}`, append([]string{"Content-Type", "application/json"}, news...)...)
		wantAnswer(t, a, http.StatusForbidden, `"sport/b"`)
		wantAnswer(t, p.publishWith(t, addr, "news/b", "2", news...), http.StatusAccepted, "")
		watcher.expectLines("data: 2") // "half" never came

		// A token that may only subscribe cannot publish, and the other way round.
		readOnly := tok(nil, []string{"*"})
		wantAnswer(t, p.publishWith(t, addr, "news/a", "no", readOnly...), http.StatusForbidden, "")
		wantStream(t, p.subscribe(t, addr, "/sse?topic=news/a", tok([]string{"*"}, nil)...), http.StatusForbidden, "")
		// No claim at all: a valid token that allows nothing.
		wantAnswer(t, p.publishWith(t, addr, "news/a", "no", bearerHeader(testjwt.HS256(t, testSecret, testjwt.Claims(time.Hour, nil)))...), http.StatusForbidden, "")
		// A bad claim is a bad token.
		bad := bearerHeader(testjwt.HS256(t, testSecret, testjwt.Claims(time.Hour, map[string]any{"publish": "news/a"})))
		wantAnswer(t, p.publishWith(t, addr, "news/a", "no", bad...), http.StatusUnauthorized, "must be a list")

		// "*" reads every topic but the internal ones; an admin claim reads those.
		everything := tok(nil, []string{"*"})
		wantStream(t, p.subscribe(t, addr, "/sse?topic=anything/at/all&topic=", everything...), http.StatusOK, "")
		wantStream(t, p.subscribe(t, addr, "/sse?topic=_tinysse.stats", everything...), http.StatusForbidden, "internal topic")
		named := tok(nil, []string{"_tinysse.stats"})
		wantStream(t, p.subscribe(t, addr, "/sse?topic=_tinysse.stats", named...), http.StatusForbidden, "internal topic")
		admin := bearerHeader(testjwt.HS256(t, testSecret, testjwt.Claims(time.Hour, map[string]any{"admin": true})))
		wantStream(t, p.subscribe(t, addr, "/sse?topic=_tinysse.stats", admin...), http.StatusOK, "")
		waitSubscribers(t, eng, "_tinysse.stats", 1)
	})
}

// TestAuthTokenSources: the token may come in the Authorization header,
// the cookie (default name or another) or ?authorization=; the header
// comes first. A query token is taken out of what hooks see.
func TestAuthTokenSources(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		var mu sync.Mutex
		var seen []*engine.Request
		hooks := engine.Hooks{Subscribe: func(s *engine.Subscriber) (bool, error) {
			mu.Lock()
			seen = append(seen, s.Request)
			mu.Unlock()
			return true, nil
		}}
		for _, cookie := range []string{"", "session"} {
			name := cookie
			if name == "" {
				name = DefaultTokenCookie
			}
			t.Run(name, func(t *testing.T) {
				addr, _, _ := p.startServer(t, engine.Config{Hooks: hooks}, Config{TokenCookie: cookie, Auth: newAuth(t, auth.Config{Keys: []auth.Key{secretKey(t, testSecret)}})})
				good := testjwt.HS256(t, testSecret, testjwt.Claims(time.Hour, testjwt.Topics([]string{"*"}, []string{"*"})))
				bad := testjwt.HS256(t, "not the secret", testjwt.Claims(time.Hour, testjwt.Topics([]string{"*"}, []string{"*"})))

				wantStream(t, p.subscribe(t, addr, "/sse", "Authorization", "bearer "+good), http.StatusOK, "")
				wantStream(t, p.subscribe(t, addr, "/sse", "Cookie", "other=1; "+name+"="+good), http.StatusOK, "")
				wantStream(t, p.subscribe(t, addr, "/sse?topic=q&authorization="+good), http.StatusOK, "")
				wantStream(t, p.subscribe(t, addr, "/sse?authorization=Bearer%20"+good), http.StatusOK, "")
				wantAnswer(t, p.publishWith(t, addr, "", "by cookie", "Cookie", name+"="+good), http.StatusAccepted, "")
				// A cookie goes with any site's form: a publish by cookie must
				// come from this server's own origin (or a named one).
				a := p.publishWith(t, addr, "", "forged", "Cookie", name+"="+good, "Origin", "https://evil.example")
				if a.Status != http.StatusForbidden || !strings.Contains(a.Body, "cookie") {
					t.Errorf("a publish by cookie from another origin: %d %s", a.Status, a.Body)
				}
				wantAnswer(t, p.publishWith(t, addr, "", "same origin", "Cookie", name+"="+good, "Origin", "http://"+addr), http.StatusAccepted, "")
				wantAnswer(t, p.publishWith(t, addr, "", "header", append(bearerHeader(good), "Origin", "https://evil.example")...), http.StatusAccepted, "")
				// The header first: a bad one is not rescued by a good cookie.
				wantStream(t, p.subscribe(t, addr, "/sse", "Authorization", "Bearer "+bad, "Cookie", name+"="+good), http.StatusUnauthorized, "bad signature")
				// Another scheme is not ours: the cookie is used.
				wantStream(t, p.subscribe(t, addr, "/sse", "Authorization", "Basic dXNlcjpwYXNz", "Cookie", name+"="+good), http.StatusOK, "")
				// The other cookie name is not read.
				other := map[string]string{DefaultTokenCookie: "session", "session": DefaultTokenCookie}[name]
				wantStream(t, p.subscribe(t, addr, "/sse", "Cookie", other+"="+good), http.StatusUnauthorized, "a token is required")

				mu.Lock()
				defer mu.Unlock()
				for _, r := range seen {
					if strings.Contains(r.URI, good) || strings.Contains(r.Query, good) || strings.Contains(r.URI, "authorization") {
						t.Errorf("a hook saw the query token: uri %q, query %q", r.URI, r.Query)
					}
					if r.Claims == nil || r.Claims["sub"] != "test" {
						t.Errorf("a hook saw claims %v, want the token's", r.Claims)
					}
				}
				if want := "/sse?topic=q"; !hasURI(seen, want) {
					t.Errorf("no hook saw uri %q", want)
				}
				seen = nil
			})
		}
	})
}

func hasURI(rs []*engine.Request, uri string) bool {
	for _, r := range rs {
		if r.URI == uri {
			return true
		}
	}
	return false
}

// TestAuthTokenNotLogged: a request fasthttp cannot parse is logged (at
// DEBUG) without the token it carried.
//
// HTTP/1.1 only: the lines under test are fasthttp's, about requests it
// could not parse; x/net's log lines go through the same redact
// (slogWriter).
func TestAuthTokenNotLogged(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	addr, _, _ := startServer(t, engine.Config{}, Config{Logger: log, Auth: newAuth(t, auth.Config{Keys: []auth.Key{secretKey(t, testSecret)}})})
	const secret = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu.c2ln"
	for _, req := range []string{
		"GET /sse?authorization=" + secret + " HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
		"GET /sse HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + secret + "\r\nContent-Length: nope\r\n\r\n",
	} {
		a := rawExchange(t, addr, req)
		if a.Status != http.StatusBadRequest {
			t.Errorf("status %d for a malformed request", a.Status)
		}
	}
	waitFor(t, wait, "fasthttp's log lines", func() bool { return strings.Count(buf.String(), "component=fasthttp") >= 2 })
	if s := buf.String(); strings.Contains(s, secret) || strings.Contains(s, "c2VjcmV0LXRva2Vu") {
		t.Errorf("the log holds the token:\n%s", s)
	}
	if got := redact("GET /sse?topic=a&authorization=xyz&b=1 and Authorization: Bearer abc.def"); got != "GET /sse?topic=a&authorization=REDACTED&b=1 and Authorization: Bearer REDACTED" {
		t.Errorf("redact: %q", got)
	}
}

// TestAuthTokenNotLoggedEncoded: the query parameter's name may be
// percent-encoded (?author%69zation=TOKEN is read as the token, as any
// decoded key is), and the token cookie may have any name
// (--jwt-cookie): neither reaches fasthttp's log lines of a request it
// could not parse.
func TestAuthTokenNotLoggedEncoded(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a := newAuth(t, auth.Config{Keys: []auth.Key{secretKey(t, testSecret)}})
	addr, _, _ := startServer(t, engine.Config{}, Config{Logger: log, Auth: a, TokenCookie: "session"})
	token := testjwt.HS256(t, testSecret, testjwt.Claims(time.Hour, testjwt.Topics(nil, []string{"*"})))
	// The encoded name is taken as the token: the server reads it so.
	wantStream(t, subscribe(t, addr, "/sse?author%69zation="+token), http.StatusOK, "")
	_, payload, _ := strings.Cut(token, ".")
	payload, _, _ = strings.Cut(payload, ".")
	for _, req := range []string{
		"GET /sse?topic=a&author%69zation=" + token + " HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
		"GET /sse?%61UTHORIZATION=" + token + " HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
		"GET /sse HTTP/1.1\r\nHost: x\r\nCookie: a=1; session=" + token + "\r\nContent-Length: nope\r\n\r\n",
	} {
		if a := rawExchange(t, addr, req); a.Status != http.StatusBadRequest {
			t.Errorf("status %d for a malformed request", a.Status)
		}
	}
	waitFor(t, wait, "fasthttp's log lines", func() bool { return strings.Count(buf.String(), "component=fasthttp") >= 3 })
	if s := buf.String(); strings.Contains(s, payload) {
		t.Errorf("the log holds the token:\n%s", s)
	}
	if got := redact(`GET /sse?author%69zation=xyz&topic=a&b%20=1 Cookie: s=abc\r\n`); got != `GET /sse?author%69zation=REDACTED&topic=a&b%20=1 Cookie: REDACTED\r\n` {
		t.Errorf("redact: %q", got)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAuthAnonymous: --anonymous lets subscribers in without a token, to
// the public topics only; a token, when given, must still be valid;
// publishing still needs one.
func TestAuthAnonymous(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		addr, _, _ := p.startServer(t, engine.Config{}, Config{Auth: newAuth(t, auth.Config{
			Keys: []auth.Key{secretKey(t, testSecret)}, Anonymous: true, PublicTopics: []string{"public/**", "lobby"},
		})})
		for _, topic := range []string{"public/a", "public/a/b", "lobby"} {
			wantStream(t, p.subscribe(t, addr, "/sse?topic="+topic), http.StatusOK, "")
		}
		wantStream(t, p.subscribe(t, addr, "/sse?topic=private"), http.StatusUnauthorized, "not a public topic")
		wantStream(t, p.subscribe(t, addr, "/sse?topic=lobby&topic=private"), http.StatusUnauthorized, `"private"`)
		wantStream(t, p.subscribe(t, addr, "/sse"), http.StatusUnauthorized, "default stream")
		wantStream(t, p.subscribe(t, addr, "/sse?topic=_tinysse.stats"), http.StatusUnauthorized, "internal topic")
		expired := bearerHeader(testjwt.HS256(t, testSecret, testjwt.Claims(-time.Minute, nil)))
		wantStream(t, p.subscribe(t, addr, "/sse?topic=lobby", expired...), http.StatusUnauthorized, "token expired")
		wantAnswer(t, p.publishWith(t, addr, "lobby", "x"), http.StatusUnauthorized, "a token is required")
		member := bearerHeader(testjwt.HS256(t, testSecret, testjwt.Claims(time.Hour, testjwt.Topics(nil, []string{"private"}))))
		wantStream(t, p.subscribe(t, addr, "/sse?topic=private", member...), http.StatusOK, "")
	})
}

// TestAuthHooksRefine: hooks see the verified claims and may refuse what
// the token allows; topics a hook sets must still be covered by the token.
func TestAuthHooksRefine(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		var claims atomic.Value
		var unsubscribed atomic.Int64
		hooks := engine.Hooks{
			Unsubscribe: func(*engine.Subscriber) { unsubscribed.Add(1) },
			Subscribe: func(s *engine.Subscriber) (bool, error) {
				claims.Store(s.Request.Claims)
				switch s.Request.Claims["sub"] {
				case "banned":
					return false, nil
				case "widen":
					s.Topics = append(s.Topics, "secret")
				case "narrow":
					s.Topics = s.Topics[:1]
				}
				return true, nil
			},
			Publish: func(r *engine.Request, m *engine.Message) (bool, error) {
				if r.Claims["sub"] == "widen" {
					m.Topics = []string{"secret"}
				}
				return r.Claims["sub"] != "banned", nil
			},
		}
		addr, _, _ := p.startServer(t, engine.Config{Hooks: hooks}, Config{Auth: newAuth(t, auth.Config{Keys: []auth.Key{secretKey(t, testSecret)}})})
		tok := func(sub string) []string {
			c := testjwt.Claims(time.Hour, testjwt.Topics([]string{"a", "b"}, []string{"a", "b"}))
			c["sub"], c["plan"] = sub, "pro"
			return bearerHeader(testjwt.HS256(t, testSecret, c))
		}
		wantStream(t, p.subscribe(t, addr, "/sse?topic=a", tok("alice")...), http.StatusOK, "")
		if c, _ := claims.Load().(map[string]any); c["sub"] != "alice" || c["plan"] != "pro" {
			t.Errorf("the hook saw claims %v", c)
		}
		banned := p.subscribe(t, addr, "/sse?topic=a", tok("banned")...)
		if banned.Status != http.StatusForbidden || !strings.Contains(banned.Body, "rejected by script") {
			t.Errorf("a hook's refusal: %d %s", banned.Status, banned.Body)
		}
		wantStream(t, p.subscribe(t, addr, "/sse?topic=a", tok("widen")...), http.StatusForbidden, "subscribe hook set topics the token does not allow")
		if n := unsubscribed.Load(); n != 1 {
			t.Errorf("Unsubscribe ran %d times, want once for the subscriber refused after its hook accepted it", n)
		}
		wantStream(t, p.subscribe(t, addr, "/sse?topic=a&topic=b", tok("narrow")...), http.StatusOK, "")
		if a := p.publishWith(t, addr, "a", "x", tok("banned")...); a.Status != http.StatusForbidden || !strings.Contains(a.Body, "rejected by script") {
			t.Errorf("a hook's refusal: %d %s", a.Status, a.Body)
		}
		wantAnswer(t, p.publishWith(t, addr, "a", "x", tok("widen")...), http.StatusForbidden, "publish hook set topics the token does not allow")
		wantAnswer(t, p.publishWith(t, addr, "a", "x", tok("alice")...), http.StatusAccepted, "")
	})
}

// TestAuthAdmin: the admin token (with no JWT key, every other topic
// stays open) reads internal topics and passes admin routes; a route with
// a token of its own (metrics) takes that token or admin rights.
func TestAuthAdmin(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		ok := func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("secret data") }
		routes := []Route{{Path: "/admin/", Handler: ok, Admin: true}, {Path: "/metrics", Handler: ok, Token: "scrape"}, {Path: "/open", Handler: ok}}

		t.Run("admin token only", func(t *testing.T) {
			addr, _, _ := p.startServer(t, engine.Config{}, Config{Routes: routes, Auth: newAuth(t, auth.Config{AdminToken: "let-me-in"})})
			admin := bearerHeader("let-me-in")
			wantAnswer(t, p.publishWith(t, addr, "news", "open to all"), http.StatusAccepted, "")
			wantStream(t, p.subscribe(t, addr, "/sse?topic=news", "Authorization", "Bearer for-a-script"), http.StatusOK, "")
			wantStream(t, p.subscribe(t, addr, "/sse?topic=_tinysse.stats"), http.StatusUnauthorized, "admin token is required")
			wantStream(t, p.subscribe(t, addr, "/sse?topic=_tinysse.stats", bearerHeader("wrong")...), http.StatusUnauthorized, "")
			wantStream(t, p.subscribe(t, addr, "/sse?topic=_tinysse.stats", admin...), http.StatusOK, "")
			wantAnswer(t, p.publishWith(t, addr, "_tinysse.stats", "forged"), http.StatusUnauthorized, "internal topic")
			wantAnswer(t, p.publishWith(t, addr, "_tinysse.stats", "by the admin", admin...), http.StatusAccepted, "")

			wantAnswer(t, p.do(t, http.MethodGet, "http://"+addr+"/admin/x", ""), http.StatusUnauthorized, "admin token is required")
			wantAnswer(t, p.do(t, http.MethodGet, "http://"+addr+"/admin/x", "", bearerHeader("wrong")...), http.StatusForbidden, "no admin rights")
			wantAnswer(t, p.do(t, http.MethodGet, "http://"+addr+"/admin/x", "", admin...), http.StatusOK, "")
			wantAnswer(t, p.do(t, http.MethodGet, "http://"+addr+"/metrics", ""), http.StatusUnauthorized, "")
			// A token that is neither the route's nor the admin's is wrong,
			// as when no admin token is set ("nothing set" below): 401.
			wantAnswer(t, p.do(t, http.MethodGet, "http://"+addr+"/metrics", "", bearerHeader("nope")...), http.StatusUnauthorized, "wrong token")
			wantAnswer(t, p.do(t, http.MethodGet, "http://"+addr+"/metrics", "", bearerHeader("scrape")...), http.StatusOK, "")
			wantAnswer(t, p.do(t, http.MethodGet, "http://"+addr+"/metrics", "", admin...), http.StatusOK, "")
			wantAnswer(t, p.do(t, http.MethodGet, "http://"+addr+"/open", ""), http.StatusOK, "")
		})

		t.Run("JWT admin claim", func(t *testing.T) {
			addr, _, _ := p.startServer(t, engine.Config{}, Config{Routes: routes, Auth: newAuth(t, auth.Config{Keys: []auth.Key{secretKey(t, testSecret)}})})
			admin := bearerHeader(testjwt.HS256(t, testSecret, testjwt.Claims(time.Hour, map[string]any{"admin": true})))
			user := bearerHeader(testjwt.HS256(t, testSecret, testjwt.Claims(time.Hour, testjwt.Topics([]string{"*"}, []string{"*"}))))
			wantAnswer(t, p.do(t, http.MethodGet, "http://"+addr+"/admin/x", "", user...), http.StatusForbidden, "no admin rights")
			wantAnswer(t, p.do(t, http.MethodGet, "http://"+addr+"/admin/x", "", admin...), http.StatusOK, "")
			wantAnswer(t, p.publishWith(t, addr, "any/topic", "x", admin...), http.StatusAccepted, "")
			// The metrics route: its token, or an admin JWT; a token that
			// does not verify is 401, a user's JWT 403.
			wantAnswer(t, p.do(t, http.MethodGet, "http://"+addr+"/metrics", "", bearerHeader("scrape")...), http.StatusOK, "")
			wantAnswer(t, p.do(t, http.MethodGet, "http://"+addr+"/metrics", "", admin...), http.StatusOK, "")
			wantAnswer(t, p.do(t, http.MethodGet, "http://"+addr+"/metrics", "", bearerHeader("nope")...), http.StatusUnauthorized, "invalid token")
			wantAnswer(t, p.do(t, http.MethodGet, "http://"+addr+"/metrics", "", user...), http.StatusForbidden, "no admin rights")
		})

		t.Run("nothing set", func(t *testing.T) {
			addr, _, _ := p.startServer(t, engine.Config{}, Config{Routes: routes})
			wantAnswer(t, p.do(t, http.MethodGet, "http://"+addr+"/admin/x", ""), http.StatusOK, "")
			wantAnswer(t, p.do(t, http.MethodGet, "http://"+addr+"/metrics", ""), http.StatusUnauthorized, "a token is required")
			wantAnswer(t, p.do(t, http.MethodGet, "http://"+addr+"/metrics", "", bearerHeader("nope")...), http.StatusUnauthorized, "wrong token")
			wantAnswer(t, p.do(t, http.MethodGet, "http://"+addr+"/metrics", "", bearerHeader("scrape")...), http.StatusOK, "")
		})
	})
}

// jwksServer serves a key set that a test may change, on 127.0.0.1, and
// counts the reads.
type jwksServer struct {
	*httptest.Server
	mu    sync.Mutex
	body  []byte
	reads atomic.Int64
}

func newJWKSServer(t *testing.T, keys map[string]testjwt.Pair) *jwksServer {
	j := &jwksServer{body: testjwt.JWKS(keys)}
	j.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		j.reads.Add(1)
		j.mu.Lock()
		defer j.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(j.body)
	}))
	t.Cleanup(j.Close)
	return j
}

func (j *jwksServer) set(keys map[string]testjwt.Pair) {
	j.mu.Lock()
	j.body = testjwt.JWKS(keys)
	j.mu.Unlock()
}

// TestAuthJWKS: a JWKS from a URL (a local HTTP server) and from a file.
// A token naming a new kid makes the server read the set again (key
// rotation), at most once per interval; when the set cannot be read
// (server down, file gone) the keys read before still verify, and a new
// kid is refused with the reason.
func TestAuthJWKS(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		k1, k2, k3 := testjwt.Pairs()["RS"], testjwt.NewPair("ES"), testjwt.NewPair("EdDSA")
		claims := testjwt.Claims(time.Hour, testjwt.Topics([]string{"*"}, []string{"*"}))
		signed := func(p testjwt.Pair, kid string) []string {
			return bearerHeader(testjwt.Sign(t, p.Method(), p.Private, claims, "kid", kid))
		}
		const interval = 300 * time.Millisecond

		t.Run("url", func(t *testing.T) {
			t.Parallel()
			js := newJWKSServer(t, map[string]testjwt.Pair{"k1": k1})
			var logs syncBuffer
			a := newAuth(t, auth.Config{JWKS: js.URL, JWKSInterval: interval, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			addr, _, _ := p.startServer(t, engine.Config{}, Config{Auth: a})
			wantAnswer(t, p.publishWith(t, addr, "", "k1", signed(k1, "k1")...), http.StatusAccepted, "")
			if n := js.reads.Load(); n != 1 {
				t.Errorf("%d reads for a known kid, want the first one only", n)
			}
			// Rotation: k2 is added; a token naming it is the first the server hears of it.
			js.set(map[string]testjwt.Pair{"k1": k1, "k2": k2})
			time.Sleep(interval)
			wantAnswer(t, p.publishWith(t, addr, "", "k2", signed(k2, "k2")...), http.StatusAccepted, "")
			if n := js.reads.Load(); n != 2 {
				t.Errorf("%d reads after a new kid, want 2", n)
			}
			// Unknown kids within the interval do not read again.
			for range 5 {
				wantAnswer(t, p.publishWith(t, addr, "", "k3", signed(k3, "k3")...), http.StatusUnauthorized, `unknown key id "k3"`)
			}
			if n := js.reads.Load(); n != 2 {
				t.Errorf("%d reads after unknown kids within the interval, want still 2", n)
			}
			// A kid of one key type with another's algorithm is refused.
			wantAnswer(t, p.publishWith(t, addr, "", "x", signed(k2, "k1")...), http.StatusUnauthorized, "wrong algorithm")

			// The server goes down: cached keys still verify; a new kid is refused, saying why.
			js.Close()
			time.Sleep(interval)
			start := time.Now()
			wantAnswer(t, p.publishWith(t, addr, "", "k3", signed(k3, "k3")...), http.StatusUnauthorized, "the key set could not be read")
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("refusing took %v with the JWKS server down", d)
			}
			wantAnswer(t, p.publishWith(t, addr, "", "k1 again", signed(k1, "k1")...), http.StatusAccepted, "")
			wantAnswer(t, p.publishWith(t, addr, "", "k2 again", signed(k2, "k2")...), http.StatusAccepted, "")
			if s := logs.String(); !strings.Contains(s, "keeping the keys read before") {
				t.Errorf("no warning in the log:\n%s", s)
			}
		})

		t.Run("file", func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "jwks.json")
			if err := os.WriteFile(path, testjwt.JWKS(map[string]testjwt.Pair{"k1": k1}), 0o600); err != nil {
				t.Fatal(err)
			}
			addr, _, _ := p.startServer(t, engine.Config{}, Config{Auth: newAuth(t, auth.Config{JWKS: path, JWKSInterval: interval})})
			wantStream(t, p.subscribe(t, addr, "/sse", signed(k1, "k1")...), http.StatusOK, "")
			wantStream(t, p.subscribe(t, addr, "/sse", signed(k3, "k3")...), http.StatusUnauthorized, `unknown key id "k3"`)
			if err := os.WriteFile(path, testjwt.JWKS(map[string]testjwt.Pair{"k1": k1, "k3": k3}), 0o600); err != nil {
				t.Fatal(err)
			}
			time.Sleep(interval)
			wantStream(t, p.subscribe(t, addr, "/sse", signed(k3, "k3")...), http.StatusOK, "")
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			time.Sleep(interval)
			wantStream(t, p.subscribe(t, addr, "/sse", signed(k2, "k2")...), http.StatusUnauthorized, "the key set could not be read")
			wantStream(t, p.subscribe(t, addr, "/sse", signed(k3, "k3")...), http.StatusOK, "")
		})

		t.Run("refused at start", func(t *testing.T) {
			t.Parallel()
			js := newJWKSServer(t, nil)
			js.set(map[string]testjwt.Pair{})
			for name, src := range map[string]string{"empty set": js.URL, "no file": filepath.Join(t.TempDir(), "none.json")} {
				if _, err := auth.New(auth.Config{JWKS: src, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err == nil {
					t.Errorf("%s: auth.New accepted it", name)
				}
			}
		})
	})
}

// TestAuthPublishKeys: with publish keys, publishers' tokens are verified
// with them only, subscribers' with the other keys only.
func TestAuthPublishKeys(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		es := testjwt.Pairs()["ES"]
		addr, _, _ := p.startServer(t, engine.Config{}, Config{Auth: newAuth(t, auth.Config{
			Keys: []auth.Key{secretKey(t, testSecret)}, PublishKeys: []auth.Key{pemKey(t, es)},
		})})
		claims := testjwt.Claims(time.Hour, testjwt.Topics([]string{"*"}, []string{"*"}))
		byPublisher := bearerHeader(testjwt.Sign(t, es.Method(), es.Private, claims))
		bySecret := bearerHeader(testjwt.HS256(t, testSecret, claims))
		wantAnswer(t, p.publishWith(t, addr, "", "x", byPublisher...), http.StatusAccepted, "")
		wantAnswer(t, p.publishWith(t, addr, "", "x", bySecret...), http.StatusUnauthorized, "wrong algorithm")
		wantStream(t, p.subscribe(t, addr, "/sse", bySecret...), http.StatusOK, "")
		wantStream(t, p.subscribe(t, addr, "/sse", byPublisher...), http.StatusUnauthorized, "wrong algorithm")
	})
}

// TestAuthExpiringStream: a stream ends at its token's exp (leeway 0)
// with ": expired" and a retry hint; the client comes back with a new
// token and its Last-Event-ID and gets what was published meanwhile,
// nothing lost or repeated. A reconnect with the old token is refused.
func TestAuthExpiringStream(t *testing.T) {
	t.Parallel()
	forEachProto(t, func(t *testing.T, p proto) {
		addr, eng, _ := p.startServer(t, engine.Config{TimeoutRetry: 100 * time.Millisecond}, Config{Auth: newAuth(t, auth.Config{Keys: []auth.Key{secretKey(t, testSecret)}})})
		topics := testjwt.Topics([]string{"*"}, []string{"*"})
		publisher := bearerHeader(testjwt.HS256(t, testSecret, testjwt.Claims(time.Hour, topics)))
		exp := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
		short := testjwt.HS256(t, testSecret, jwt.MapClaims{"exp": exp.Unix(), "tinysse": topics})

		s := p.subscribe(t, addr, "/sse?topic=t", bearerHeader(short)...)
		wantStream(t, s, http.StatusOK, "")
		s.expectOK()
		waitSubscribers(t, eng, "t", 1)
		pub := func(body string) {
			t.Helper()
			wantAnswer(t, p.do(t, http.MethodPost, "http://"+addr+"/sse?topic=t", body, append([]string{"Content-Type", "application/json"}, publisher...)...), http.StatusAccepted, "")
		}
		pub(`{"id":"1","data":"one"}`)
		s.expectLines("id: 1", "data: one")
		b := s.nextSkipping(isKeepAlive)
		if b.Raw != ": expired\nretry: 100\n\n" {
			t.Fatalf("got %q, want the expiry", b.Raw)
		}
		if now := time.Now(); now.Before(exp) {
			t.Errorf("ended %v before exp", exp.Sub(now))
		}
		if _, err := s.next(wait); !isClosed(err) {
			t.Fatalf("the stream was not closed: %v", err)
		}
		// Published while the client is away.
		pub(`{"id":"2","data":"two"}`)
		wantStream(t, p.subscribe(t, addr, "/sse?topic=t", append(bearerHeader(short), "Last-Event-ID", "1")...), http.StatusUnauthorized, "token expired")
		fresh := testjwt.HS256(t, testSecret, testjwt.Claims(time.Hour, topics))
		r := p.subscribe(t, addr, "/sse?topic=t", append(bearerHeader(fresh), "Last-Event-ID", "1")...)
		wantStream(t, r, http.StatusOK, "")
		r.expectOK()
		r.expectLines("id: 2", "data: two")
		pub(`{"id":"3","data":"three"}`)
		r.expectLines("id: 3", "data: three")
		// Counted once the goodbye is written and the socket closed: wait.
		waitFor(t, wait, "the expired stream to be counted", func() bool { return eng.Stats().Closed.Expired == 1 })
	})
}
