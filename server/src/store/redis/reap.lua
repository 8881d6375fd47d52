-- reap: ARGV[1] the key prefix <cluster>, ARGV[2] the grace in ms, ARGV[3] gate_ttl in ms,
-- ARGV[4] the most users to handle. Any gate runs it: for gates in <cluster>:gates whose last
-- beat is more than gate_ttl ago and whose liveness key is gone (the gate died), each user in
-- <cluster>:gate-users:<gate> still located on that gate becomes offline (location removed,
-- settings kept, expiring grace from now), and leaves the set; a gate whose set is empty leaves
-- <cluster>:gates. ARGV[5], if not '', is a gate reaped whatever its key says: a gate starting
-- reaps its own id (sessions of an earlier run of it are gone). At most ARGV[4] users per call.
-- Returns how many users were set offline and how many members were handled: {reaped, handled}.
local cluster = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local budget = tonumber(ARGV[4])
local start = budget
local reaped = 0
local gates
local forced = ARGV[5] ~= ''
if forced then
  gates = { ARGV[5] }
else
  gates = redis.call('ZRANGEBYSCORE', cluster .. ':gates', '-inf', now - tonumber(ARGV[3]), 'LIMIT', 0, 16)
end
for _, g in ipairs(gates) do
  if budget <= 0 then
    break
  end
  if forced or redis.call('EXISTS', cluster .. ':gate:' .. g) == 0 then
    local set = cluster .. ':gate-users:' .. g
    local users = redis.call('SRANDMEMBER', set, budget)
    for _, u in ipairs(users) do
      local key = cluster .. ':session:' .. u
      local s = readable(get(key))
      if s ~= nil and online(s) and s.gate == g then
        s.gate = nil
        s.session_id = nil
        redis.call('SET', key, cjson.encode(s), 'PX', ARGV[2])
        reaped = reaped + 1
      end
      redis.call('SREM', set, u)
      budget = budget - 1
    end
    if not forced and redis.call('SCARD', set) == 0 then
      redis.call('ZREM', cluster .. ':gates', g)
    end
  end
end
return { reaped, start - budget }
