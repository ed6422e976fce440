--[[
  list-1: the tenants that hold a record of one key, for the admin API; prunes the index first.

  KEYS[1]  the key's tenant index

  ARGV     none

  Returns  the tenants whose records have not expired, as an array of strings.
  The caller then reads each record (they share the index's slot); a record deleted in between
  is simply absent.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
