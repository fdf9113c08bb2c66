-- Scenario 7 of loadtest/scenarios.sh: a message hook that every delivery
-- runs through (it reads the message and passes it on, as a filter that
-- keeps everything would).
function message(pub, sub)
  if pub.msg.event ~= "secret" then
    return pub
  end
end
