package lua

import (
	"strings"
	"testing"
)

// The vectors come from the Fernet spec (github.com/fernet/spec,
// verify.json and invalid.json): a token made by another implementation
// on 1985-10-26T01:20:00-07:00.
const (
	fernetSpecSecret = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="
	fernetSpecToken  = "gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA=="
)

func TestFernetSpecVector(t *testing.T) {
	out := mustRunInStartup(t, `local fernet = require "fernet"`, `
local f = fernet("`+fernetSpecSecret+`")
print(f:decrypt("`+fernetSpecToken+`"))
-- made in 1985: too old for a one-minute TTL
print(f:decrypt("`+fernetSpecToken+`", 60))
`)
	want := "hello\nnil\tfernet: invalid or expired token\n"
	if out != want {
		t.Errorf("printed %q, want %q", out, want)
	}
}

func TestFernetInvalidTokens(t *testing.T) {
	invalid := map[string]string{
		"incorrect mac":       "gAAAAAAdwJ6xAAECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPAl1-szkFVzXTuGb4hR8AKtwcaX1YdykQUFBQUFBQUFBQQ==",
		"too short":           "gAAAAAAdwJ6xAAECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPA==",
		"invalid base64":      "%%%%%%%%%%%%%AECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPAl1-szkFVzXTuGb4hR8AKtwcaX1YdykRtfsH-p1YsUD2Q==",
		"payload size":        "gAAAAAAdwJ6xAAECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPOm73QeoCk9uGib28Xe5vz6oxq5nmxbx_v7mrfyudzUm",
		"payload padding":     "gAAAAAAdwJ6xAAECAwQFBgcICQoLDA0ODz4LEpdELGQAad7aNEHbf-JkLPIpuiYRLQ3RtXatOYREu2FWke6CnJNYIbkuKNqOhw==",
		"incorrect IV":        "gAAAAAAdwJ6xBQECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPAkLhFLHpGtDBRLRTZeUfWgHSv49TF2AUEZ1TIvcZjK1zQ==",
		"very short payload":  "gAAAAABdnQ1TUKh2OE_ggbyCIxfg",
		"super short payload": "gAAA",
		"empty":               "",
	}
	for desc, tok := range invalid {
		out := mustRunInStartup(t, `local fernet = require "fernet"`, `
local f = fernet("`+fernetSpecSecret+`")
print(f:decrypt("`+tok+`"))
`)
		if out != "nil\tfernet: invalid or expired token\n" {
			t.Errorf("%s: printed %q", desc, out)
		}
	}
}

func TestFernetRoundTrip(t *testing.T) {
	out := mustRunInStartup(t, `local fernet = require "fernet"`, `
local key = fernet.genkey()
assert(#key == 44 and key:match("^[A-Za-z0-9_-]+=$"), key)
assert(fernet.genkey() ~= key)
local f = fernet(key)
local secret = "my secret message \0 with a zero byte"
local tok = f:encrypt(secret)
assert(tok:sub(1, 6) == "gAAAAA", tok)
assert(f:encrypt(secret) ~= tok, "a fresh IV per token")
assert(f:decrypt(tok) == secret)
assert(f:decrypt(tok, 60) == secret, "a fresh token is within a TTL")
assert(f:decrypt(f:encrypt("")) == "")
-- another key, or an altered token, does not decrypt
local other = fernet(fernet.genkey())
print(other:decrypt(tok))
local altered = tok:sub(1, 30) .. (tok:sub(31, 31) == "A" and "B" or "A") .. tok:sub(32)
print(f:decrypt(altered))
`)
	want := "nil\tfernet: invalid or expired token\nnil\tfernet: invalid or expired token\n"
	if out != want {
		t.Errorf("printed %q, want %q", out, want)
	}
}

func TestFernetErrors(t *testing.T) {
	for _, tc := range []struct{ code, want string }{
		{`fernet("short")`, "fernet: invalid key"},
		{`fernet()`, "string expected"},
		{`local f = fernet(fernet.genkey()); f.encrypt("x")`, "fernet object expected"},
		{`local f = fernet(fernet.genkey()); f:decrypt("x", -1)`, "ttl must be"},
	} {
		_, err := runInStartup(t, `local fernet = require "fernet"`, tc.code, Config{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.code, err, tc.want)
		}
	}
}
