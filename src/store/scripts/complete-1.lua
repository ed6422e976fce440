--[[
  complete-1: in_flight or unknown -> completed with the response; fenced by the owner's token.

  KEYS[1]  the record

  ARGV[1]  token     the owner's lease token
  ARGV[2]  ttlMs     how long the completed record is kept, from now
  ARGV[3]  response  `status \n headers \n body`, encoded by the caller (record-value.ts)
  ARGV[4]  channel   the record's settle channel (keys.ts), published `completed` if waited on

  Returns  1 when completed (or already completed by this token: the call is idempotent), 0 when
           the record is gone or owned by another token (a replica whose lease ran out must not
           overwrite the new owner's record).
  Completing an `unknown` record that still carries our token resolves it.
  GET, PTTL (to carry the record's creation over to the new expiry) and one SET with PX: the
  record's response, header and expiry in one write. PUBLISH only when a duplicate waits
  (includes/record.lua, `waited`); in a Cluster a PUBLISH is broadcast to every node, so a
  subscriber on any node receives it.
]]
--- @include "includes/record.lua"

local record = KEYS[1]
local token, ttlMs = ARGV[1], tonumber(ARGV[2])

local value = redis.pcall('GET', record)
if type(value) ~= 'string' then
  return 0 -- absent, or a hash of the earlier layout, which no upgraded replica owns
end
local r = decodeRecord(value)
if r.token ~= token then
  return 0
end
if r.state == 'completed' then
  -- Already stored by this owner: a retry of a completion whose reply was lost (a timeout after
  -- Redis applied it). Keep the first response and report success, so the retry is idempotent.
  return 1
end
if r.state ~= 'in_flight' and r.state ~= 'unknown' then
  return 0
end

-- The instants move with the expiry: the new expiry is ttlMs from now, the old one `left` from now.
local shift = ttlMs - redis.call('PTTL', record)
local completed = {
  state = 'completed', waited = false, created = r.created + shift, lease = r.lease + shift,
  fp = r.fp, token = r.token, value = '', tail = 1,
}
redis.call('SET', record, encodeRecord(completed) .. '\n' .. ARGV[3], 'PX', ttlMs)
announce(r, ARGV[4], 'completed')
return 1
