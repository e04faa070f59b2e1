-- consumers_prune: delete the announcements of consumers that stopped renewing them (a worker that died
-- without withdrawing). Reading and deleting are one step, so an entry renewed in between is never deleted.
--
-- KEYS[1]  fennel.consumers   hash: `<queue>\n<consumer>` → expiry, ms since epoch
-- ARGV[1]  now, ms since epoch
-- Returns the number of entries deleted.

local now = tonumber(ARGV[1])
local entries = redis.call('HGETALL', KEYS[1])
local expired = {}
for i = 1, #entries, 2 do
  if (tonumber(entries[i + 1]) or 0) <= now then expired[#expired + 1] = entries[i] end
end
-- HDEL in chunks: unpack() of a long list overflows Lua's stack.
for i = 1, #expired, 1000 do
  redis.call('HDEL', KEYS[1], unpack(expired, i, math.min(i + 999, #expired)))
end
return #expired
