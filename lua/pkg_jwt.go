package lua

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tinysse/tinysse/auth"
	glua "github.com/yuin/gopher-lua"
)

func init() { builtins["jwt"] = openJWT }

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
	switch method.(type) {
	case *jwt.SigningMethodHMAC:
		if _, err = auth.SecretKey([]byte(key)); err == nil {
			signKey = []byte(key)
		}
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
		signKey, err = jwt.ParseRSAPrivateKeyFromPEM([]byte(key))
	case *jwt.SigningMethodECDSA:
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
	key, err := jwtVerifyKey(L.CheckString(2))
	if err != nil {
		L.RaiseError("jwt.verify: %v", err)
	}
	key, popts, err := jwtOptions(L.OptTable(3, L.NewTable()), key)
	if err != nil {
		L.RaiseError("jwt.verify: %v", err)
	}
	claims, err := auth.Verify(tok, key, popts...)
	if err != nil {
		L.Push(glua.LNil)
		L.Push(glua.LString(auth.Reason(err)))
		return 2
	}
	L.Push(fromGo(L, map[string]any(claims), 0))
	return 1
}

// jwtOptions reads verify's options: the key narrowed to the algorithms
// allowed, and the parser's options.
func jwtOptions(opts *glua.LTable, vkey auth.Key) (auth.Key, []jwt.ParserOption, error) {
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
			k, e := vkey.Restrict(names("alg", v)...)
			if e != nil {
				set(e)
			} else {
				vkey = k
			}
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
	return vkey, popts, err
}

// jwtVerifyKey reads a verification key: a PEM public key or certificate,
// or else a secret string.
func jwtVerifyKey(key string) (auth.Key, error) {
	if strings.Contains(key, "-----BEGIN") {
		return auth.ParseKey([]byte(key))
	}
	return auth.SecretKey([]byte(key))
}
