"""The Lua scripts that make each room operation one atomic Redis round trip.

Every script touches the keys of one room only (all tagged ``{room}``, so a
Redis Cluster keeps them in one slot) and publishes the room's event on the
room's channel inside the script, so the order of events on the channel is
exactly the order in which Redis applied them: seq order for messages.

Channel payloads start with one letter saying what follows:

* ``m<epoch> <seq>\n<json>[\n<json>...]``: durable messages numbered from ``seq``,
  each ``json`` a message frame's text (compact JSON never holds a raw newline);
* ``e<json>``: an ephemeral message (no seq, no history);
* ``p<client_id> <json>``: a presence event, not to be delivered to ``client_id``.
"""

from __future__ import annotations

_FRESH_EPOCH = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[{epoch_arg}]
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
  redis.call('DEL', KEYS[2])
end
"""

PUBLISH = (
    """
-- Number, keep and publish a run of messages to one room (one is a run of one).
-- KEYS: meta, history, presence
-- ARGV: channel, history_size, fresh epoch, history_ttl, then head and tail of each
--       message: its text is head .. seq .. tail
"""
    + _FRESH_EPOCH.format(epoch_arg=3)
    + """
local n = (#ARGV - 4) / 2
local first = redis.call('HINCRBY', KEYS[1], 'seq', n) - n + 1
local texts = {}
for i = 0, n - 1 do
  texts[i + 1] = ARGV[5 + 2 * i] .. (first + i) .. ARGV[6 + 2 * i]
end
local size = tonumber(ARGV[2])
if size > 0 then
  redis.call('RPUSH', KEYS[2], unpack(texts))
  redis.call('LTRIM', KEYS[2], -size, -1)
end
if redis.call('EXISTS', KEYS[3]) == 0 then
  -- nobody is in the room (a backend publish): its history expires as an empty room's does
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
redis.call('PUBLISH', ARGV[1], 'm' .. epoch .. ' ' .. first .. '\\n' .. table.concat(texts, '\\n'))
return {epoch, first}
"""
)

JOIN = (
    """
-- KEYS: meta, history, presence
-- ARGV: channel, field, member json, fresh epoch, presence_limit, room, client_id, want history,
--       list members also when over the limit ('0': the node has a fresh list of its own)
"""
    + _FRESH_EPOCH.format(epoch_arg=4)
    + """
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
local added = redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
local count = redis.call('HLEN', KEYS[3])
local limit = tonumber(ARGV[5])
if added == 1 and count <= limit then
  redis.call('PUBLISH', ARGV[1], 'p' .. ARGV[7] .. ' {"type":"presence","room":"' .. ARGV[6]
    .. '","event":"join","member":' .. ARGV[3] .. '}')
end
local members = {}
local truncated = 0
if count <= limit then
  members = redis.call('HVALS', KEYS[3])
elseif ARGV[9] == '0' then
  truncated = 1
else
  truncated = 1
  local cursor = '0'
  repeat
    local page = redis.call('HSCAN', KEYS[3], cursor, 'COUNT', limit)
    cursor = page[1]
    for i = 2, #page[2], 2 do
      if #members < limit then members[#members + 1] = page[2][i] end
    end
  until cursor == '0' or #members >= limit
end
local history = {}
if ARGV[8] == '1' then history = redis.call('LRANGE', KEYS[2], 0, -1) end
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq'))
return {epoch, seq, count, truncated, members, history}
"""
)

LEAVE = """
-- KEYS: meta, history, presence
-- ARGV: channel, field, client_id, room, history_ttl, presence_limit
local member = redis.call('HGET', KEYS[3], ARGV[2])
if not member then return -1 end
redis.call('HDEL', KEYS[3], ARGV[2])
local count = redis.call('HLEN', KEYS[3])
if count < tonumber(ARGV[6]) then
  redis.call('PUBLISH', ARGV[1], 'p' .. ARGV[3] .. ' {"type":"presence","room":"' .. ARGV[4]
    .. '","event":"leave","member":' .. member .. '}')
end
if count == 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
return count
"""

REAP = """
-- Remove every member a node holds in one room, announcing each leave once.
-- KEYS: meta, history, presence
-- ARGV: channel, field prefix ("<node>|"), room, history_ttl, presence_limit
local prefix = ARGV[2]
local fields = {}
local cursor = '0'
repeat
  local page = redis.call('HSCAN', KEYS[3], cursor, 'MATCH', prefix .. '*', 'COUNT', 1000)
  cursor = page[1]
  for i = 1, #page[2], 2 do
    fields[#fields + 1] = page[2][i]
    fields[#fields + 1] = page[2][i + 1]
  end
until cursor == '0'
local limit = tonumber(ARGV[5])
local count = redis.call('HLEN', KEYS[3])
for i = 1, #fields, 2 do
  redis.call('HDEL', KEYS[3], fields[i])
  count = count - 1
  if count < limit then
    local client_id = string.sub(fields[i], #prefix + 1)
    redis.call('PUBLISH', ARGV[1], 'p' .. client_id .. ' {"type":"presence","room":"' .. ARGV[3]
      .. '","event":"leave","member":' .. fields[i + 1] .. '}')
  end
end
if count <= 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return #fields / 2
"""
