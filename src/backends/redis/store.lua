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
-- Returns the number of metas stored (those skipped found a SUCCESS already there).

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
local stored = 0
for i, key in ipairs(KEYS) do
  if not succeeded[key] then
    local meta = ARGV[2 * i + 1]
    if ttl > 0 then
      redis.call('SET', key, meta, 'EX', ttl)
    else
      redis.call('SET', key, meta)
    end
    redis.call('PUBLISH', key, meta)
    stored = stored + 1
    -- A SUCCESS written earlier in this batch guards the rest of it too.
    if ARGV[2 * i] == 'SUCCESS' then succeeded[key] = true end
  end
end
return stored
