-- ack: forget a delivered message for good (kombu's QoS.ack: ZREM + HDEL, here in one step).
--
-- KEYS[1]  unacked        hash
-- KEYS[2]  unacked_index  zset
-- KEYS[3]  fennel.leases  zset
-- ARGV[1]  delivery_tag
-- Returns 1 if the message was still held, 0 if it was not (already restored or acked).

redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
