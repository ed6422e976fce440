--[[
  Records written by versions before the one-string layout (includes/record.lua) were hashes:
  state, fp, token, createdAt, expiresAt, leaseUntil (epoch ms), expiredSeenAt, and once completed
  status, headers, body; their per-key index was a sorted set that expires by itself. While such
  a record lives (one TTL after an upgrade), a claim must still honour it: replay it, hold it, or
  judge its lapsed lease, or a retry that lands on an upgraded replica would run the upstream again.
  A string command on a hash fails with WRONGTYPE, which is how the scripts recognise one. No
  upgraded replica ever owns a hash record, so only claim-1 and read-1 read them; every other
  transition refuses them (a token that is not ours).

  Remove this file, and its two callers, once no deployment runs a version older than the
  one-string layout for longer than its TTL.
]]

local function isWrongType(reply)
  return type(reply) == 'table' and type(reply.err) == 'string' and string.sub(reply.err, 1, 9) == 'WRONGTYPE'
end

-- claim-2.lua of the hash layout, from the existing record on: the expired-lease rule, then the
-- record as HGETALL returns it. Settles are always published: waiters of that version set no flag.
local function claimLegacyHash(record, fresh, ttlMs, onExpiredLease, channel, graceMs)
  local state = redis.call('HGET', record, 'state')
  if state == 'in_flight' then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    local lapsed = tonumber(redis.call('HGET', record, 'leaseUntil')) < now
    if lapsed then
      local seen = tonumber(redis.call('HGET', record, 'expiredSeenAt'))
      if not seen then
        seen = now
        redis.call('HSET', record, 'expiredSeenAt', now)
      end
      lapsed = now - seen >= graceMs
    end
    if lapsed then
      if onExpiredLease == 'release' then
        redis.call('DEL', record)
        redis.call('PUBLISH', channel, 'released')
        redis.call('SET', record, fresh, 'PX', ttlMs)
        return { 'claimed' }
      end
      redis.call('HSET', record, 'state', 'unknown')
      redis.call('PUBLISH', channel, 'unknown')
    end
  end
  local existing = redis.call('HGETALL', record)
  table.insert(existing, 1, 'legacy')
  return existing
end
