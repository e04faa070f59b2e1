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
for _, tag in ipairs(tags) do
  local entry = redis.call('HGET', KEYS[1], tag)
  redis.call('ZREM', KEYS[2], tag)
  redis.call('ZREM', KEYS[4], tag)
  redis.call('HDEL', KEYS[1], tag)
  if entry then
    local ok, triple = pcall(cjson.decode, entry)
    if ok and type(triple) == 'table' and type(triple[1]) == 'table' then
      local message = triple[1]
      local queue = triple[3]
      redis.call('ZADD', ARGV[5] .. queue, 0, 'w')
      if type(message.headers) == 'table' then message.headers.redelivered = true end
      if type(message.properties) == 'table' then
        if type(message.properties.delivery_info) == 'table' then message.properties.delivery_info.redelivered = true end
        local priority = tonumber(message.properties.priority) or 0
        -- kombu's buckets: 0, 3, 6, 9; a message goes to the highest step not above its priority.
        local step = 0
        for _, s in ipairs({ 3, 6, 9 }) do if priority >= s then step = s end end
        if step > 0 then queue = queue .. sep .. step end
      end
      redis.call('RPUSH', queue, cjson.encode(message))
      restored = restored + 1
    end
  end
end
return restored
