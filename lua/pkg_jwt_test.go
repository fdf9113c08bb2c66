package lua

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jwtTestKey is a key pair, PEM-encoded: PKCS#8 private, PKIX public.
type jwtTestKey struct{ private, public string }

var (
	jwtKeysOnce sync.Once
	jwtKeys     map[string]jwtTestKey // by algorithm family: RS, ES, EdDSA
)

func jwtTestKeys(t *testing.T) map[string]jwtTestKey {
	t.Helper()
	jwtKeysOnce.Do(func() {
		rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		_, edKey, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		pair := func(priv any, pub any) jwtTestKey {
			p8, err := x509.MarshalPKCS8PrivateKey(priv)
			if err != nil {
				panic(err)
			}
			pkix, err := x509.MarshalPKIXPublicKey(pub)
			if err != nil {
				panic(err)
			}
			return jwtTestKey{
				private: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})),
				public:  string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix})),
			}
		}
		jwtKeys = map[string]jwtTestKey{
			"RS":    pair(rsaKey, &rsaKey.PublicKey),
			"ES":    pair(ecKey, &ecKey.PublicKey),
			"EdDSA": pair(edKey, edKey.Public()),
		}
	})
	return jwtKeys
}

// jwtPrelude defines the keys as Lua globals: hs (a secret), and
// rs_priv, rs_pub, es_priv, es_pub, ed_priv, ed_pub.
func jwtPrelude(t *testing.T) string {
	keys := jwtTestKeys(t)
	return fmt.Sprintf(`local jwt = require "jwt"
hs = "a long shared secret"
rs_priv, rs_pub = [[%s]], [[%s]]
es_priv, es_pub = [[%s]], [[%s]]
ed_priv, ed_pub = [[%s]], [[%s]]`,
		keys["RS"].private, keys["RS"].public, keys["ES"].private, keys["ES"].public,
		keys["EdDSA"].private, keys["EdDSA"].public)
}

func TestJWTRoundTrip(t *testing.T) {
	out := mustRunInStartup(t, jwtPrelude(t), `
local now = jwt.now()
for _, c in ipairs{{"HS256", hs, hs}, {"HS512", hs, hs}, {"RS256", rs_priv, rs_pub}, {"PS256", rs_priv, rs_pub},
                   {"ES256", es_priv, es_pub}, {"EdDSA", ed_priv, ed_pub}} do
  local alg, priv, pub = c[1], c[2], c[3]
  local tok = jwt.sign({sub = "alice", exp = now + 60, iat = now, n = 3, topics = {"a", "b"}, admin = true}, priv, alg)
  local claims, err = jwt.verify(tok, pub)
  assert(claims, alg .. ": " .. tostring(err))
  assert(claims.sub == "alice" and claims.exp == now + 60 and claims.iat == now and claims.n == 3, alg)
  assert(claims.topics[2] == "b" and claims.admin == true, alg)
  print(alg, "ok", select(2, tok:gsub("%.", "")))
end
-- HS256 is the default
local claims = jwt.verify(jwt.sign({sub = "bob"}, hs), hs, {alg = "HS256"})
print(claims.sub)
`)
	want := "HS256\tok\t2\nHS512\tok\t2\nRS256\tok\t2\nPS256\tok\t2\nES256\tok\t2\nEdDSA\tok\t2\nbob\n"
	if out != want {
		t.Errorf("printed %q, want %q", out, want)
	}
}

func TestJWTHeader(t *testing.T) {
	out := mustRunInStartup(t, jwtPrelude(t), `print(jwt.sign({sub = "x"}, hs))`)
	head, _, _ := strings.Cut(strings.TrimSpace(out), ".")
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil || string(b) != `{"alg":"HS256","typ":"JWT"}` {
		t.Errorf("header %q (%v)", b, err)
	}
	if now := mustRunInStartup(t, jwtPrelude(t), `print(jwt.now())`); strings.TrimSpace(now) != fmt.Sprint(time.Now().Unix()) &&
		strings.TrimSpace(now) != fmt.Sprint(time.Now().Unix()-1) {
		t.Errorf("jwt.now() = %s, time.Now() = %d", now, time.Now().Unix())
	}
}

// jwtRefusals runs code, which prints the result of jwt.verify calls, and
// checks each printed line is nil and a message containing want.
func jwtRefusals(t *testing.T, code string, wants ...string) {
	t.Helper()
	out := mustRunInStartup(t, jwtPrelude(t), code)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(wants) {
		t.Fatalf("printed %q, want %d lines", out, len(wants))
	}
	for i, want := range wants {
		if want == "ok" {
			if strings.HasPrefix(lines[i], "nil") {
				t.Errorf("line %d: %q, want claims", i+1, lines[i])
			}
			continue
		}
		if !strings.HasPrefix(lines[i], "nil\t") || !strings.Contains(lines[i], want) {
			t.Errorf("line %d: %q, want nil and %q", i+1, lines[i], want)
		}
	}
}

func TestJWTTimes(t *testing.T) {
	jwtRefusals(t, `
local now = jwt.now()
local expired = jwt.sign({exp = now - 30}, hs)
print(jwt.verify(expired, hs))
print(jwt.verify(expired, hs, {leeway = 60}))
local early = jwt.sign({nbf = now + 30}, hs)
print(jwt.verify(early, hs))
print(jwt.verify(early, hs, {leeway = 60}))
print(jwt.verify(jwt.sign({exp = "tomorrow"}, hs), hs))
`, "token expired", "ok", "token not yet valid", "ok", "exp")
}

func TestJWTAlgorithms(t *testing.T) {
	// alg "none": no signature at all.
	enc := base64.RawURLEncoding.EncodeToString
	none := enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc([]byte(`{"sub":"admin"}`)) + "."
	// Key confusion: an HS256 token whose secret is the RSA public key,
	// which anyone may have.
	confused, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "admin"}).
		SignedString([]byte(jwtTestKeys(t)["RS"].public))
	if err != nil {
		t.Fatal(err)
	}
	jwtRefusals(t, `
print(jwt.verify("`+none+`", hs))
print(jwt.verify("`+none+`", rs_pub))
print(jwt.verify("`+confused+`", rs_pub))
local hs256 = jwt.sign({sub = "x"}, hs)
print(jwt.verify(hs256, hs, {alg = "HS512"}))
print(jwt.verify(hs256, hs, {alg = {"HS384", "HS256"}}))
print(jwt.verify(jwt.sign({sub = "x"}, rs_priv, "RS256"), es_pub))
print(jwt.verify(jwt.sign({sub = "x"}, ed_priv, "EdDSA"), rs_pub))
print(jwt.verify(jwt.sign({sub = "x"}, rs_priv, "RS256"), rs_pub, {alg = "PS256"}))
`, "wrong algorithm: token is none", "wrong algorithm: token is none", "wrong algorithm: token is HS256",
		"wrong algorithm", "ok", "wrong algorithm: token is RS256, allowed: ES256", "wrong algorithm: token is EdDSA", "wrong algorithm: token is RS256")
}

func TestJWTClaimsChecks(t *testing.T) {
	jwtRefusals(t, `
local tok = jwt.sign({sub = "x", aud = "api", iss = "auth"}, hs)
print(jwt.verify(tok, hs, {aud = "web"}))
print(jwt.verify(tok, hs, {aud = {"web", "api"}}))
print(jwt.verify(tok, hs, {iss = "someone"}))
print(jwt.verify(tok, hs, {iss = "auth", aud = "api"}))
print(jwt.verify(jwt.sign({sub = "x"}, hs), hs, {aud = "api"}))
`, "wrong audience", "ok", "wrong issuer", "ok", "aud")
}

func TestJWTTampered(t *testing.T) {
	jwtRefusals(t, `
local function flip(s, i)
  local c = s:sub(i, i)
  return s:sub(1, i - 1) .. (c == "A" and "B" or "A") .. s:sub(i + 1)
end
local tok = jwt.sign({sub = "x"}, hs)
print(jwt.verify(flip(tok, #tok - 3), hs))
local h, p, s = tok:match("^([^.]+)%.([^.]+)%.([^.]+)$")
local forged = h .. "." .. jwt.sign({sub = "admin"}, hs):match("^[^.]+%.([^.]+)") .. "." .. s
print(jwt.verify(forged, hs))
print(jwt.verify(tok, "another secret"))
local rs = jwt.sign({sub = "x"}, rs_priv, "RS256")
print(jwt.verify(flip(rs, #rs - 5), rs_pub))
print(jwt.verify("not.a.token", hs))
print(jwt.verify("abc", hs))
`, "bad signature", "bad signature", "bad signature", "bad signature", "malformed token", "malformed token")
}

func TestJWTErrors(t *testing.T) {
	for _, tc := range []struct{ code, want string }{
		{`jwt.sign({sub = "x"}, rs_pub)`, "a PEM key cannot be an HMAC secret"},
		{`jwt.sign({sub = "x"}, "")`, "empty secret"},
		{`jwt.sign({sub = "x"}, hs, "none")`, "unsupported algorithm"},
		{`jwt.sign({sub = "x"}, hs, "RS256")`, "RS256 key"},
		{`jwt.sign({sub = "x"}, es_priv, "ES384")`, "key is invalid"},
		{`jwt.sign({"a", "b"}, hs)`, "claims must be a table of names"},
		{`jwt.verify("x", rs_priv)`, "a PRIVATE KEY cannot verify"},
		{`jwt.verify("x", rs_pub, {alg = "HS256"})`, `alg "HS256" does not fit this key`},
		{`jwt.verify("x", hs, {alg = "none"})`, `alg "none" does not fit this key`},
		{`jwt.verify("x", es_pub, {alg = "ES384"})`, `alg "ES384" does not fit this key`},
		{`jwt.verify("x", hs, {leeway = -1})`, "leeway must be"},
		{`jwt.verify("x", hs, {audience = "a"})`, "unknown option audience"},
		{`jwt.verify("x", "-----BEGIN PUBLIC KEY-----\nnope")`, "not valid PEM"},
	} {
		_, err := runInStartup(t, jwtPrelude(t), tc.code, Config{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.code, err, tc.want)
		}
	}
}
