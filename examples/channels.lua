-- Channels in Lua: a publish reaches only the subscribers of its channels.
--
--   tinysse --script examples/channels.lua
--
-- Subscribe to one or more channels:
--   curl -N 'http://127.0.0.1:1983/sse?chan=news&chan=sport'
-- Publish to a channel (or several):
--   curl -X POST -d data=hello 'http://127.0.0.1:1983/sse?chan=news'
--
-- A publish that names no channel reaches nobody.

local uuid = require "uuid"
local url = require "url"

-- channel name -> set of subscriber ids
local channels = {}

-- The channels named in a request's query string (?chan=a&chan=b).
local function chans(req)
  return url.unquote(req.query).chan or {}
end

function subscribe(sub)
  sub.id = uuid()
  for _, chan in ipairs(chans(sub.req)) do
    channels[chan] = channels[chan] or {}
    channels[chan][sub.id] = true
  end
  return sub
end

function message(pub, sub)
  for _, chan in ipairs(chans(pub.req)) do
    if channels[chan] and channels[chan][sub.id] then
      return pub
    end
  end
  -- Not in any of the message's channels: skip it (and stay connected).
end

function unsubscribe(sub)
  for _, chan in ipairs(chans(sub.req)) do
    local members = channels[chan]
    if members then
      members[sub.id] = nil
      if next(members) == nil then
        channels[chan] = nil -- drop empty channels
      end
    end
  end
end
