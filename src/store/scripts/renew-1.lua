--[[
  renew-1: pushes the lease of an in-flight record forward; fenced by the owner's token.

  KEYS[1]  the record hash

  ARGV[1]  token    the owner's lease token
  ARGV[2]  leaseMs  the new lease, from now

  Returns  1 when renewed, 0 when the record is gone, not in flight, or owned by another token.
  The record's expiry is left alone.
]]
local record = KEYS[1]
local token, leaseMs = ARGV[1], tonumber(ARGV[2])

local fields = redis.call('HMGET', record, 'state', 'token')
if fields[1] ~= 'in_flight' or fields[2] ~= token then
  return 0
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', record, 'leaseUntil', now + leaseMs)
-- A lapse someone saw is over: a later one gets a grace period of its own (see claim-2).
redis.call('HDEL', record, 'expiredSeenAt')
return 1
