-- lease: take or renew a lease in one step ("holder leads until the key expires"; beat's leader). The key is
-- taken if it does not exist (never held, expired or released) or already holds this holder (a renewal: its
-- expiry moves on); otherwise nothing changes. Expiry is the server's (PX), so holders' clocks need not agree.
--
-- KEYS[1]  fennel.lease.<name>   string: holder
-- ARGV[1]  holder
-- ARGV[2]  time to live, ms
-- Returns {holder now, its remaining ms}: the caller leads if the first is its own holder.

local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
  return {ARGV[1], tonumber(ARGV[2])}
end
return {current, redis.call('PTTL', KEYS[1])}
