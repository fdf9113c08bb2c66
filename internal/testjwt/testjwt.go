// Package testjwt makes signing keys and tokens for tests of the built-in
// JWT check: one key pair of each type the server verifies, their PEM
// public halves and JWKs, and signed tokens.
package testjwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Pair is a private key, its public key's PEM, and the algorithm tests
// sign with.
type Pair struct {
	Alg       string
	Private   crypto.Signer
	PublicPEM []byte
}

// Method is the pair's signing method.
func (p Pair) Method() jwt.SigningMethod { return jwt.GetSigningMethod(p.Alg) }

// JWK is the pair's public key as a JWK with kid.
func (p Pair) JWK(kid string) map[string]any {
	b := func(x []byte) string { return base64.RawURLEncoding.EncodeToString(x) }
	k := map[string]any{"kid": kid, "use": "sig"}
	switch pub := p.Private.Public().(type) {
	case *rsa.PublicKey:
		k["kty"], k["n"], k["e"] = "RSA", b(pub.N.Bytes()), b(big.NewInt(int64(pub.E)).Bytes())
	case *ecdsa.PublicKey:
		raw, err := pub.Bytes()
		if err != nil {
			panic(err)
		}
		size := (len(raw) - 1) / 2
		k["kty"], k["crv"], k["x"], k["y"] = "EC", pub.Curve.Params().Name, b(raw[1:1+size]), b(raw[1+size:])
	case ed25519.PublicKey:
		k["kty"], k["crv"], k["x"] = "OKP", "Ed25519", b(pub)
	}
	return k
}

var (
	once  sync.Once
	pairs map[string]Pair
)

// Pairs returns one key pair per type, made once per test binary: "RS"
// (RSA 2048, RS256), "PS" (the same RSA key, PS256), "ES" (P-256, ES256),
// "EdDSA" (Ed25519).
func Pairs() map[string]Pair {
	once.Do(func() {
		rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		pairs = map[string]Pair{
			"RS":    {Alg: "RS256", Private: rsaKey, PublicPEM: publicPEM(rsaKey)},
			"PS":    {Alg: "PS256", Private: rsaKey, PublicPEM: publicPEM(rsaKey)},
			"ES":    NewPair("ES"),
			"EdDSA": NewPair("EdDSA"),
		}
	})
	return pairs
}

// NewPair makes a fresh ES256 ("ES") or EdDSA pair (another key of a type,
// for a wrong signature or a rotation).
func NewPair(kind string) Pair {
	switch kind {
	case "ES":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		return Pair{Alg: "ES256", Private: k, PublicPEM: publicPEM(k)}
	case "EdDSA":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		return Pair{Alg: "EdDSA", Private: k, PublicPEM: publicPEM(k)}
	}
	panic("testjwt: no fresh pair of kind " + kind)
}

func publicPEM(k crypto.Signer) []byte {
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// JWKS is a key set of the pairs, by kid.
func JWKS(keys map[string]Pair) []byte {
	set := struct {
		Keys []map[string]any `json:"keys"`
	}{}
	for kid, p := range keys {
		set.Keys = append(set.Keys, p.JWK(kid))
	}
	b, err := json.Marshal(set)
	if err != nil {
		panic(err)
	}
	return b
}

// Sign signs claims with method and key; header entries (a kid) are added.
func Sign(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims, header ...string) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for i := 0; i+1 < len(header); i += 2 {
		tok.Header[header[i]] = header[i+1]
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("signing a token: %v", err)
	}
	return s
}

// HS256 signs claims with secret.
func HS256(t testing.TB, secret string, claims jwt.MapClaims) string {
	t.Helper()
	return Sign(t, jwt.SigningMethodHS256, []byte(secret), claims)
}

// Claims are claims that expire in d, with the tinysse claim c.
func Claims(d time.Duration, c map[string]any) jwt.MapClaims {
	m := jwt.MapClaims{"exp": time.Now().Add(d).Unix(), "sub": "test"}
	if c != nil {
		m["tinysse"] = c
	}
	return m
}

// Topics is a tinysse claim with publish and subscribe lists.
func Topics(publish, subscribe []string) map[string]any {
	c := map[string]any{}
	if publish != nil {
		c["publish"] = publish
	}
	if subscribe != nil {
		c["subscribe"] = subscribe
	}
	return c
}
