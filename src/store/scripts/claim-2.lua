--[[
  claim-2: absent -> in_flight, or the existing record (after the expired-lease rule).

  KEYS[1]  the record hash           (idem:{tag}:r:<tenant>)
  KEYS[2]  the key's tenant index    (idem:{tag}:t)

  ARGV[1]  token           the claimer's lease token (its lock value)
  ARGV[2]  fingerprint
  ARGV[3]  leaseMs         the lease, from now
  ARGV[4]  ttlMs           how long the record lives at most, from now
  ARGV[5]  onExpiredLease  `hold` or `release`: what an in-flight record whose lease ran out becomes
  ARGV[6]  tenant          the record's member in the index
  ARGV[7]  channel         the record's settle channel (keys.ts)
  ARGV[8]  graceMs         how long after a lapsed lease is first seen it is judged (0: at once);
                           the first sighting is kept in the record's `expiredSeenAt` field

  Returns  {'claimed'}
       or  {'existing', field1, value1, ...}   (the record as HGETALL returns it)

  Time comes from the server (TIME), never from the caller: every replica then judges leases and
  expiry by one clock. Redis 7 replicates a script's effects, so TIME before a write is allowed.

  An in-flight record whose lease ran out is settled here, by whoever claims next: it publishes
  `unknown` (hold) or `released` (release; the key is then claimed anew) on ARGV[7], as the
  owner's own settle would have (RecordStore.watch). Creating a record publishes nothing: no one
  waits for a record to appear.
]]
local record, index = KEYS[1], KEYS[2]
local token, fingerprint = ARGV[1], ARGV[2]
local leaseMs, ttlMs = tonumber(ARGV[3]), tonumber(ARGV[4])
local onExpiredLease, tenant, channel = ARGV[5], ARGV[6], ARGV[7]
local graceMs = tonumber(ARGV[8] or '0')

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function create()
  local expiresAt = now + ttlMs
  redis.call('HSET', record,
    'state', 'in_flight', 'fp', fingerprint, 'token', token,
    'createdAt', now, 'expiresAt', expiresAt, 'leaseUntil', now + leaseMs)
  -- PEXPIREAT on the very instant stored in the hash: Redis then drops the record exactly when the
  -- record says it ends, so a read never has to compare clocks.
  redis.call('PEXPIREAT', record, expiresAt)
  -- The index is pruned as it is written, and lives as long as its longest-lived member.
  redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. now)
  redis.call('ZADD', index, expiresAt, tenant)
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', index, last[2])
  return { 'claimed' }
end

local state = redis.call('HGET', record, 'state')
if not state then
  return create()
end

local lapsed = state == 'in_flight' and tonumber(redis.call('HGET', record, 'leaseUntil')) < now
if lapsed then
  -- The first claim to see the lapse starts a grace period rather than judging at once: an owner
  -- whose store was unreachable (so it could not renew) writes its result as soon as the store is
  -- back, and this claim may be the first thing the store serves after an outage.
  local seen = tonumber(redis.call('HGET', record, 'expiredSeenAt'))
  if not seen then
    seen = now
    redis.call('HSET', record, 'expiredSeenAt', now)
  end
  lapsed = now - seen >= graceMs
end
if lapsed then
  -- The owner stopped renewing (it died or stalled): the upstream may have executed.
  if onExpiredLease == 'release' then
    redis.call('DEL', record)
    redis.call('PUBLISH', channel, 'released')
    return create()
  end
  redis.call('HSET', record, 'state', 'unknown')
  redis.call('PUBLISH', channel, 'unknown')
end

local existing = redis.call('HGETALL', record)
table.insert(existing, 1, 'existing')
return existing
