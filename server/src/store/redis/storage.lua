-- storage: KEYS[1] the user's key; ARGV[1] the session's StoredSession JSON (online at it),
-- ARGV[2] the ttl in ms, ARGV[3] the session's gate, ARGV[4] its session id, ARGV[5] the key
-- prefix when gate liveness is tracked, else ''. Writes the
-- session's settings, expiring ttl from now; the location stays the stored one if that is
-- another session, else it becomes this session. Returns nil, or the old value if it was
-- unreadable (then overwritten).
local old = get(KEYS[1])
local value = ARGV[1]
local s = readable(old)
if s ~= nil and online(s) and not at(s, ARGV[3], ARGV[4]) then
  local new = cjson.decode(ARGV[1])
  new.gate = s.gate
  new.session_id = s.session_id
  value = cjson.encode(new)
else
  track(ARGV[5], ARGV[3], cjson.decode(ARGV[1]).user_id)
end
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
if old ~= nil and s == nil then
  return old
end
return false
