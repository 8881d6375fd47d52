-- bind: KEYS[1] the user's key; ARGV[1] the session's StoredSession JSON (online at it),
-- ARGV[2] the ttl in ms, ARGV[3] the duplicate-login policy (kick, refuse or allow), ARGV[4] the
-- key prefix when gate liveness is tracked, else ''. The user is tracked on the session's gate
-- (and no longer on the gate it was online on before).
--
-- If the user is online on another session of a live gate and the policy is refuse, nothing is
-- written. Otherwise writes the session's value plus the stored settings it lacks (its own keys
-- win), expiring ttl from now. An unreadable old value is overwritten with the session's alone.
--
-- Returns {outcome, old}: outcome 'refused' (not written; the user is online elsewhere),
-- 'elsewhere' (written; the user was online on another session of a live gate) or 'bound';
-- old the value as it was (nil if none; a status reply naming the type if the key held
-- another Redis type).
local old = get(KEYS[1])
local new = cjson.decode(ARGV[1])
local s = readable(old)
local elsewhere = s ~= nil and online(s) and not at(s, new.gate, new.session_id)
  and alive(ARGV[4], s.gate)
if elsewhere and ARGV[3] == 'refuse' then
  return { 'refused', old or false }
end
local value = ARGV[1]
if s ~= nil and s.settings ~= nil then
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
if s ~= nil and online(s) and s.gate ~= new.gate then
  untrack(ARGV[4], s.gate, new.user_id)
end
track(ARGV[4], new.gate, new.user_id)
if elsewhere then
  return { 'elsewhere', old or false }
end
return { 'bound', old or false }
