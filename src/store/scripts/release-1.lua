--[[
  release-1: deletes the record if this token owns it, so that a retry runs again.

  KEYS[1]  the record

  ARGV[1]  token    the owner's lease token
  ARGV[2]  channel  the record's settle channel (keys.ts), published `released` if waited on

  Returns  1 when deleted, 0 when the record is gone or owned by another token.
]]
--- @include "includes/record.lua"

local record = KEYS[1]
local r = ownedRecord(record, ARGV[1])
if not r then
  return 0
end
redis.call('DEL', record)
announce(r, ARGV[2], 'released')
return 1
