-- Shared by every script of the Redis session store (server/src/store/redis.rs); each script is
-- this text followed by its own. The value under a key is a StoredSession's JSON, version 1
-- (docs/CLUSTER.md): {"v":1,"user_id":…,"settings":{…},"gate":…,"session_id":…}.

-- The key's value: nil if there is none, the string, or {ok = <type>} (a status reply) when the
-- key holds another Redis type.
local function get(key)
  local raw = redis.pcall('GET', key)
  if raw == false then
    return nil
  end
  if type(raw) == 'table' and raw.err then
    return { ok = redis.call('TYPE', key).ok }
  end
  return raw
end

-- The decoded value if it is a stored session this store can update, else nil (unreadable).
local function readable(raw)
  if type(raw) ~= 'string' then
    return nil
  end
  local ok, s = pcall(cjson.decode, raw)
  if not ok or type(s) ~= 'table' or s.v ~= 1 or type(s.user_id) ~= 'string' then
    return nil
  end
  if s.settings ~= nil then
    if type(s.settings) ~= 'table' then
      return nil
    end
    for k, v in pairs(s.settings) do
      if type(k) ~= 'string' or type(v) ~= 'string' then
        return nil
      end
    end
  end
  return s
end

-- Whether the stored session says the user is online (on any session): both location fields
-- are strings (otherwise it is offline, as the gate's decoder reads it).
local function online(s)
  return type(s.gate) == 'string' and type(s.session_id) == 'string'
end

-- Whether the stored session says the user is online at gate `gate`, session `sid`.
local function at(s, gate, sid)
  return s.gate == gate and s.session_id == sid
end


-- Gate liveness. `cluster` is the key prefix when it is tracked, '' when it is not.
--
-- Whether gate `gate` is alive: <cluster>:gate:<gate> exists (the gate refreshes it; it expires
-- gate_ttl after the gate stops). Not tracked: every gate is.
local function alive(cluster, gate)
  if cluster == '' then
    return true
  end
  return redis.call('EXISTS', cluster .. ':gate:' .. gate) == 1
end

-- <cluster>:gate-users:<gate>, the set of users located on `gate` (so the users of a gate that
-- died can be found and set offline).
local function track(cluster, gate, user)
  if cluster ~= '' then
    redis.call('SADD', cluster .. ':gate-users:' .. gate, user)
  end
end

local function untrack(cluster, gate, user)
  if cluster ~= '' then
    redis.call('SREM', cluster .. ':gate-users:' .. gate, user)
  end
end
