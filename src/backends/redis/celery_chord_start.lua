-- celery_chord_start: the producer's half of Celery's Redis chord (`set_chord_size` in celery/backends/redis.py):
-- writes the chord's size to `.s` before any member is sent, so every member's join, Celery's or Fennel's
-- (celery_chord_join.lua), knows when the group is complete. Celery's producer writes it just before sending the
-- last member; writing it first changes nothing for its workers and lets no member miss it.
-- A chord sent again with the same ids (a worker redelivered mid-workflow, a beat fire sent again) whose join has
-- completed already, or whose callback has a stored state, is left alone: a fresh `.s` would let a Celery worker
-- whose member runs again find the join complete and send the callback again.
--
-- KEYS[1]  celery-taskset-meta-<group id>.s   the chord's size
-- KEYS[2]  fennel.chord.<group id>.done       Fennel's marker of a completed join
-- KEYS[3]  celery-task-meta-<callback id>     the callback's result (any state: the chord has completed)
-- ARGV[1]  the size (header members)
-- ARGV[2]  expiry, seconds
-- Returns 1 if `.s` was written, 0 if the chord had completed already.

if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return 1
