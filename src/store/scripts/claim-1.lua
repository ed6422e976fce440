--[[
  claim-1: absent -> in_flight, or the existing record (after the expired-lease rule).

  KEYS[1]  the record                (idem:{tag}:r:<tenant>; includes/record.lua has its layout)

  ARGV[1]  fresh           the in-flight record to create, encoded by the caller (record-value.ts)
  ARGV[2]  ttlMs           how long the record lives at most, from now
  ARGV[3]  onExpiredLease  `hold` or `release`: what an in-flight record whose lease ran out becomes
  ARGV[4]  channel         the record's settle channel (keys.ts)
  ARGV[5]  graceMs         how long after a lapsed lease is first seen it is judged (0: at once);
                           the first sighting is kept in the record's `seen` field
  ARGV[6]  watching        `1`: the caller watches the record (RecordStore.watch); a record found
                           in flight is marked waited on, so that its settle is published

  Returns  {'claimed'}
       or  {'existing', record}        (the record's string, after any change made here)
       or  {'legacy', field1, value1, ...}  (a hash record of the earlier layout, as HGETALL gives it)

  One SET does the common cases: NX creates the record with its expiry (PX) when the key is free,
  and GET returns the record that holds it otherwise. A first-time request and a replay each cost
  this script and that one command. Only an in-flight record costs more: PTTL judges its lease on
  the server's clock, and a change (a sighting, `unknown`, the waited mark) is one SET KEEPTTL.

  An in-flight record whose lease ran out is settled here, by whoever claims next: it becomes
  `unknown` (hold), or is replaced by the claimer's (release), and its waiters are told as the
  owner's own settle would have told them. Creating a record publishes nothing: no one waits for
  a record to appear.
]]
--- @include "includes/record.lua"
--- @include "includes/legacy-hash.lua"

local record = KEYS[1]
local fresh, ttlMs = ARGV[1], ARGV[2]
local onExpiredLease, channel = ARGV[3], ARGV[4]
local graceMs = tonumber(ARGV[5])
local watching = ARGV[6] == '1'

local existing = redis.pcall('SET', record, fresh, 'NX', 'GET', 'PX', ttlMs)
if isWrongType(existing) then
  return claimLegacyHash(record, fresh, ttlMs, onExpiredLease, channel, graceMs)
end
if type(existing) == 'table' then
  return existing -- any other error, as it came
end
if not existing then
  return { 'claimed' }
end

local r = decodeRecord(existing)
if r.state ~= 'in_flight' then
  return { 'existing', existing }
end

local changed = false
local left = redis.call('PTTL', record)
if left < r.lease then
  -- The lease has lapsed. The first claim to see it starts a grace period rather than judging at
  -- once: an owner whose store was unreachable (so it could not renew) writes its result as soon
  -- as the store is back, and this claim may be the first thing the store serves after an outage.
  if not r.seen then
    r.seen = left
    changed = true
  end
  if r.seen - left >= graceMs then
    -- The owner stopped renewing (it died or stalled): the upstream may have executed.
    if onExpiredLease == 'release' then
      redis.call('SET', record, fresh, 'PX', ttlMs)
      announce(r, channel, 'released')
      return { 'claimed' }
    end
    r.state = 'unknown'
    changed = true
    announce(r, channel, 'unknown')
  end
end
if watching and r.state == 'in_flight' and not r.waited then
  r.waited = true
  changed = true
end
if changed then
  existing = encodeRecord(r)
  redis.call('SET', record, existing, 'KEEPTTL')
end
return { 'existing', existing }
