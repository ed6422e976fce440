--[[
  complete-2: in_flight or unknown -> completed with the response; fenced by the owner's token.

  KEYS[1]  the record hash
  KEYS[2]  the key's tenant index

  ARGV[1]  token    the owner's lease token
  ARGV[2]  ttlMs    how long the completed record is kept, from now
  ARGV[3]  status   the response's status code
  ARGV[4]  headers  the response's headers, a JSON array of [name, value]
  ARGV[5]  body     the response's body, raw bytes
  ARGV[6]  tenant   the record's member in the index
  ARGV[7]  channel  the record's settle channel (keys.ts), published `completed` on success

  Returns  1 when completed (or already completed by this token: the call is idempotent), 0 when
           the record is gone or owned by another token (a replica whose lease ran out must not
           overwrite the new owner's record).
  Completing an `unknown` record that still carries our token resolves it.
  Publishes `completed` on ARGV[7] when it changes the record, so that waiting duplicates look again
  at once (RecordStore.watch). PUBLISH in a script is allowed and replicated; in a Cluster it is
  broadcast to every node, so a subscriber on any node receives it.
]]
local record, index = KEYS[1], KEYS[2]
local token, ttlMs = ARGV[1], tonumber(ARGV[2])
local tenant, channel = ARGV[6], ARGV[7]

local fields = redis.call('HMGET', record, 'state', 'token')
local state = fields[1]
if fields[2] ~= token then
  return 0
end
if state == 'completed' then
  -- Already stored by this owner: a retry of a completion whose reply was lost (a timeout after
  -- Redis applied it). Keep the first response and report success, so the retry is idempotent.
  return 1
end
if state ~= 'in_flight' and state ~= 'unknown' then
  return 0
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiresAt = now + ttlMs

redis.call('HSET', record,
  'state', 'completed', 'expiresAt', expiresAt,
  'status', ARGV[3], 'headers', ARGV[4], 'body', ARGV[5])
redis.call('PEXPIREAT', record, expiresAt)

redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. now)
redis.call('ZADD', index, expiresAt, tenant)
local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', index, last[2])
redis.call('PUBLISH', channel, 'completed')
return 1
