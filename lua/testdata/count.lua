-- Keeps the subscriber count in the shared dictionary, and a plain global
-- count per VM. Subscribers with the query "probe" are not counted: their
-- catchup reports the counts as "vm global shared".
local shared = require "shared"

local vm = -1
joined = 0 -- per VM: how many counted subscribers this VM has seen

function startup(cli)
  vm = cli.vm
  print("startup", cli.vm, cli.vms)
end

function tick(n)
  if n <= 3 then print("tick", vm) end
end

function subscribe(sub)
  if sub.req.query == "probe" then
    sub.probe = true
    return sub
  end
  shared.incr("subscribers", 1)
  joined = joined + 1
  return sub
end

function catchup(sub)
  if sub.probe then
    return {{data = vm .. " " .. joined .. " " .. (shared.get("subscribers") or 0)}}
  end
end

function unsubscribe(sub)
  if not sub.probe then shared.incr("subscribers", -1) end
end
