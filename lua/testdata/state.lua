-- One global state: the table filled in subscribe is read by every hook.
local subs = {}

local function count()
  local n = 0
  for _ in pairs(subs) do n = n + 1 end
  return n
end

function subscribe(sub)
  sub.id = sub.req.query
  subs[sub.id] = true
  return sub
end

function catchup(sub, last_event_id)
  return {{data = "catchup " .. count()}}
end

function message(pub, sub)
  pub.msg.data = "message " .. count()
  return pub
end

function tick(n)
  print("tick", count())
end

function unsubscribe(sub)
  subs[sub.id] = nil
  print("unsubscribe", sub.id, count())
end
