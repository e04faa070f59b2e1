-- park: park a call until its inputs are ready (object references), atomically against the stores of those
-- inputs (store.lua, then release.lua): an input whose outcome is stored already is read here and does not count,
-- one stored later finds this call in its dependents set. Parking the same call again changes nothing.
--
-- KEYS[1]  fennel.parked.<task id>       hash: call (the message and its route, JSON); later released_by, status
-- KEYS[2]  fennel.waits.<task id>        set: the inputs it still waits for
-- KEYS[3..] per input, two keys: celery-task-meta-<input id>, then fennel.dependents.<input id> (set of task ids)
-- ARGV[1]  the task id
-- ARGV[2]  the call, JSON
-- ARGV[3]  expiry in seconds (the results'; 0: keep)
-- ARGV[4..] the input ids, in the order of their keys
-- Returns {0}: parked (or parked before); {1}: every input succeeded already, nothing parked; {2, input, status}:
-- that input failed or was revoked already, nothing parked.

if redis.call('EXISTS', KEYS[1]) == 1 then return {0} end
local waiting = {}
for i = 4, #ARGV do
  local input = ARGV[i]
  local meta = redis.call('GET', KEYS[2 * (i - 3) + 1])
  local status = nil
  if meta then
    local ok, doc = pcall(cjson.decode, meta)
    if ok and type(doc) == 'table' then status = doc.status end
  end
  if status == 'FAILURE' or status == 'REVOKED' then return {2, input, status} end
  if status ~= 'SUCCESS' then waiting[#waiting + 1] = i end
end
if #waiting == 0 then return {1} end
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'call', ARGV[2])
for _, i in ipairs(waiting) do
  redis.call('SADD', KEYS[2], ARGV[i])
  local dependents = KEYS[2 * (i - 3) + 2]
  redis.call('SADD', dependents, ARGV[1])
  if ttl > 0 then redis.call('EXPIRE', dependents, ttl) end
end
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
return {0}
