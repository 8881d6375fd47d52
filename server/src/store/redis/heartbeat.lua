-- heartbeat: KEYS[1] the user's key; ARGV[1] the session's StoredSession JSON (online at it),
-- ARGV[2] the ttl in ms, ARGV[3] the session's gate, ARGV[4] its session id, ARGV[5] the key
-- prefix when gate liveness is tracked, else ''. If the user is
-- online on another session, only its expiry is refreshed; otherwise (online here, offline,
-- missing — Redis lost it — or unreadable) the session's value is written. Expires ttl from
-- now. Returns nil, or the old value if it was unreadable (then overwritten).
local old = get(KEYS[1])
local s = readable(old)
if s ~= nil and online(s) and not at(s, ARGV[3], ARGV[4]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return false
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
track(ARGV[5], ARGV[3], cjson.decode(ARGV[1]).user_id)
if old ~= nil and s == nil then
  return old
end
return false
