--[[
  remove-2: admin: deletes the record whatever its owner (how an operator releases an unknown
  outcome).

  KEYS[1]  the record hash
  KEYS[2]  the key's tenant index

  ARGV[1]  tenant  the record's member in the index

  Returns  1 when a record was deleted, 0 when there was none.
]]
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
