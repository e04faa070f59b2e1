-- requeue_dead: publish a dead letter's envelope to its queue again and remove the record.
--
-- KEYS[1]  dead letters  hash
-- ARGV[1]  dead letter id
-- ARGV[2]  the priority-bucket separator, '\x06\x16'
-- ARGV[3]  the wake key prefix (a marker zset per queue that idle Fennel consumers block on)
-- Returns 1 if requeued, 0 if there is no such id.

local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return 0 end
local letter = cjson.decode(record)
local queue = letter.queue
local ok, doc = pcall(cjson.decode, letter.envelope)
if ok and type(doc) == 'table' and type(doc.properties) == 'table' then
  local priority = tonumber(doc.properties.priority) or 0
  local step = 0
  for _, s in ipairs({ 3, 6, 9 }) do if priority >= s then step = s end end
  if step > 0 then queue = queue .. ARGV[2] .. step end
end
redis.call('LPUSH', queue, letter.envelope)
redis.call('ZADD', ARGV[3] .. letter.queue, 0, 'w')
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
