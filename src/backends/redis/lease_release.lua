-- lease_release: give a lease up, only if this holder holds it (a holder whose lease lapsed and was taken by
-- another must not delete the new holder's).
--
-- KEYS[1]  fennel.lease.<name>   string: holder
-- ARGV[1]  holder
-- Returns 1 if released, 0 if another holds it (or nobody).

if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
