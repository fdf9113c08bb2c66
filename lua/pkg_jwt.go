package lua

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	glua "github.com/yuin/gopher-lua"
)

func init() { builtins["jwt"] = openJWT }

// The algorithm families; a key admits one family and nothing else, so a
// token can never pick how its own key is read.
var (
	jwtHMAC    = []string{"HS256", "HS384", "HS512"}
	jwtRSA     = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	jwtEd25519 = []string{"EdDSA"}
)

// openJWT: jwt.sign(claims, key, alg?) -> token; jwt.verify(token, key,
// opts?) -> claims, or nil and why; jwt.now() -> Unix seconds (the sandbox
// has no os.time, and exp/nbf/iat are counted from it).
//
// A bad key or bad options are errors; a token that does not verify is
// nil and a message: "bad signature", "token expired", "token not yet
// valid", "wrong algorithm: ...", "wrong audience", "wrong issuer",
// "malformed token", or the library's reason.
func openJWT(_ *vm, L *glua.LState) glua.LValue {
	mod := L.CreateTable(0, 3)
	mod.RawSetString("sign", L.NewFunction(jwtSign))
	mod.RawSetString("verify", L.NewFunction(jwtVerify))
	mod.RawSetString("now", L.NewFunction(func(L *glua.LState) int {
		L.Push(glua.LNumber(time.Now().Unix()))
		return 1
	}))
	return mod
}

// jwtSign: HS* sign with a secret string; RS*, PS*, ES* and EdDSA with a
// PEM private key (PKCS#1, SEC 1 or PKCS#8).
func jwtSign(L *glua.LState) int {
	claims := L.CheckTable(1)
	key := L.CheckString(2)
	alg := L.OptString(3, "HS256")
	g, err := toGo(claims)
	if err != nil {
		L.ArgError(1, err.Error())
	}
	m, ok := tplIntegers(g).(map[string]any)
	if !ok {
		L.ArgError(1, "claims must be a table of names, not a list")
	}
	method := jwt.GetSigningMethod(alg)
	if method == nil || alg == "none" {
		L.ArgError(3, fmt.Sprintf("unsupported algorithm %q (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384/512, EdDSA)", alg))
	}
	var signKey any
	switch {
	case slices.Contains(jwtHMAC, alg):
		signKey, err = jwtSecret(key)
	case slices.Contains(jwtRSA, alg):
		signKey, err = jwt.ParseRSAPrivateKeyFromPEM([]byte(key))
	case strings.HasPrefix(alg, "ES"):
		signKey, err = jwt.ParseECPrivateKeyFromPEM([]byte(key))
	default: // EdDSA
		signKey, err = jwt.ParseEdPrivateKeyFromPEM([]byte(key))
	}
	if err != nil {
		L.RaiseError("jwt.sign: %s key: %v", alg, err)
	}
	tok, err := jwt.NewWithClaims(method, jwt.MapClaims(m)).SignedString(signKey)
	if err != nil {
		L.RaiseError("jwt.sign: %v", err)
	}
	L.Push(glua.LString(tok))
	return 1
}

// jwtVerify: key is a secret string (HS*) or a PEM public key or
// certificate (RS*/PS*, ES* of the key's curve, EdDSA). opts: alg (a name
// or a list, within the key's family), leeway (seconds), aud (a name or a
// list: any of them), iss. exp and nbf are checked whenever present.
func jwtVerify(L *glua.LState) int {
	tok := L.CheckString(1)
	key, family, err := jwtVerifyKey(L.CheckString(2))
	if err != nil {
		L.RaiseError("jwt.verify: %v", err)
	}
	allowed, popts, err := jwtOptions(L.OptTable(3, L.NewTable()), family)
	if err != nil {
		L.RaiseError("jwt.verify: %v", err)
	}
	claims := jwt.MapClaims{}
	var algErr error // the library's message for it would bury the reason
	_, err = jwt.NewParser(popts...).ParseWithClaims(tok, claims, func(t *jwt.Token) (any, error) {
		if alg := t.Method.Alg(); !slices.Contains(allowed, alg) {
			algErr = fmt.Errorf("wrong algorithm: token is %s, allowed: %s", alg, strings.Join(allowed, ", "))
			return nil, algErr
		}
		return key, nil
	})
	if err != nil {
		reason := jwtReason(err)
		if algErr != nil {
			reason = algErr.Error()
		}
		L.Push(glua.LNil)
		L.Push(glua.LString(reason))
		return 2
	}
	L.Push(fromGo(L, map[string]any(claims), 0))
	return 1
}

// jwtReason says why a token was refused.
func jwtReason(err error) string {
	for _, r := range []struct {
		err error
		msg string
	}{
		{jwt.ErrTokenMalformed, "malformed token"},
		{jwt.ErrTokenSignatureInvalid, "bad signature"},
		{jwt.ErrTokenExpired, "token expired"},
		{jwt.ErrTokenNotValidYet, "token not yet valid"},
		{jwt.ErrTokenInvalidAudience, "wrong audience"},
		{jwt.ErrTokenInvalidIssuer, "wrong issuer"},
	} {
		if errors.Is(err, r.err) {
			return r.msg
		}
	}
	return err.Error()
}

// jwtOptions reads verify's options: the algorithms allowed and the
// parser's options.
func jwtOptions(opts *glua.LTable, family []string) ([]string, []jwt.ParserOption, error) {
	allowed := family
	var popts []jwt.ParserOption
	var err error
	set := func(e error) {
		if err == nil {
			err = e
		}
	}
	names := func(what string, v glua.LValue) []string {
		switch x := v.(type) {
		case glua.LString:
			return []string{string(x)}
		case *glua.LTable:
			var out []string
			for i := 1; i <= x.Len(); i++ {
				s, ok := x.RawGetInt(i).(glua.LString)
				if !ok {
					set(fmt.Errorf("%s must be a string or a list of strings", what))
				}
				out = append(out, string(s))
			}
			if len(out) == 0 {
				set(fmt.Errorf("%s is an empty list", what))
			}
			return out
		}
		set(fmt.Errorf("%s must be a string or a list of strings, not %s", what, v.Type()))
		return nil
	}
	opts.ForEach(func(k, v glua.LValue) {
		switch key, _ := k.(glua.LString); key {
		case "alg":
			algs := names("alg", v)
			for _, a := range algs {
				if !slices.Contains(family, a) {
					set(fmt.Errorf("alg %q does not fit this key (it admits %s)", a, strings.Join(family, ", ")))
				}
			}
			allowed = algs
		case "leeway":
			n, ok := v.(glua.LNumber)
			if !ok || n < 0 || math.IsInf(float64(n), 0) {
				set(errors.New("leeway must be a number of seconds >= 0"))
			}
			popts = append(popts, jwt.WithLeeway(time.Duration(float64(n)*float64(time.Second))))
		case "aud":
			popts = append(popts, jwt.WithAudience(names("aud", v)...))
		case "iss":
			s, ok := v.(glua.LString)
			if !ok {
				set(errors.New("iss must be a string"))
			}
			popts = append(popts, jwt.WithIssuer(string(s)))
		default:
			set(fmt.Errorf("unknown option %s (options: alg, leeway, aud, iss)", k.String()))
		}
	})
	return allowed, popts, err
}

// jwtVerifyKey reads a verification key and the algorithms it admits.
func jwtVerifyKey(key string) (any, []string, error) {
	if !strings.Contains(key, "-----BEGIN") {
		k, err := jwtSecret(key)
		return k, jwtHMAC, err
	}
	block, _ := pem.Decode([]byte(key))
	if block == nil {
		return nil, nil, errors.New("key is not valid PEM")
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
		return nil, nil, fmt.Errorf("a %s cannot verify: give a secret, a PEM PUBLIC KEY or a CERTIFICATE", block.Type)
	}
	if err != nil {
		return nil, nil, err
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return k, jwtRSA, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return k, []string{"ES256"}, nil
		case elliptic.P384():
			return k, []string{"ES384"}, nil
		case elliptic.P521():
			return k, []string{"ES512"}, nil
		}
		return nil, nil, fmt.Errorf("unsupported curve %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return k, jwtEd25519, nil
	}
	return nil, nil, fmt.Errorf("unsupported public key %T", pub)
}

// jwtSecret is an HMAC key. A PEM key is refused: used as a secret it
// would let anyone holding the public key forge tokens.
func jwtSecret(key string) ([]byte, error) {
	if key == "" {
		return nil, errors.New("empty secret")
	}
	if strings.Contains(key, "-----BEGIN") {
		return nil, errors.New("a PEM key cannot be an HMAC secret")
	}
	return []byte(key), nil
}
