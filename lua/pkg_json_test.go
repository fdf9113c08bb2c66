package lua_test

import (
	"strings"
	"testing"

	"github.com/tinysse/tinysse/lua"
)

// evalPrelude is defined before every snippet evalLua runs: eq(got, want,
// what) fails with both values when they differ.
const evalPrelude = `
function eq(got, want, what)
  if got ~= want then
    error(string.format("%s: got %q, want %q", what or "value", tostring(got), tostring(want)), 2)
  end
end
`

// evalLua runs body as the body of startup(cli) in a fresh runtime and
// returns what it printed, or the error that stopped startup (with the
// script's line).
func evalLua(t testing.TB, body string) (string, error) {
	t.Helper()
	return evalLuaWith(t, lua.Config{}, body)
}

// evalLuaWith is evalLua with cfg (its Source, Script and Stdout are set here).
func evalLuaWith(t testing.TB, cfg lua.Config, body string) (string, error) {
	t.Helper()
	out := &syncBuffer{}
	cfg.Source = []byte(evalPrelude + "function startup(cli)\n" + body + "\nend\n")
	cfg.Script, cfg.Stdout = "test.lua", out
	rt, err := lua.Load(cfg)
	if err != nil {
		t.Fatalf("lua.Load: %v", err)
	}
	err = rt.Start()
	rt.Close()
	return out.String(), err
}

// mustEval is evalLua failing the test on an error.
func mustEval(t testing.TB, body string) string {
	t.Helper()
	out, err := evalLua(t, body)
	if err != nil {
		t.Fatalf("%v\noutput:\n%s", err, out)
	}
	return out
}

func TestJSONEncode(t *testing.T) {
	mustEval(t, `
local json = require "json"
eq(json.encode({1, 2, 3}), "[1,2,3]", "list")
eq(json.encode({a = 1, b = {c = "x"}}), '{"a":1,"b":{"c":"x"}}', "object")
eq(json.encode({z = 1, a = 2, m = 3}), '{"a":2,"m":3,"z":1}', "sorted keys")
eq(json.encode({}), "{}", "empty plain table is an object")
eq(json.encode(json.array()), "[]", "json.array() is an array even when empty")
eq(json.encode(json.array({1, "a"})), '[1,"a"]', "json.array(t) marks t")
eq(json.encode({list = json.array(), obj = {}}), '{"list":[],"obj":{}}', "empty array and object inside")
eq(json.encode({[1] = "a", [3] = "c"}), '{"1":"a","3":"c"}', "a list with a hole is an object")
eq(json.encode({[2] = "b"}), '{"2":"b"}', "keys not starting at 1 are an object")
eq(json.encode({"a", x = 1}), '{"1":"a","x":1}', "mixed keys are an object")
eq(json.encode({[1.5] = true}), '{"1.5":true}', "a fractional key")
eq(json.encode(3), "3", "integral number")
eq(json.encode(3.0), "3", "3.0 is written 3")
eq(json.encode(-0.5), "-0.5", "fraction")
eq(json.encode(2^53), "9007199254740992", "2^53 exactly")
eq(json.encode(-(2^53)), "-9007199254740992", "-2^53 exactly")
eq(json.encode(1e300), "1e+300", "huge number")
eq(json.encode(true), "true", "boolean")
eq(json.encode(nil), "null", "nil")
eq(json.encode(json.null), "null", "json.null")
eq(json.encode({a = json.null}), '{"a":null}', "json.null in an object")
eq(json.encode({1, json.null, 3}), "[1,null,3]", "json.null in a list")
eq(json.encode('quote " backslash \\ newline \n <tag> & é'), '"quote \\" backslash \\\\ newline \\n <tag> & é"', "string escapes, no HTML escaping")
eq(json({a = "b"}), '{"a":"b"}', "json(v) encodes")
eq(json.encode({a = {1, 2}}, true), '{\n  "a": [\n    1,\n    2\n  ]\n}', "pretty")
local shared = {1}
eq(json.encode({a = shared, b = shared}), '{"a":[1],"b":[1]}', "a table twice, not nested, is no cycle")
`)
}

func TestJSONDecode(t *testing.T) {
	mustEval(t, `
local json = require "json"
local v = json.decode('{"s":"x","n":3,"f":1.5,"t":true,"a":[1,"two",null],"o":{"k":"v"},"z":null}')
eq(v.s, "x", "string")
eq(v.n, 3, "integer")
eq(tostring(v.n), "3", "an integer prints without a fraction")
eq(v.f, 1.5, "fraction")
eq(v.t, true, "boolean")
eq(#v.a, 3, "null keeps its place in a list")
eq(v.a[1], 1, "list item 1")
eq(v.a[2], "two", "list item 2")
eq(v.a[3], json.null, "null in a list is json.null")
eq(v.o.k, "v", "nested object")
eq(v.z, json.null, "null in an object is json.null")
eq(json.decode("null"), json.null, "top-level null")
eq(tostring(json.null), "null", "tostring(json.null)")
eq(json.decode("9007199254740992"), 2^53, "2^53")
eq(json.decode('"\\u00e9\\n"'), "é\n", "escapes")
eq(#json.decode("[]"), 0, "empty list")

-- round trips
for _, s in ipairs({'[]', '{}', '{"a":[],"b":{}}', '[null]', '{"a":null}', '[[],[[]],{}]', '[1,2.5,-3]', '{"1":"x"}'}) do
  eq(json.encode(json.decode(s)), s, "round trip of " .. s)
end
local arr = json.decode("[]")
arr[1] = "added"
eq(json.encode(arr), '["added"]', "a decoded list stays a list")
`)
}

func TestJSONErrors(t *testing.T) {
	cases := []struct{ name, expr, want string }{
		{"bad json", `json.decode("{bad")`, "json.decode: invalid character"},
		{"trailing data", `json.decode("[1] 2")`, "json.decode: invalid character"},
		{"empty input", `json.decode("")`, "json.decode: unexpected end"},
		{"decode of a table", `json.decode({})`, "bad argument #1"},
		{"NaN", `json.encode(0/0)`, "json.encode: cannot encode NaN"},
		{"infinity", `json.encode({x = 1/0})`, "json.encode: x: cannot encode +Inf"},
		{"function", `json.encode({f = print})`, "json.encode: f: cannot encode a function"},
		{"path of an error", `json.encode({a = {1, {b = {print}}}})`, "json.encode: a[2].b[1]: cannot encode a function"},
		{"boolean key", `json.encode({[true] = 1})`, "cannot encode a boolean key"},
		{"cycle", `local t = {}; t.self = t; json.encode(t)`, "contains itself"},
		{"deep table", `local t = {}; for i = 1, 101 do t = {t} end; json.encode(t)`, "nested deeper than 100"},
		{"deep json", `json.decode(string.rep("[", 101) .. string.rep("]", 101))`, "nested deeper than 100"},
		{"array with a name", `local a = json.array(); a.x = 1; json.encode(a)`, "not a positive integer"},
		{"print of a function", `json.print(print)`, "json: cannot encode a function"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := mustEval(t, `
local json = require "json"
local ok, err = pcall(function() `+c.expr+` end)
eq(ok, false, "pcall")
eq(type(err), "string", "error type")
print(err)`)
			if !strings.Contains(out, c.want) {
				t.Errorf("error %q, want it to contain %q", strings.TrimSpace(out), c.want)
			}
			if !strings.HasPrefix(out, "test.lua:") {
				t.Errorf("error %q does not name the script's line", strings.TrimSpace(out))
			}
		})
	}
	// Nesting up to the limit is fine.
	mustEval(t, `
local json = require "json"
local t = {}
for i = 1, 99 do t = {t} end
eq(#json.encode(t), 200, "99 nested lists and an empty object")
eq(type(json.decode(string.rep("[", 100) .. string.rep("]", 100))), "table", "100 nested lists")`)
}

func TestJSONPrint(t *testing.T) {
	out := mustEval(t, `
local json = require "json"
json.print({foo = "bar", nums = {1, 2, 3}})
json.pprint({foo = "bar", nums = {1, 2}, empty = json.array()})`)
	want := `{"foo":"bar","nums":[1,2,3]}
{
  "empty": [],
  "foo": "bar",
  "nums": [
    1,
    2
  ]
}
`
	if out != want {
		t.Errorf("printed\n%s\nwant\n%s", out, want)
	}
}
