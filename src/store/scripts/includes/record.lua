--[[
  The record of (tenant, key): one string, under a key whose expiry is the record's end.

    state \n waited \n created \n lease \n seen \n fingerprint \n token
    [\n status \n headers \n body]                                  (completed records only)

  state        in_flight, completed or unknown
  waited       1 once a duplicate that watches the record found it in flight (RecordStore.watch);
               only then does the script that settles it PUBLISH, so that a request nobody waits
               for publishes nothing
  created      ms from the record's creation to its expiry:          createdAt     = expiry - created
  lease        ms from the end of the owner's lease to the expiry:   leaseUntil    = expiry - lease
  seen         ms from the first sighting of a lapsed lease to the expiry (empty: not seen)
  fingerprint, token   as the engine gave them (neither holds a newline: record-value.ts checks)
  status, headers (a JSON array of [name, value]), body (raw bytes: the rest of the string)

  Every instant is kept relative to the key's own expiry, which Redis keeps on its own clock: a
  script that judges a lease asks PTTL (now = expiry - PTTL) rather than TIME, and a script that
  creates or completes a record sets the expiry with PX. No script needs TIME, and every replica
  still judges leases by one clock, the server's. Reading a record's instants costs one
  PEXPIRETIME (read-1.lua). record-value.ts encodes and decodes the same layout in the sidecar.
]]

local function decodeRecord(value)
  local state, waited, created, lease, seen, fp, token, tail =
    string.match(value, '^([%l_]+)\n([01])\n(%-?%d+)\n(%-?%d+)\n(%-?%d*)\n([^\n]*)\n([^\n]*)()')
  if not state then
    error('malformed idempotency record')
  end
  return {
    state = state, waited = waited == '1', created = tonumber(created), lease = tonumber(lease),
    seen = tonumber(seen), fp = fp, token = token, value = value, tail = tail,
  }
end

-- The record's text after a change of its header fields; the response, if any, is kept as it is.
local function encodeRecord(r)
  local header = table.concat({
    r.state, r.waited and '1' or '0', r.created, r.lease, r.seen or '', r.fp, r.token,
  }, '\n')
  if r.tail > #r.value then
    return header
  end
  return header .. string.sub(r.value, r.tail)
end

-- The record under `key` when `token` owns it, decoded; nil when it is gone, of another owner,
-- or not a record of this layout (a write fenced by its token changes nothing then).
local function ownedRecord(key, token)
  local value = redis.pcall('GET', key)
  if type(value) ~= 'string' then
    return nil
  end
  local r = decodeRecord(value)
  if r.token ~= token then
    return nil
  end
  return r
end

-- Tells the watches of the record that it settled, if anyone waits on it.
local function announce(r, channel, what)
  if r.waited then
    redis.call('PUBLISH', channel, what)
  end
end
