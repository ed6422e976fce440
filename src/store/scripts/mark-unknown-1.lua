--[[
  mark-unknown-1: in_flight -> unknown; fenced by the owner's token.

  KEYS[1]  the record hash

  ARGV[1]  token  the owner's lease token

  Returns  1 when marked, 0 when the record is gone, not in flight, or owned by another token.
  The record keeps its expiry: an unknown outcome is held until the TTL ends or an operator
  removes it.
]]
local fields = redis.call('HMGET', KEYS[1], 'state', 'token')
if fields[1] ~= 'in_flight' or fields[2] ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'unknown')
return 1
