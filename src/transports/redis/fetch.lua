-- fetch: take up to N messages from a queue's priority buckets and record each as unacked, in one step.
-- Kombu does BRPOP and then records the message in a second round trip; a worker killed between the two
-- loses the message. Here the pop and the record are one atomic script, in kombu's own layout, so
-- Python workers' restore sweeps and Fennel's interoperate.
--
-- KEYS[1]  unacked          hash  delivery_tag -> JSON [message, exchange, routing_key]
-- KEYS[2]  unacked_index    zset  delivery_tag scored by delivery time (unix seconds)
-- KEYS[3]  fennel.leases    zset  the delivery_tags Fennel consumers hold, scored by lease renewal time;
--                                Fennel's restore sweep looks only here, never at Python workers' entries
-- KEYS[4]  dead letters     hash  id -> JSON record      (for envelopes that are not JSON)
-- KEYS[5]  dead letter seq  string counter
-- KEYS[6..] the buckets to pop, in the order to serve them (queue, queue\x06\x163, …)
-- ARGV[1]  max messages to take
-- ARGV[2]  now, unix seconds (float)
-- ARGV[3]  the wake markers' key prefix (a queue's marker is prefix .. queue)
-- ARGV[4..] the queue name of each bucket, parallel to KEYS[6..]
-- Returns a flat array: queue, delivery_tag, envelope, queue, delivery_tag, envelope, …
-- A fetch that took `max` messages and left some behind in a queue's buckets sets that queue's wake marker, so
-- that another consumer blocked on it (BZPOPMIN) takes them: here rather than in a second round trip after the
-- reply, and only where something is left.

local max = tonumber(ARGV[1])
local now = ARGV[2]
local out = {}
local records = {}  -- HSET field/value pairs for unacked
local scores = {}   -- ZADD score/member pairs for unacked_index and fennel.leases
local taken = 0

-- The delivery tag, read without decoding the whole envelope: cjson.decode would build the whole document,
-- and even a Lua pattern scan (gmatch) costs ~7 ns a byte, ~6 ms for a 0.9 MB envelope, all of it spent in
-- the body, Redis's single thread blocked meanwhile. So the key is found with a plain find (memchr for the
-- quote, then a compare; a base64 body has no quote at all), and only where it is found is the rest of the
-- pattern tried, anchored. Inside a JSON string a quote is escaped (\"), so the pattern only matches a real
-- key; if the key appears more than once (a header of that name), the envelope is decoded to find the property.
local KEY = '"delivery_tag"'
local function tag_of(raw)
  local found, count = nil, 0
  local from = 1
  while true do
    local at = string.find(raw, KEY, from, true)
    if not at then break end
    local t = string.match(raw, '^"delivery_tag"%s*:%s*"([^"\\]+)"', at)
    if t then
      found = t
      count = count + 1
    end
    from = at + #KEY
  end
  if count == 1 then return found, true end
  local ok, doc = pcall(cjson.decode, raw)
  if not ok then return nil, false end
  local tag = type(doc) == 'table' and type(doc.properties) == 'table' and doc.properties.delivery_tag
  if type(tag) ~= 'string' then return nil, true end
  return tag, true
end

-- The first bucket that may still hold messages once `max` are taken (the one the fetch stopped in); those before
-- it were emptied.
local unknown = nil
for i = 6, #KEYS do
  local queue = ARGV[i - 2]
  -- RPOP with a count (Redis 6.2+): the batch leaves the list in one command, oldest first. Again while
  -- envelopes that went to the dead letters left room.
  local popped = redis.call('RPOP', KEYS[i], max - taken)
  while popped do
    for _, raw in ipairs(popped) do
      local tag, json = tag_of(raw)
      if not tag then
        -- Not a kombu envelope: it can never be run, so it goes to the dead letters now, with the reason.
        local id = redis.call('INCR', KEYS[5])
        redis.call('HSET', KEYS[4], id, cjson.encode({
          id = tostring(id), queue = queue, created_at = tonumber(now),
          reason = json and 'ProtocolError: not a kombu envelope (no properties.delivery_tag)' or 'ProtocolError: envelope is not JSON',
          envelope = raw }))
      else
        records[#records + 1] = tag
        records[#records + 1] = '[' .. raw .. ', "", ' .. cjson.encode(queue) .. ']'
        scores[#scores + 1] = now
        scores[#scores + 1] = tag
        out[#out + 1] = queue
        out[#out + 1] = tag
        out[#out + 1] = raw
        taken = taken + 1
      end
    end
    popped = taken < max and redis.call('RPOP', KEYS[i], max - taken)
  end
  if taken >= max then
    unknown = i
    break
  end
end
-- One HSET and two ZADDs for the whole batch (the caller keeps a batch to its prefetch window, far below
-- Lua's unpack limit).
if taken > 0 then
  redis.call('HSET', KEYS[1], unpack(records))
  redis.call('ZADD', KEYS[2], unpack(scores))
  redis.call('ZADD', KEYS[3], unpack(scores))
end
if unknown then
  local woken = {}
  for i = unknown, #KEYS do
    local queue = ARGV[i - 2]
    if not woken[queue] and redis.call('LLEN', KEYS[i]) > 0 then
      woken[queue] = true
      redis.call('ZADD', ARGV[3] .. queue, 0, 'w')
    end
  end
end
return out
