package lua

import (
	"crypto/sha256"
	"encoding/base64"
	"time"

	"github.com/fernet/fernet-go"
	glua "github.com/yuin/gopher-lua"
)

func init() { builtins["fernet"] = openFernet }

// fernetMinToken is the size of the smallest well-formed token once
// base64-decoded: version, timestamp, IV, one AES block, HMAC.
const fernetMinToken = 1 + 8 + 16 + 16 + sha256.Size

// openFernet: fernet.genkey() -> key; fernet(key) -> f with
// f:encrypt(s) -> token and f:decrypt(token, ttl_seconds?) -> plaintext, or
// nil and a message when the token is not valid for this key (altered,
// another key's, not a token) or older than ttl_seconds. A bad key is an
// error. Tokens and keys follow the Fernet spec (github.com/fernet/spec),
// so they interoperate with Python's cryptography, Rust's fernet and the
// others.
func openFernet(_ *vm, L *glua.LState) glua.LValue {
	methods := L.CreateTable(0, 2)
	methods.RawSetString("encrypt", L.NewFunction(func(L *glua.LState) int {
		k := checkFernet(L)
		tok, err := fernet.EncryptAndSign([]byte(L.CheckString(2)), k)
		if err != nil {
			L.RaiseError("fernet: %v", err)
		}
		L.Push(glua.LString(tok))
		return 1
	}))
	methods.RawSetString("decrypt", L.NewFunction(func(L *glua.LState) int {
		k := checkFernet(L)
		tok := L.CheckString(2)
		ttl := float64(L.OptNumber(3, 0))
		if ttl < 0 {
			L.ArgError(3, "ttl must be a number of seconds >= 0 (0: no limit)")
		}
		msg := fernetDecrypt(tok, time.Duration(ttl*float64(time.Second)), k)
		if msg == nil {
			L.Push(glua.LNil)
			L.Push(glua.LString("fernet: invalid or expired token"))
			return 2
		}
		L.Push(glua.LString(msg))
		return 1
	}))
	meta := sealedMeta(L, "fernet", methods)

	mod := L.CreateTable(0, 1)
	mod.RawSetString("genkey", L.NewFunction(func(L *glua.LState) int {
		var k fernet.Key
		if err := k.Generate(); err != nil {
			L.RaiseError("fernet: %v", err)
		}
		L.Push(glua.LString(k.Encode()))
		return 1
	}))
	return callable(L, mod, func(L *glua.LState) int {
		k, err := fernet.DecodeKey(L.CheckString(1))
		if err != nil {
			L.RaiseError("fernet: invalid key (want 32 bytes, url-safe base64, as fernet.genkey gives): %v", err)
		}
		return pushUserData(L, k, meta)
	})
}

// fernetDecrypt verifies and decrypts tok; ttl 0 accepts any age. Tokens
// of an impossible length are refused before the library sees them: once
// the HMAC matches, it trusts the length.
func fernetDecrypt(tok string, ttl time.Duration, k *fernet.Key) []byte {
	raw, err := base64.URLEncoding.DecodeString(tok)
	if err != nil || len(raw) < fernetMinToken || (len(raw)-fernetMinToken)%16 != 0 {
		return nil
	}
	return fernet.VerifyAndDecrypt([]byte(tok), ttl, []*fernet.Key{k})
}

func checkFernet(L *glua.LState) *fernet.Key {
	if ud, ok := L.Get(1).(*glua.LUserData); ok {
		if k, ok := ud.Value.(*fernet.Key); ok {
			return k
		}
	}
	L.ArgError(1, "fernet object expected (call f:encrypt(s), not f.encrypt(s))")
	return nil
}
