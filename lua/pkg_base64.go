package lua

import (
	"encoding/base64"
	"strings"

	glua "github.com/yuin/gopher-lua"
)

func init() { builtins["base64"] = openBase64 }

// base64: encode(s), decode(s), base64(s) = encode, and urlsafe(), which
// gives the same API with the URL-safe alphabet (RFC 4648 §5).
//
// Both encode with padding, as Tiny SSE does. The standard decode wants
// the padding; the URL-safe decode takes padded and unpadded input alike,
// since tokens in URLs usually drop it. Line breaks are ignored; any other
// bad input is a Lua error.
func openBase64(_ *vm, L *glua.LState) glua.LValue {
	std := base64Table(L, "base64", base64.StdEncoding.EncodeToString, base64.StdEncoding.DecodeString)
	urlsafe := base64Table(L, "base64.urlsafe()", base64.URLEncoding.EncodeToString, func(s string) ([]byte, error) {
		if strings.HasSuffix(s, "=") {
			return base64.URLEncoding.DecodeString(s)
		}
		return base64.RawURLEncoding.DecodeString(s)
	})
	std.RawSetString("urlsafe", L.NewFunction(func(L *glua.LState) int {
		L.Push(urlsafe)
		return 1
	}))
	return std
}

func base64Table(L *glua.LState, name string, enc func([]byte) string, dec func(string) ([]byte, error)) *glua.LTable {
	encode := func(L *glua.LState) int {
		L.Push(glua.LString(enc([]byte(L.CheckString(1)))))
		return 1
	}
	t := L.CreateTable(0, 3)
	t.RawSetString("encode", L.NewFunction(encode))
	t.RawSetString("decode", L.NewFunction(func(L *glua.LState) int {
		b, err := dec(L.CheckString(1))
		if err != nil {
			L.RaiseError("%s.decode: %v", name, err)
		}
		L.Push(glua.LString(b))
		return 1
	}))
	return callable(L, t, encode)
}
