-- dead_letter: move a held message to the dead letters with a reason (reject without requeue).
--
-- KEYS[1]  unacked          hash
-- KEYS[2]  unacked_index    zset
-- KEYS[3]  fennel.leases    zset
-- KEYS[4]  dead letters     hash  id -> JSON record
-- KEYS[5]  dead letter seq  string counter
-- KEYS[6]  (optional) fennel.dedupe.<task id>, freed when the message was published with deduplicate
-- ARGV[1]  delivery_tag
-- ARGV[2]  reason
-- ARGV[3]  now, unix seconds
-- ARGV[4]  task id ('' if unknown)
-- ARGV[5]  task name ('' if unknown)
-- ARGV[6]  queue
-- ARGV[7]  the envelope as delivered
-- Returns the dead letter's id, or false if the message was no longer held.

if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return false end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if KEYS[6] then redis.call('DEL', KEYS[6]) end
local id = redis.call('INCR', KEYS[5])
redis.call('HSET', KEYS[4], id, cjson.encode({
  id = tostring(id), queue = ARGV[6], reason = ARGV[2], created_at = tonumber(ARGV[3]),
  task_id = ARGV[4], task_name = ARGV[5], envelope = ARGV[7] }))
return tostring(id)
