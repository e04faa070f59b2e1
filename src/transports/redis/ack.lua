-- ack: forget delivered messages for good (kombu's QoS.ack: ZREM + HDEL, here in one step for a batch).
-- A worker acknowledges the messages settled in one event-loop turn together: three commands per batch,
-- not three per message.
--
-- KEYS[1]  unacked        hash
-- KEYS[2]  unacked_index  zset
-- KEYS[3]  fennel.leases  zset
-- KEYS[4..] fennel.dedupe.<task id> of the acked messages published with deduplicate (their ids are free again)
-- ARGV     delivery_tags (at most a few thousand: Lua's unpack limit)
-- Returns the number of messages that were still held (not already restored or acked).

redis.call('ZREM', KEYS[2], unpack(ARGV))
redis.call('ZREM', KEYS[3], unpack(ARGV))
if #KEYS > 3 then redis.call('DEL', unpack(KEYS, 4)) end
return redis.call('HDEL', KEYS[1], unpack(ARGV))
