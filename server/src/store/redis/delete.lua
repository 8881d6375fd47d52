-- delete: KEYS[1] the user's key; ARGV[1] the session's gate, ARGV[2] its session id, ARGV[3]
-- the key prefix when gate liveness is tracked, else ''. If the
-- user is online at this session or offline: deletes the key. Online on another session:
-- nothing. Missing: nothing. Unreadable: deletes it and returns it.
local old = get(KEYS[1])
if old == nil then
  return false
end
local s = readable(old)
if s ~= nil and online(s) and not at(s, ARGV[1], ARGV[2]) then
  return false
end
redis.call('DEL', KEYS[1])
if s ~= nil and online(s) then
  untrack(ARGV[3], s.gate, s.user_id)
end
if s == nil then
  return old
end
return false
