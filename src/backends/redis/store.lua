-- store: write a task's meta in Celery's layout and publish it to waiters, unless a SUCCESS is already stored.
-- Celery's Redis backend does SETEX + PUBLISH; Python clients SUBSCRIBE to the key's name before sending.
-- The SUCCESS guard is Celery's rule (backends/base.py _store_result): a redelivered duplicate must not
-- replace the result of the run that completed.
--
-- KEYS[1]  celery-task-meta-<task id>
-- ARGV[1]  the meta, JSON
-- ARGV[2]  expiry in seconds (0: keep)
-- Returns 1 if stored, 0 if a SUCCESS was already there.

local current = redis.call('GET', KEYS[1])
if current then
  local ok, doc = pcall(cjson.decode, current)
  if ok and type(doc) == 'table' and doc.status == 'SUCCESS' then return 0 end
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
