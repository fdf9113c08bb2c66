-- Publishing from Lua: every subscriber that comes or goes is announced to
-- everyone else as a "subscribe" or "unsubscribe" event, whose data is the
-- subscriber's id as JSON (a JSON string).
--
--   tinysse --script examples/publish.lua
--   curl -N http://127.0.0.1:1983/sse     # watch others come and go
--
-- The hooks publish by POSTing to this same server; the request waits
-- without holding up other hooks, so this does not deadlock.

local uuid = require "uuid"
local json = require "json"
local http = require "http"
local log = require "log"

local agent = http.agent {
  headers = { ["content-type"] = "application/json" },
}

local pub_url -- set in startup, from the server's own options

function startup(cli)
  pub_url = "http://" .. cli.listen .. cli.pub_path
end

local function publish_msg(msg)
  local ok, res = pcall(agent.post, agent, pub_url, { body = json.encode(msg) })
  if not ok then
    log.warn("publish failed: " .. tostring(res))
  elseif res.status ~= 202 then
    log.warn("publish refused: " .. res.status .. " " .. res.body)
  end
end

function subscribe(sub)
  sub.id = uuid()
  publish_msg { event = "subscribe", data = json.encode(sub.id) }
  return sub
end

function unsubscribe(sub)
  publish_msg { event = "unsubscribe", data = json.encode(sub.id) }
end
