-- restore: put unacked messages back on their queues, marked redelivered. Used for a reject with requeue
-- (ARGV[3] = the tag) and for the visibility sweep (ARGV[3] = '' : every tag whose Fennel lease was last
-- renewed before ARGV[1]). The sweep reads only fennel.leases: a Python worker's unacked entries (etas,
-- prefetched and acks_late messages, which kombu never renews) are left to kombu's own sweep.
-- Restored messages go to the consuming end of their bucket (RPUSH), as kombu's restore does, so they run next.
--
-- KEYS[1]  unacked        hash
-- KEYS[2]  unacked_index  zset
-- KEYS[3]  unacked_mutex  kombu's sweep lock: while a Python worker holds it, the sweep waits its turn
-- KEYS[4]  fennel.leases  zset
-- ARGV[1]  restore tags delivered at or before this unix time (sweep)
-- ARGV[2]  at most this many (sweep)
-- ARGV[3]  one delivery_tag to restore now, or ''
-- ARGV[4]  the priority-bucket separator, '\x06\x16'
-- ARGV[5]  the wake key prefix (restored messages wake idle Fennel consumers)
-- Returns the number of messages restored, or -1 if kombu's mutex is held.

local tags
if ARGV[3] ~= '' then
  tags = { ARGV[3] }
else
  if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
  tags = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
end
local sep = ARGV[4]
local restored = 0

-- Sets "redelivered": true at the start of the first object under `key`, in the original text: the
-- message is never re-encoded (cjson would turn [] into {} and round numbers), only marked, as kombu marks it.
local function mark(text, key)
  local _, e = string.find(text, '"' .. key .. '"%s*:%s*{')
  if not e then return text end
  local rest = string.sub(text, e + 1)
  local comma = string.match(rest, '^%s*}') and '' or ', '
  return string.sub(text, 1, e) .. '"redelivered": true' .. comma .. rest
end

for _, tag in ipairs(tags) do
  local entry = redis.call('HGET', KEYS[1], tag)
  if entry then
    -- The entry is kombu's [message, exchange, routing_key].
    local ok, triple = pcall(cjson.decode, entry)
    local raw = string.match(entry, '^%[%s*(.*),%s*"[^"]*",%s*"[^"]*"%s*%]$')
    if ok and raw and type(triple) == 'table' and type(triple[1]) == 'table' and type(triple[3]) == 'string' then
      local queue = triple[3]
      local priority = 0
      if type(triple[1].properties) == 'table' then priority = tonumber(triple[1].properties.priority) or 0 end
      redis.call('ZADD', ARGV[5] .. queue, 0, 'w')
      -- kombu's buckets: 0, 3, 6, 9; a message goes to the highest step not above its priority.
      local step = 0
      for _, s in ipairs({ 3, 6, 9 }) do if priority >= s then step = s end end
      if step > 0 then queue = queue .. sep .. step end
      redis.call('RPUSH', queue, mark(mark(raw, 'headers'), 'delivery_info'))
      restored = restored + 1
      redis.call('HDEL', KEYS[1], tag)
      redis.call('ZREM', KEYS[2], tag)
      redis.call('ZREM', KEYS[4], tag)
    end
    -- An entry that cannot be read is left where it is (unacked, indexed): never dropped.
  else
    redis.call('ZREM', KEYS[2], tag)
    redis.call('ZREM', KEYS[4], tag)
  end
end
return restored
