-- promote: move scheduled messages (countdown / eta) whose time has come onto their queues.
-- Kombu's Redis transport has no delayed delivery (Celery workers hold ETA tasks in memory); Fennel keeps
-- them in the broker, in one sorted set, so no worker holds a far-future message.
--
-- KEYS[1]  scheduled  zset  member "<bucket key>\n<envelope>" scored by due time (unix ms)
-- ARGV[1]  now, unix ms
-- ARGV[2]  at most this many
-- ARGV[3]  the wake key prefix
-- Returns the due time of the next scheduled message (unix ms), or -1 if there is none.

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local cut = string.find(member, '\n', 1, true)
  local bucket = string.sub(member, 1, cut - 1)
  redis.call('LPUSH', bucket, string.sub(member, cut + 1))
  local queue = string.match(bucket, '^(.-)\6\22') or bucket
  redis.call('ZADD', ARGV[3] .. queue, 0, 'w')
  redis.call('ZREM', KEYS[1], member)
end
local next = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if next[2] then return tonumber(next[2]) end
return -1
