-- bind: KEYS[1] the user's key; ARGV[1] the session's StoredSession JSON (online at it),
-- ARGV[2] the ttl in ms. Writes the session's value plus the stored settings it lacks (its own
-- keys win), expiring ttl from now, and returns the old value as it was (nil if none; a status
-- reply naming the type if the key held another Redis type). An unreadable old value is
-- overwritten with the session's value alone.
local old = get(KEYS[1])
local value = ARGV[1]
local s = readable(old)
if s ~= nil and s.settings ~= nil then
  local new = cjson.decode(ARGV[1])
  local added = false
  for k, v in pairs(s.settings) do
    if new.settings[k] == nil then
      new.settings[k] = v
      added = true
    end
  end
  if added then
    value = cjson.encode(new)
  end
end
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
if old == nil then
  return false
end
return old
