-- Authorisation with JSON Web Tokens (HS256).
--
--   tinysse --script examples/auth.lua --script-data 'my-secret'
--
-- The secret comes from --script-data. A client presents its token in an
-- "Authorization: Bearer <token>" header, a "token" cookie or a ?token=
-- query parameter (for EventSource, which cannot set headers).
--
-- Subscribers need a valid token (signature checked, exp and nbf too). A
-- "topics" claim (a list) limits what they may read: asking for
--   GET /sse?topic=a&topic=b   with   "topics": ["a"]
-- reads "a" only; asking for no topic reads every claimed topic; asking
-- only for topics the claim does not hold is refused. Without that claim
-- the subscriber reads what it asks for.
--
-- Publishers need a token whose "role" claim is "publisher".
--
-- A refused client gets 403.

local jwt = require "jwt"
local url = require "url"
local log = require "log"

local secret

function startup(cli)
  secret = cli.script_data
  if secret == nil or secret == "" then
    error("auth.lua needs the HS256 secret: --script-data SECRET")
  end
end

-- The token of a request: header, then cookie, then query parameter.
local function token_of(req)
  local h = req.headers
  local bearer = h.authorization and h.authorization:match("^[Bb]earer%s+(%S+)%s*$")
  if bearer then
    return bearer
  end
  for name, value in (h.cookie or ""):gmatch("([^%s;=]+)=([^;]*)") do
    if name == "token" then
      return value
    end
  end
  return (url.unquote(req.query).token or {})[1]
end

-- The verified claims of a request's token, or nil.
local function claims_of(req)
  local token = token_of(req)
  if not token then
    return nil
  end
  local claims, why = jwt.verify(token, secret, { alg = "HS256" })
  if not claims then
    log.info("refused a token from " .. req.addr.ip .. ": " .. why)
  end
  return claims
end

-- The topics of `asked` that the list `allowed` holds, in order.
local function permitted(asked, allowed)
  local ok = {}
  for _, t in ipairs(allowed) do
    ok[t] = true
  end
  local out = {}
  for _, t in ipairs(asked) do
    if ok[t] then
      out[#out + 1] = t
    end
  end
  return out
end

function subscribe(sub)
  local claims = claims_of(sub.req)
  if not claims then
    return -- 403
  end
  local allowed = claims.topics
  if allowed == nil then
    return sub -- no topics claim: no restriction
  end
  if type(allowed) == "string" then
    allowed = { allowed }
  elseif type(allowed) ~= "table" then
    return
  end
  local asked = sub.topics or {}
  if #asked == 0 then
    sub.topics = allowed -- no topic asked: every topic the token allows
  else
    sub.topics = permitted(asked, allowed)
  end
  if #sub.topics == 0 then
    return -- nothing allowed (an empty list would mean the default stream)
  end
  return sub
end

function publish(pub)
  local claims = claims_of(pub.req)
  if claims and claims.role == "publisher" then
    return pub
  end
end
