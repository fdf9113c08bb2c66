-- Occupancy: how many subscribers are connected, sent to everyone every
-- 20 ticks (10 s with the default --script-tick 500ms) as an "occupancy"
-- event, and to each new subscriber at once.
--
--   tinysse --script examples/occupancy.lua
--   curl -N http://127.0.0.1:1983/sse
--
-- The count is a global, so it is right with one Lua VM (the default).
-- Under --lua-vms N each VM has its own globals and sees only its own
-- subscribers: use occupancy_shared.lua there.

local json = require "json"
local http = require "http"

local agent = http.agent {
  headers = { ["content-type"] = "application/json" },
}

local pub_url
local subscribers = 0

function startup(cli)
  pub_url = "http://" .. cli.listen .. cli.pub_path
end

local function occupancy()
  return { event = "occupancy", data = tostring(subscribers) }
end

function subscribe(sub)
  subscribers = subscribers + 1
  return sub
end

function unsubscribe(sub)
  subscribers = subscribers - 1
end

-- A new subscriber learns the count (itself included) right away.
function catchup(sub, last_event_id)
  return { occupancy() }
end

function tick(count)
  if count % 20 == 0 then
    agent:post(pub_url, { body = json.encode(occupancy()) })
  end
end
