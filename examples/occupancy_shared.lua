-- Occupancy with the count in the `shared` package, so it is right with
-- any number of Lua VMs:
--
--   tinysse --lua-vms auto --script examples/occupancy_shared.lua
--   curl -N http://127.0.0.1:1983/sse
--
-- Each VM has its own globals (a subscriber's hooks run on its shard's VM,
-- tick on VM 0), so a global counter would count one VM's subscribers
-- only. `shared` is one dictionary that every VM sees.

local json = require "json"
local http = require "http"
local shared = require "shared"

local agent = http.agent {
  headers = { ["content-type"] = "application/json" },
}

local pub_url

function startup(cli)
  pub_url = "http://" .. cli.listen .. cli.pub_path
end

local function occupancy()
  return { event = "occupancy", data = tostring(shared.get("subscribers") or 0) }
end

function subscribe(sub)
  shared.incr("subscribers", 1)
  return sub
end

function unsubscribe(sub)
  shared.incr("subscribers", -1)
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
