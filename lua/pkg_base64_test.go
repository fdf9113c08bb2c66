package lua_test

import (
	"strings"
	"testing"
)

func TestBase64(t *testing.T) {
	mustEval(t, `
local base64 = require "base64"
eq(base64.encode("hello"), "aGVsbG8=", "encode pads")
eq(base64("hello"), "aGVsbG8=", "base64(v) encodes")
eq(base64.decode("aGVsbG8="), "hello", "decode")
eq(base64.encode(""), "", "empty")
eq(base64.encode(12), "MTI=", "a number is encoded as its string")
local bin = "\0\1\2\255\254\253\251\250"
eq(base64.decode(base64.encode(bin)), bin, "binary round trip")
eq(base64.encode("\251\255"), "+/8=", "standard alphabet")
eq(base64.decode("aGVs\nbG8="), "hello", "line breaks are ignored")

local urlsafe = require("base64").urlsafe()
eq(urlsafe.encode("\251\255"), "-_8=", "URL-safe alphabet, padded")
eq(urlsafe("\251\255"), "-_8=", "urlsafe(v) encodes")
eq(urlsafe.decode("-_8="), "\251\255", "URL-safe decode, padded")
eq(urlsafe.decode("-_8"), "\251\255", "URL-safe decode, unpadded")
eq(urlsafe.decode(urlsafe.encode(bin)), bin, "URL-safe round trip")
eq(require("base64").urlsafe(), urlsafe, "urlsafe() gives the same table each time")
`)
	for _, expr := range []string{
		`base64.decode("not base64!")`,
		`base64.decode("aGVsbG8")`, // standard decode wants the padding
		`base64.decode("-_8=")`,    // URL-safe alphabet
		`base64.urlsafe().decode("+/8=")`,
		`base64.urlsafe().decode("a")`,
		`base64.encode({})`,
	} {
		out := mustEval(t, `
local base64 = require "base64"
local ok, err = pcall(function() return `+expr+` end)
eq(ok, false, "pcall of `+strings.ReplaceAll(expr, `"`, `'`)+`")
print(err)`)
		if !strings.Contains(out, "base64") && !strings.Contains(out, "bad argument") {
			t.Errorf("%s: error %q", expr, out)
		}
	}
}
