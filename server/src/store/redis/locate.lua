-- locate (query): KEYS[1] the user's key; ARGV[1] the key prefix when gate liveness is
-- tracked, else ''; ARGV[2] the grace in ms. Returns the value. If it says the user is
-- online on a gate that is not alive (it died without disconnecting its sessions), the user is
-- offline: the location is removed (the settings stay, expiring grace from now) and the value
-- returned without it. Nil if none; a status reply naming the type if the key holds another
-- Redis type; an unreadable string as it is.
local old = get(KEYS[1])
if old == nil then
  return false
end
local s = readable(old)
if s == nil or not online(s) or alive(ARGV[1], s.gate) then
  return old
end
untrack(ARGV[1], s.gate, s.user_id)
s.gate = nil
s.session_id = nil
local value = cjson.encode(s)
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
