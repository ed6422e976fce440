--[[
  remove-1: admin: deletes the record whatever its owner (how an operator releases an unknown
  outcome).

  KEYS[1]  the record (of either layout: DEL takes a hash of the earlier one too)

  ARGV[1]  channel  the record's settle channel (keys.ts), published `removed` when one was deleted

  Returns  1 when a record was deleted, 0 when there was none.
  Publishes whether or not anyone waits: an operator's removal is rare, and reading the record
  first to find out would cost as much as the notice.
]]
local deleted = redis.call('DEL', KEYS[1])
if deleted == 1 then
  redis.call('PUBLISH', ARGV[1], 'removed')
end
return deleted
