-- The shared package, checked from startup: any failed assert stops Start.
local shared = require "shared"
local sleep = require "sleep"

function startup(cli)
  -- Each VM's startup runs in turn; only the first finds the key absent.
  print("first", cli.vm, shared.add("first", cli.vm))
  if cli.vm > 0 then return end

  -- get and set, of every kind of value
  assert(shared.get("missing") == nil, "missing key reads nil")
  shared.set("s", "text")
  shared.set("n", 42.5)
  shared.set("b", false)
  assert(shared.get("s") == "text", "string")
  assert(shared.get("n") == 42.5, "number")
  assert(shared.get("b") == false, "boolean")
  shared.set("s", "other")
  assert(shared.get("s") == "other", "set replaces")

  -- add stores only when absent
  assert(shared.add("s", "again") == false, "add returns false when present")
  assert(shared.get("s") == "other", "add leaves the value")
  assert(shared.add("new", 1) == true, "add returns true when absent")
  assert(shared.get("new") == 1, "add stores")

  -- incr: by, init
  assert(shared.incr("counter", 1) == 1, "incr starts from 0")
  assert(shared.incr("counter", 5) == 6, "incr adds")
  assert(shared.incr("counter", -2) == 4, "incr subtracts")
  assert(shared.incr("from10", 5, 10) == 15, "incr starts a missing key from init")
  assert(shared.get("from10") == 15, "incr stores")
  assert(not pcall(shared.incr, "s", 1), "incr of a string errors")

  -- delete and keys
  shared.delete("new")
  assert(shared.get("new") == nil, "delete removes")
  local keys = table.concat(shared.keys(), ",")
  assert(keys == "b,counter,first,from10,n,s", "keys: " .. keys)

  -- expiry
  shared.set("ttl", "v", 50)
  assert(shared.add("ttl-add", "v", 50) == true, "add with ttl")
  assert(shared.get("ttl") == "v", "live before its ttl")
  sleep(100)
  assert(shared.get("ttl") == nil, "expired key reads nil")
  assert(shared.get("ttl-add") == nil, "expired added key reads nil")
  assert(shared.add("ttl", "back") == true, "add over an expired key stores")
  keys = table.concat(shared.keys(), ",")
  assert(keys == "b,counter,first,from10,n,s,ttl", "keys after expiry: " .. keys)

  -- values are strings, numbers or booleans
  local ok, err = pcall(shared.set, "t", {})
  assert(not ok and tostring(err):find("strings, numbers or booleans"), "table value: " .. tostring(err))
  assert(not pcall(shared.add, "t", {}), "add of a table errors")
  assert(not pcall(shared.set, "t", function() end), "function value errors")
  assert(shared.get("t") == nil, "nothing stored")
  print("shared ok")
end
