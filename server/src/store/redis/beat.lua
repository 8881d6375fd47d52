-- beat: KEYS[1] the gate's liveness key <cluster>:gate:<gate>; ARGV[1] the gate id, ARGV[2] the
-- key's value, ARGV[3] gate_ttl in ms, ARGV[4] the key prefix <cluster>. Sets the key to expire
-- gate_ttl from now and records the beat's time (Redis's clock, ms) as the gate's score in
-- <cluster>:gates. Returns 1 if the key was there, 0 if it had expired or was lost.
local was = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', ARGV[4] .. ':gates', now, ARGV[1])
return was
