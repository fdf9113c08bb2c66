package lua_test

import (
	"strings"
	"testing"
)

func TestURLEncode(t *testing.T) {
	mustEval(t, `
local url = require "url"
eq(url.encode {
  scheme = "https", username = "user", password = "pass", host = "example.com", port = 443,
  query = "key=value", fragment = "section",
  args = {key1 = {"value1", "value2"}, key2 = {"value3"}},
}, "https://user:pass@example.com:443/?key=value&key1=value1&key1=value2&key2=value3#section", "Tiny SSE's example")
eq(url.encode {scheme = "http", host = "127.0.0.1", port = 8080, path = "/sse"}, "http://127.0.0.1:8080/sse", "no query")
eq(url.encode {scheme = "http", host = "h", path = "/a b", args = {q = "x y&z", n = 3, b = true}},
  "http://h/a%20b?b=true&n=3&q=x+y%26z", "escapes; numbers and booleans")
eq(url.encode {scheme = "http", host = "h", query = {a = {"1", "2"}}, args = {a = "3"}},
  "http://h/?a=1&a=2&a=3", "a query table merged with args")
eq(url.encode {scheme = "http", host = "::1", port = 80}, "http://[::1]:80/", "IPv6 with a port")
eq(url.encode {scheme = "http", host = "::1"}, "http://[::1]/", "IPv6")
eq(url.encode {path = "/sse", args = {chan = {"a", "b"}}}, "/sse?chan=a&chan=b", "a relative URL")
eq(url {scheme = "http", host = "h"}, "http://h/", "url(parts) encodes")
`)
	for _, expr := range []string{
		`url.encode {scheme = "http", host = "h", port = "x"}`,
		`url.encode {scheme = "http", host = "h", port = 70000}`,
		`url.encode {host = {}}`,
		`url.encode {args = {a = {{}}}}`,
		`url.encode {args = "a=b"}`,
		`url.encode "http://h"`,
	} {
		out := mustEval(t, `
local url = require "url"
local ok, err = pcall(function() return `+expr+` end)
eq(ok, false, "pcall")
print(err)`)
		if !strings.Contains(out, "url.encode") && !strings.Contains(out, "bad argument") {
			t.Errorf("%s: error %q", expr, out)
		}
	}
}

func TestURLDecode(t *testing.T) {
	mustEval(t, `
local url = require "url"
local u = url.decode "https://user:pass@example.com:8443/a%20path?key=value&key=v2&x=%C3%A9&flag#section"
eq(u.scheme, "https", "scheme")
eq(u.username, "user", "username")
eq(u.password, "pass", "password")
eq(u.host, "example.com", "host")
eq(u.port, 8443, "port is a number")
eq(u.path, "/a path", "path, decoded")
eq(u.query, "key=value&key=v2&x=%C3%A9&flag", "query, raw")
eq(u.fragment, "section", "fragment")
eq(#u.args.key, 2, "repeated name")
eq(u.args.key[1], "value", "first value")
eq(u.args.key[2], "v2", "second value")
eq(u.args.x[1], "é", "decoded value")
eq(u.args.flag[1], "", "a name without a value")

local plain = url.decode "http://[::1]/sse"
eq(plain.host, "::1", "IPv6 host")
eq(plain.port, nil, "no port")
eq(plain.query, nil, "no query")
eq(plain.username, nil, "no user")
eq(next(plain.args), nil, "args is an empty table")

-- round trip: decode gives the query twice (query and args), and encode
-- merges both, so one of them goes.
local s = "http://u:p@h:81/p?a=1&a=2#f"
local parts = url.decode(s)
eq(url.encode(parts), "http://u:p@h:81/p?a=1&a=2&a=1&a=2#f", "query and args are merged")
parts.query = nil
eq(url.encode(parts), s, "encode(decode(s)) without query")
`)
	out := mustEval(t, `
local url = require "url"
print(select(2, pcall(url.decode, "http://h/?a=%zz")))
print(select(2, pcall(url.decode, "http://[::1")))`)
	if strings.Count(out, "url.decode") != 2 {
		t.Errorf("errors %q", out)
	}
}

func TestURLQuote(t *testing.T) {
	mustEval(t, `
local url = require "url"
eq(url.quote {key = {"value1", "value2"}, other = {"value3"}}, "key=value1&key=value2&other=value3", "lists")
eq(url.quote {b = "x y", a = 1.5, c = "&="}, "a=1.5&b=x+y&c=%26%3D", "single values, sorted, escaped")
eq(url.quote {}, "", "empty")

local q = url.unquote "key=value1&key=value2&other=value3&sp=a+b%20c&semi=a;b&&empty=&novalue"
eq(#q.key, 2, "key has two values")
eq(q.key[1] .. "," .. q.key[2], "value1,value2", "key's values in order")
eq(type(q.other), "table", "a single value is a list too")
eq(q.other[1], "value3", "other")
eq(q.sp[1], "a b c", "+ and %20 are spaces")
eq(q.semi[1], "a;b", "; is an ordinary character")
eq(q.empty[1], "", "empty value")
eq(q.novalue[1], "", "no =")
eq(next(url.unquote ""), nil, "empty query")
eq(url.unquote("?a=1").a[1], "1", "a leading ? is dropped")

local back = url.unquote(url.quote {a = {"1", "2"}, b = "x"})
eq(back.a[2], "2", "quote then unquote")
`)
	out := mustEval(t, `
local url = require "url"
print(select(2, pcall(url.unquote, "a=%zz")))
print(select(2, pcall(url.quote, {a = print})))`)
	if !strings.Contains(out, "url.unquote: invalid URL escape") || !strings.Contains(out, "url.quote: a: a function value") {
		t.Errorf("errors %q", out)
	}
}
