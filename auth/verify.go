package auth

import (
	"errors"
	"fmt"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// AlgError is a token signed with an algorithm that no key admits (none,
// HMAC where the key is public, another family or curve).
type AlgError struct {
	Alg     string
	Allowed []string // every algorithm the keys admit
}

func (e *AlgError) Error() string {
	return fmt.Sprintf("wrong algorithm: token is %s, allowed: %s", e.Alg, strings.Join(e.Allowed, ", "))
}

// KeyIDError is a token naming a key ("kid") that the key set does not
// hold, even after reading it again (Why says why it was not read).
type KeyIDError struct {
	KID string
	Why string
}

func (e *KeyIDError) Error() string {
	s := fmt.Sprintf("unknown key id %q", e.KID)
	if e.Why != "" {
		s += " (" + e.Why + ")"
	}
	return s
}

// Verify checks tok's signature with key (only with an algorithm key
// admits), its exp and nbf whenever present, and what opts ask (audience,
// issuer, leeway). It returns the token's claims.
func Verify(tok string, key Key, opts ...jwt.ParserOption) (jwt.MapClaims, error) {
	return verify(tok, func(alg, _ string) ([]Key, error) {
		if !key.Admits(alg) {
			return nil, &AlgError{Alg: alg, Allowed: key.algs}
		}
		return []Key{key}, nil
	}, opts)
}

// verify parses tok, asks keys for the keys that may verify it (by its
// header's alg and kid) and tries each.
func verify(tok string, keys func(alg, kid string) ([]Key, error), opts []jwt.ParserOption) (jwt.MapClaims, error) {
	claims := jwt.MapClaims{}
	_, err := jwt.NewParser(opts...).ParseWithClaims(tok, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		ks, err := keys(t.Method.Alg(), kid)
		if err != nil {
			return nil, err
		}
		if len(ks) == 1 {
			return ks[0].key, nil
		}
		set := jwt.VerificationKeySet{Keys: make([]jwt.VerificationKey, len(ks))}
		for i, k := range ks {
			set.Keys[i] = k.key
		}
		return set, nil
	})
	if err != nil {
		return nil, err
	}
	return claims, nil
}

// Reason says in a few words why a token was refused: "malformed token",
// "bad signature", "token expired", "token not yet valid", "wrong
// audience", "wrong issuer", "wrong algorithm: ...", "unknown key id ...",
// or the library's own words.
func Reason(err error) string {
	var alg *AlgError
	var kid *KeyIDError
	switch {
	case errors.As(err, &alg):
		return alg.Error()
	case errors.As(err, &kid):
		return kid.Error()
	}
	for _, r := range []struct {
		err error
		msg string
	}{
		{jwt.ErrTokenMalformed, "malformed token"},
		{jwt.ErrTokenSignatureInvalid, "bad signature"},
		{jwt.ErrTokenExpired, "token expired"},
		{jwt.ErrTokenNotValidYet, "token not yet valid"},
		{jwt.ErrTokenUsedBeforeIssued, "token used before issued"},
		{jwt.ErrTokenInvalidAudience, "wrong audience"},
		{jwt.ErrTokenInvalidIssuer, "wrong issuer"},
	} {
		if errors.Is(err, r.err) {
			return r.msg
		}
	}
	return err.Error()
}
