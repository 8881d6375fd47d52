-- disconnect: KEYS[1] the user's key; ARGV[1] the grace in ms, ARGV[2] the session's gate,
-- ARGV[3] its session id, ARGV[4] the key prefix when gate liveness is tracked, else ''. If the user is online at this session or offline: removes the
-- location (the settings stay) and expires the key grace from now. Online on another session:
-- nothing. Missing: nothing. Unreadable: expires it grace from now and returns it.
local old = get(KEYS[1])
if old == nil then
  return false
end
local s = readable(old)
if s == nil then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  return old
end
if online(s) and not at(s, ARGV[2], ARGV[3]) then
  return false
end
if online(s) then
  untrack(ARGV[4], s.gate, s.user_id)
end
s.gate = nil
s.session_id = nil
redis.call('SET', KEYS[1], cjson.encode(s), 'PX', ARGV[1])
return false
