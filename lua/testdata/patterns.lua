-- The pattern cases of pattern_test.go: run(subject, pattern, repl) calls
-- find, match, gmatch and gsub and returns one line saying what each
-- gave. The same file runs on Lua 5.1 (patterns-gen.lua writes
-- patterns51.txt from it) and on tinysse's runtime, so the two must agree.
local hexdigits = "0123456789abcdef"
local function hex(s)
  local out = {}
  for i = 1, #s do
    local b = s:byte(i)
    local hi, lo = math.floor(b / 16) + 1, b % 16 + 1
    out[i] = hexdigits:sub(hi, hi) .. hexdigits:sub(lo, lo)
  end
  return "x" .. table.concat(out)
end

local function show(ok, ...)
  if not ok then
    local msg = tostring((...)):gsub("^[^:]*:%d+: ", "")
    return "error(" .. msg .. ")"
  end
  local out = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    out[#out + 1] = type(v) == "string" and hex(v) or tostring(v)
  end
  return table.concat(out, ",")
end

local function gmatchAll(s, p)
  local out, n = {}, 0
  for a, b in string.gmatch(s, p) do
    n = n + 1
    if n > 50 then break end
    out[#out + 1] = (type(a) == "string" and hex(a) or tostring(a)) .. "|" .. (type(b) == "string" and hex(b) or tostring(b))
  end
  return table.concat(out, ";")
end

function run(s, p, r)
  return table.concat({
    show(pcall(string.find, s, p)),
    show(pcall(string.find, s, p, 2)),
    show(pcall(string.find, s, p, -3)),
    show(pcall(string.match, s, p)),
    show(pcall(gmatchAll, s, p)),
    show(pcall(string.gsub, s, p, r)),
    show(pcall(string.gsub, s, p, r, 1)),
  }, " / ")
end
