-- lua5.1 patterns-gen.lua < patterns-cases.txt > patterns51.txt
-- Each input line is subject, pattern and replacement in hex, tab-separated.
dofile("patterns.lua")
local function unhex(h) return (h:gsub("..", function(x) return string.char(tonumber(x, 16)) end)) end
for line in io.lines() do
  local s, p, r = line:match("^(%x*)\t(%x*)\t(%x*)$")
  io.write(line, "\t", run(unhex(s), unhex(p), unhex(r)), "\n")
end
