-- Refining the built-in JWT check.
--
--   tinysse --jwt-secret @secret.txt --script examples/auth.lua --script-data 'jti-1,jti-2'
--
-- The server checks every token before any hook runs: its signature
-- (--jwt-secret, --jwt-public-key or --jwks), exp and nbf, --jwt-audience
-- and --jwt-issuer when set, and that its "tinysse" claim covers every
-- topic asked for:
--
--   {"sub": "alice", "jti": "…", "exp": …,
--    "tinysse": {"subscribe": ["news/*"], "publish": ["news/alice"]}}
--
-- Hooks then see the verified claims as req.claims and may refuse what
-- the token allows (never the other way round). This script adds three
-- rules that a claim cannot say:
--
--   * tokens whose "jti" is listed in --script-data (comma-separated) are
--     revoked: refused with 403 although they verify;
--   * one user ("sub") holds at most MAX_STREAMS streams at once, counted
--     in the shared package so that every Lua VM sees the same count;
--   * a published message carries who sent it, as the comment "from SUB".

local shared = require "shared"

local MAX_STREAMS = 2
local revoked = {}

function startup(cli)
  if not cli.jwt then
    error("auth.lua refines the built-in JWT check: start tinysse with --jwt-secret, --jwt-public-key or --jwks")
  end
  for jti in (cli.script_data or ""):gmatch("[^,%s]+") do
    revoked[jti] = true
  end
end

-- user is who made req: false when its token is revoked, else the
-- token's sub (nil for an anonymous subscriber or the --admin-token).
local function user(req)
  local claims = req.claims
  if claims ~= nil and claims.jti ~= nil and revoked[claims.jti] == true then
    return false
  end
  return claims and claims.sub
end

-- req.claims is nil for an anonymous subscriber (--anonymous) and for the
-- --admin-token.
function subscribe(sub)
  local who = user(sub.req)
  if who == false then
    return -- 403
  end
  if who then
    local key = "streams:" .. who
    if shared.incr(key, 1) > MAX_STREAMS then
      shared.incr(key, -1)
      return -- 403: too many streams for this user
    end
    sub.user = who
  end
  return sub
end

function unsubscribe(sub)
  if sub.user then
    shared.incr("streams:" .. sub.user, -1)
  end
end

function publish(pub)
  local who = user(pub.req)
  if who == false then
    return -- 403
  end
  if who then
    local comments = pub.msg.comment or {}
    comments[#comments + 1] = "from " .. who
    pub.msg.comment = comments
  end
  return pub
end
