--[[
  remove-2: admin: deletes the record whatever its owner (how an operator releases an unknown
  outcome).

  KEYS[1]  the record hash
  KEYS[2]  the key's tenant index

  ARGV[1]  tenant   the record's member in the index
  ARGV[2]  channel  the record's settle channel (keys.ts), published `removed` when one was deleted

  Returns  1 when a record was deleted, 0 when there was none.
  Publishes `removed` on ARGV[2] when it changes the record, so that waiting duplicates look again
  at once (RecordStore.watch). PUBLISH in a script is allowed and replicated; in a Cluster it is
  broadcast to every node, so a subscriber on any node receives it.
]]
redis.call('ZREM', KEYS[2], ARGV[1])
local deleted = redis.call('DEL', KEYS[1])
if deleted == 1 then
  redis.call('PUBLISH', ARGV[2], 'removed')
end
return deleted
