--[[
  release-2: deletes the record if this token owns it, so that a retry runs again.

  KEYS[1]  the record hash
  KEYS[2]  the key's tenant index

  ARGV[1]  token   the owner's lease token
  ARGV[2]  tenant  the record's member in the index

  Returns  1 when deleted, 0 when the record is gone or owned by another token.
]]
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
