-- publish_once: publish a message unless one with the same task id, published the same way, is still
-- pending (BullMQ's jobId semantics: `deduplicate: true` with a caller's taskId). The id is taken by a key
-- holding the message's delivery tag; the consumer deletes it on ack or dead letter (ack.lua, dead_letter.lua).
-- A safety expiry bounds a key whose message vanished without either (a purge also deletes them).
-- With `deduplicate: { ttlSec }` the message carries no dedupe header, so no ack frees the key: ARGV[5] is then
-- that time to live, and the id stays taken for it whether or not the message has run (beat's fires).
--
-- KEYS[1]  fennel.dedupe.<task id>   string: delivery_tag
-- KEYS[2]  the bucket (list) to LPUSH to, or fennel.scheduled when due > 0
-- KEYS[3]  fennel.wake.<queue>       zset (the idle consumers' wake-up marker)
-- KEYS[4]  _kombu.binding.<queue>    set (kombu's declaration of the queue)
-- ARGV[1]  delivery_tag
-- ARGV[2]  the envelope (or, when scheduled, `<bucket>\n<envelope>`)
-- ARGV[3]  due, ms since epoch (0: now)
-- ARGV[4]  the binding member (`<queue>\x06\x16\x06\x16<queue>`)
-- ARGV[5]  expiry of the key, seconds (the safety expiry, or the ttl)
-- Returns 1 if published, 0 if the id was taken.

if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', tonumber(ARGV[5])) then return 0 end
local due = tonumber(ARGV[3])
if due > 0 then
  redis.call('ZADD', KEYS[2], due, ARGV[2])
else
  redis.call('LPUSH', KEYS[2], ARGV[2])
  redis.call('ZADD', KEYS[3], 0, 'w')
end
redis.call('SADD', KEYS[4], ARGV[4])
return 1
