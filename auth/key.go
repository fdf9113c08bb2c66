package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The algorithm families. A key admits one family and nothing else, so a
// token can never choose how its key is read: an HMAC algorithm never
// meets a public key (key confusion), and "none" is in no family.
var (
	hmacAlgs    = []string{"HS256", "HS384", "HS512"}
	rsaAlgs     = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	ed25519Algs = []string{"EdDSA"}
)

// Key is a key that verifies tokens, with the algorithms its type admits.
// The zero Key verifies nothing.
type Key struct {
	// ID is the key's "kid" in a JWKS; "" for a key given on the command
	// line.
	ID   string
	key  any // []byte, *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	algs []string
}

// Algs returns the algorithms the key admits. The slice must not be
// changed.
func (k Key) Algs() []string { return k.algs }

// Admits says whether a token signed with alg may be verified with k.
func (k Key) Admits(alg string) bool { return slices.Contains(k.algs, alg) }

// Restrict narrows the algorithms k admits to algs (a JWK's "alg", or
// jwt.verify's alg option). It fails when one of algs is not in k's family.
func (k Key) Restrict(algs ...string) (Key, error) {
	for _, a := range algs {
		if !k.Admits(a) {
			return Key{}, fmt.Errorf("alg %q does not fit this key (it admits %s)", a, strings.Join(k.algs, ", "))
		}
	}
	k.algs = slices.Clone(algs)
	return k, nil
}

// SecretKey is an HMAC key (HS256, HS384, HS512). A PEM key is refused:
// used as a secret, it would let anyone who holds the public key sign
// tokens.
func SecretKey(secret []byte) (Key, error) {
	if len(secret) == 0 {
		return Key{}, errors.New("empty secret")
	}
	if strings.Contains(string(secret), "-----BEGIN") {
		return Key{}, errors.New("a PEM key cannot be an HMAC secret")
	}
	return Key{key: slices.Clone(secret), algs: hmacAlgs}, nil
}

// ParseKey reads a PEM public key ("PUBLIC KEY", "RSA PUBLIC KEY") or a
// certificate: RSA admits RS* and PS*, ECDSA the ES* of its curve, Ed25519
// EdDSA. Private keys are refused (give the public half).
func ParseKey(data []byte) (Key, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return Key{}, errors.New("key is not valid PEM")
	}
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	default:
		return Key{}, fmt.Errorf("a %s cannot verify: give a PEM PUBLIC KEY or a CERTIFICATE", block.Type)
	}
	if err != nil {
		return Key{}, err
	}
	return publicKey(pub)
}

// publicKey is the Key of a parsed public key.
func publicKey(pub any) (Key, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return Key{key: k, algs: rsaAlgs}, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return Key{key: k, algs: []string{"ES256"}}, nil
		case elliptic.P384():
			return Key{key: k, algs: []string{"ES384"}}, nil
		case elliptic.P521():
			return Key{key: k, algs: []string{"ES512"}}, nil
		}
		return Key{}, fmt.Errorf("unsupported curve %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return Key{key: k, algs: ed25519Algs}, nil
	}
	return Key{}, fmt.Errorf("unsupported public key %T", pub)
}
