--[[
  mark-unknown-1: in_flight -> unknown; fenced by the owner's token.

  KEYS[1]  the record hash

  ARGV[1]  token    the owner's lease token
  ARGV[2]  channel  the record's settle channel (keys.ts), published `unknown` on success

  Returns  1 when marked, 0 when the record is gone, not in flight, or owned by another token.
  The record keeps its expiry: an unknown outcome is held until the TTL ends or an operator
  removes it.
  Publishes `unknown` on ARGV[2] when it changes the record, so that waiting duplicates look again
  at once (RecordStore.watch). PUBLISH in a script is allowed and replicated; in a Cluster it is
  broadcast to every node, so a subscriber on any node receives it.
]]
local fields = redis.call('HMGET', KEYS[1], 'state', 'token')
if fields[1] ~= 'in_flight' or fields[2] ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'unknown')
redis.call('PUBLISH', ARGV[2], 'unknown')
return 1
