--[[
  read-1: the record and its expiry, for a look that does not claim (the Redlock path, the admin
  API); marks an in-flight record waited on for a caller that watches it.

  KEYS[1]  the record

  ARGV[1]  watching  `1`: the caller watches the record (RecordStore.watch); a record found in
                     flight is marked waited on, so that its settle is published

  Returns  {}                              no record
       or  {record, expiresAt}             the record's string and its expiry (PEXPIRETIME, epoch ms)
       or  {'legacy', field1, value1, ...} a hash record of the earlier layout, as HGETALL gives it
]]
--- @include "includes/record.lua"
--- @include "includes/legacy-hash.lua"

local record = KEYS[1]
local value = redis.pcall('GET', record)
if isWrongType(value) then
  local fields = redis.call('HGETALL', record)
  table.insert(fields, 1, 'legacy')
  return fields
end
if type(value) == 'table' then
  return value -- any other error, as it came
end
if not value then
  return {}
end
if ARGV[1] == '1' then
  local r = decodeRecord(value)
  if r.state == 'in_flight' and not r.waited then
    r.waited = true
    value = encodeRecord(r)
    redis.call('SET', record, value, 'KEEPTTL')
  end
end
return { value, redis.call('PEXPIRETIME', record) }
