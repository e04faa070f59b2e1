-- publish: write a batch of messages, in one step: each bucket's envelopes (LPUSH, so the first given is the
-- first popped), the scheduled ones (countdown/eta) into fennel.scheduled, a wake-up mark for each queue that
-- got ready messages, and kombu's declaration of each queue this producer has not declared yet. The same
-- writes a kombu producer makes, as one atomic step rather than a MULTI: ioredis builds each MULTI as a
-- Pipeline object that V8 cannot free in a young-generation collection (its constructor gives the object an
-- accessor of its own), so a loop of MULTIs promotes a third of what it allocates into the old generation
-- (plain commands: 0.4%), and a producer sending one task at a time paid for it in scavenges of 5-20 ms.
--
-- KEYS[1]                fennel.scheduled         zset  `<bucket>\n<envelope>` scored by due time (ms)
-- KEYS[2 .. 1+B]         the buckets that get ready messages (lists), B = ARGV[1]
-- KEYS[2+B .. 1+B+W]     fennel.wake.<queue> of each queue that gets ready messages, W = ARGV[2]
-- KEYS[2+B+W ..]         _kombu.binding.<queue> of each queue to declare
-- ARGV[1]  B
-- ARGV[2]  W
-- ARGV[3]  S, the number of scheduled messages
-- ARGV[4 .. 3+B]  how many envelopes each bucket gets, parallel to its key
-- then the envelopes, bucket after bucket
-- then S pairs: due (ms since epoch), `<bucket>\n<envelope>`
-- then one binding member (`<queue>\x06\x16\x06\x16<queue>`) per binding key
-- Returns nothing.

local B, W, S = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
-- Lua's unpack is bounded by the C stack (8,000 values in Redis's Lua): long runs go in slices.
local SLICE = 1000

local at = 4 + B
for b = 1, B do
  local last = at + tonumber(ARGV[3 + b]) - 1
  for from = at, last, SLICE do
    redis.call('LPUSH', KEYS[1 + b], unpack(ARGV, from, math.min(from + SLICE - 1, last)))
  end
  at = last + 1
end
local last = at + 2 * S - 1
for from = at, last, SLICE do
  redis.call('ZADD', KEYS[1], unpack(ARGV, from, math.min(from + SLICE - 1, last)))
end
at = last + 1
for w = 1, W do
  redis.call('ZADD', KEYS[1 + B + w], 0, 'w')
end
for d = 2 + B + W, #KEYS do
  redis.call('SADD', KEYS[d], ARGV[at])
  at = at + 1
end
