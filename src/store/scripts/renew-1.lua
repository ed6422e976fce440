--[[
  renew-1: pushes the lease of an in-flight record forward; fenced by the owner's token.

  KEYS[1]  the record

  ARGV[1]  token    the owner's lease token
  ARGV[2]  leaseMs  the new lease, from now

  Returns  1 when renewed, 0 when the record is gone, not in flight, or owned by another token.
  The record's expiry is left alone (KEEPTTL).
]]
--- @include "includes/record.lua"

local record = KEYS[1]
local r = ownedRecord(record, ARGV[1])
if not r or r.state ~= 'in_flight' then
  return 0
end
-- The lease ends leaseMs from now, which is PTTL before the expiry.
r.lease = redis.call('PTTL', record) - tonumber(ARGV[2])
-- A lapse someone saw is over: a later one gets a grace period of its own (see claim-1).
r.seen = nil
redis.call('SET', record, encodeRecord(r), 'KEEPTTL')
return 1
