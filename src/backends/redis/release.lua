-- release: the calls that the outcome of one input releases (object references), after store.lua has stored it
-- and said calls are parked on it. A call is released once: on SUCCESS when this was the last input it waited
-- for, on FAILURE or REVOKED at once (it must not run). Calls this input released before (its outcome stored
-- again: a redelivered message) come back marked `again`, so the caller can send them again where a duplicate is
-- dropped. The dependents set is kept until it expires, for those repeats.
--
-- KEYS[1]  fennel.dependents.<input id>   set of the task ids parked on this input
-- KEYS[2]  celery-task-meta-<input id>     its outcome, as it stands
-- ARGV[1]  the input id
-- Returns a flat list, four values per call released: task id, call JSON, status, again (1 or 0).

local meta = redis.call('GET', KEYS[2])
if not meta then return {} end
local ok, doc = pcall(cjson.decode, meta)
if not ok or type(doc) ~= 'table' then return {} end
local status = doc.status
if status ~= 'SUCCESS' and status ~= 'FAILURE' and status ~= 'REVOKED' then return {} end
local input = ARGV[1]
local out = {}
for _, taskId in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local parked = 'fennel.parked.' .. taskId
  local call = redis.call('HMGET', parked, 'call', 'released_by', 'status')
  if call[1] then
    if call[2] then
      if call[2] == input then
        out[#out + 1] = taskId; out[#out + 1] = call[1]; out[#out + 1] = call[3]; out[#out + 1] = 1
      end
    else
      local waits = 'fennel.waits.' .. taskId
      redis.call('SREM', waits, input)
      if status ~= 'SUCCESS' or redis.call('SCARD', waits) == 0 then
        redis.call('HSET', parked, 'released_by', input, 'status', status)
        out[#out + 1] = taskId; out[#out + 1] = call[1]; out[#out + 1] = status; out[#out + 1] = 0
      end
    end
  end
end
return out
