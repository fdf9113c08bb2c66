-- Restrict the dashboard's feed (and publishing) to holders of a token.
-- Run: tinysse --script examples/dashboard_token.lua --script-data SECRET
-- then open /_tinysse/ and type SECRET into the page's token field: the
-- page sends it as "Authorization: Bearer SECRET" on every request.
local token

function startup(cli)
  token = cli.script_data
  if token == nil or token == "" then error("give the token with --script-data") end
end

local function authorized(req)
  return req.headers.authorization == "Bearer " .. token
end

-- The stats topic (_tinysse.stats) tells who is subscribed to what:
-- only token holders may read it. Other topics stay open.
function subscribe(sub)
  for _, t in ipairs(sub.topics or {}) do
    if t == "_tinysse.stats" and not authorized(sub.req) then return nil end
  end
  return sub
end

-- Publishing needs the token, from the dashboard's form or anywhere else.
function publish(pub)
  if authorized(pub.req) then return pub end
end
