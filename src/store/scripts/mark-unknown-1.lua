--[[
  mark-unknown-1: in_flight -> unknown; fenced by the owner's token.

  KEYS[1]  the record

  ARGV[1]  token    the owner's lease token
  ARGV[2]  channel  the record's settle channel (keys.ts), published `unknown` if waited on

  Returns  1 when marked, 0 when the record is gone, not in flight, or owned by another token.
  The record keeps its expiry (KEEPTTL): an unknown outcome is held until the TTL ends or an
  operator removes it.
]]
--- @include "includes/record.lua"

local record = KEYS[1]
local r = ownedRecord(record, ARGV[1])
if not r or r.state ~= 'in_flight' then
  return 0
end
r.state = 'unknown'
redis.call('SET', record, encodeRecord(r), 'KEEPTTL')
announce(r, ARGV[2], 'unknown')
return 1
