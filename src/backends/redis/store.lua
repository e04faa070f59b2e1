-- store: write task metas in Celery's layout and publish each to its waiters, unless a SUCCESS is already
-- stored for that task. Celery's Redis backend does SETEX + PUBLISH; Python clients SUBSCRIBE to the key's
-- name before sending. The SUCCESS guard is Celery's rule (backends/base.py _store_result): a redelivered
-- duplicate must not replace the result of the run that completed. A worker stores the outcomes of one
-- event-loop turn together, so this takes a batch: one MGET for the guard, then SET and PUBLISH per task.
--
-- KEYS     celery-task-meta-<task id>, one per meta (the same key may repeat; metas apply in order)
-- ARGV[1]  expiry in seconds (0: keep)
-- ARGV[2..] per key, two values: its status, then its meta (JSON); the status is passed so this script
--           never decodes what it writes
-- Returns the task ids among these whose outcome is ready and that calls are parked on (a key
-- fennel.dependents.<task id> exists: object references, park.lua): the caller releases those (release.lua). One
-- EXISTS per ready meta; nearly every task has none.

local ttl = tonumber(ARGV[1])
local current = redis.call('MGET', unpack(KEYS))
local succeeded = {}
for i, text in ipairs(current) do
  -- The plain find first: only a meta that mentions SUCCESS at all is decoded.
  if text and string.find(text, 'SUCCESS', 1, true) then
    local ok, doc = pcall(cjson.decode, text)
    if ok and type(doc) == 'table' and doc.status == 'SUCCESS' then succeeded[KEYS[i]] = true end
  end
end
local READY = { SUCCESS = true, FAILURE = true, REVOKED = true }
local PREFIX = string.len('celery-task-meta-')
local parked = {}
local seen = {}
for i, key in ipairs(KEYS) do
  if not succeeded[key] then
    local meta = ARGV[2 * i + 1]
    if ttl > 0 then
      redis.call('SET', key, meta, 'EX', ttl)
    else
      redis.call('SET', key, meta)
    end
    redis.call('PUBLISH', key, meta)
    -- A SUCCESS written earlier in this batch guards the rest of it too.
    if ARGV[2 * i] == 'SUCCESS' then succeeded[key] = true end
  end
  -- Stored now or kept (a SUCCESS already there), the outcome is ready: are calls parked on it?
  if (succeeded[key] or READY[ARGV[2 * i]]) and not seen[key] then
    seen[key] = true
    local id = string.sub(key, PREFIX + 1)
    if redis.call('EXISTS', 'fennel.dependents.' .. id) == 1 then parked[#parked + 1] = id end
  end
end
return parked
