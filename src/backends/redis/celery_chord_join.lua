-- celery_chord_join: record one chord member's result in Celery's own Redis join (celery/backends/redis.py,
-- `on_chord_part_return`), so Fennel's and Celery's workers join the same chord, and say whether every member
-- is in. Exactly one call, the one that first finds the join complete, gets `first` = 1 and marks it done.
--
-- Celery's join is not atomic: a MULTI pipeline (ZADD, ZCOUNT, GET .t, GET .s) and then a check in Python, and
-- the callback send and the DEL of the keys are later steps; a member run again before the DEL (acks_late,
-- redelivery) finds the count complete again and sends the callback a second time. Here the whole join is this
-- one script: a member whose group_index is in already is not added again (whatever its result now), and the
-- completing call deletes `.s` and `.t` (so a Celery worker that joins late never sends the callback) and leaves
-- Fennel's done marker, so a member delivered again learns the join is complete and not that it completed it.
-- The zset stays until it expires: a callback sent by reference reads the results from it (chordResults).
--
-- KEYS[1]  celery-taskset-meta-<group id>.j   zset: encode([1, task id, state, result]) scored by group_index
-- KEYS[2]  celery-taskset-meta-<group id>.t   Celery's counter of members added after the start (add_to_chord)
-- KEYS[3]  celery-taskset-meta-<group id>.s   the chord's size, written by the producer before any member is sent
-- KEYS[4]  fennel.chord.<group id>.done       Fennel's: the total, once the join is complete
-- ARGV[1]  this member's group_index
-- ARGV[2]  its entry, as Celery's backend encodes it: [1, "<task id>", "SUCCESS", <result JSON>]
-- ARGV[3]  the size in the member's message (Fennel's chord_size), used only if `.s` is missing; 0: none
--          (Celery's messages carry none: its join waits for `.s`)
-- ARGV[4]  expiry of the keys, seconds
-- ARGV[5]  1: return the entries once complete; 0: leave them (a callback sent by reference reads them)
-- Returns {0} while incomplete; {1, first, total, entry, score, entry, score, …} once complete (the entries in
-- group_index order, with their scores; none when ARGV[5] is 0).

local join, size_key, done_key = KEYS[1], KEYS[3], KEYS[4]
local ttl = tonumber(ARGV[4])
local done = redis.call('GET', done_key)
if not done and redis.call('ZCOUNT', join, ARGV[1], ARGV[1]) == 0 then
  redis.call('ZADD', join, ARGV[1], ARGV[2])
end
redis.call('EXPIRE', join, ttl)

local total
if done then
  total = tonumber(done)
else
  local size = redis.call('GET', size_key)
  if size then
    total = tonumber(size) + (tonumber(redis.call('GET', KEYS[2])) or 0)
    redis.call('EXPIRE', size_key, ttl)
    redis.call('EXPIRE', KEYS[2], ttl)
  else
    total = tonumber(ARGV[3])
  end
end

if total <= 0 then return {0} end
local first = 0
if not done then
  if redis.call('ZCARD', join) < total then return {0} end
  first = 1
  redis.call('SET', done_key, total, 'EX', ttl)
  redis.call('DEL', size_key, KEYS[2])
end

local out = {1, first, total}
if ARGV[5] == '0' then return out end
local entries = redis.call('ZRANGE', join, 0, -1, 'WITHSCORES')
for i = 1, #entries do out[#out + 1] = entries[i] end
return out
