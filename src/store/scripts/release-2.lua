--[[
  release-2: deletes the record if this token owns it, so that a retry runs again.

  KEYS[1]  the record hash
  KEYS[2]  the key's tenant index

  ARGV[1]  token    the owner's lease token
  ARGV[2]  tenant   the record's member in the index
  ARGV[3]  channel  the record's settle channel (keys.ts), published `released` on success

  Returns  1 when deleted, 0 when the record is gone or owned by another token.
  Publishes `released` on ARGV[3] when it changes the record, so that waiting duplicates look again
  at once (RecordStore.watch). PUBLISH in a script is allowed and replicated; in a Cluster it is
  broadcast to every node, so a subscriber on any node receives it.
]]
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[3], 'released')
return 1
