-- chord_join: record one chord member's result and say whether every member is in (the chord's atomic
-- counter: no polling task, as Celery's chord_unlock is on backends without counters). Exactly one call,
-- the one whose insert completes the set, gets `first` = 1; a redelivered member's second insert changes
-- nothing. Celery's own Redis join (`<gid>.j` zset + `<gid>.t` counter) is not reused: its members are
-- Python-pickled-shaped results read only by Celery workers; Fennel's is its own, side by side.
--
-- KEYS[1]  fennel.chord.<group id>   hash: member index -> result JSON
-- ARGV[1]  this member's index
-- ARGV[2]  its result, JSON
-- ARGV[3]  the chord's size
-- ARGV[4]  expiry of the join, seconds
-- ARGV[5]  1: return the results once complete; 0: leave them (a callback sent by reference reads them)
-- Returns {0} while incomplete; {1, first, result 0, result 1, …} once complete (no results when ARGV[5] is 0).

local added = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
local size = tonumber(ARGV[3])
local count = redis.call('HLEN', KEYS[1])
if count < size then return {0} end
local out = {1, (added == 1 and count == size) and 1 or 0}
if ARGV[5] == '0' then return out end
for i = 0, size - 1 do out[#out + 1] = redis.call('HGET', KEYS[1], tostring(i)) end
return out
