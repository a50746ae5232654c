-- Count a usage report and append its ledger row.
--
-- KEYS: one hash per quota, then the ready marker, the ledger stream, the idempotency key's
-- memory, the named decision's memory and the model's rate-limit state. ARGV: the number of
-- quotas; three per quota: bucket, amount, key lifetime; then the report's ledger row, how long
-- to remember its idempotency key ('' when it has none), how long to remember the named decision
-- ('' when none is named), the rate-limit state ('' when none was reported) and when that expires.
-- Returns {0} when counted and recorded, {1, row} with the earlier report's ledger row when the
-- idempotency key was used, {2} when the decision was already reported, {-1} while the counters
-- are being rebuilt.

local n = tonumber(ARGV[1])
local ready, stream, idempotency, decision, ratelimit = KEYS[n + 1], KEYS[n + 2], KEYS[n + 3], KEYS[n + 4], KEYS[n + 5]
local row = 1 + n * 3
if redis.call('EXISTS', ready) == 0 then
  return {-1}
end
if ARGV[row + 2] ~= '' then
  local earlier = redis.call('GET', idempotency)
  if earlier then
    return {1, earlier}
  end
end
if ARGV[row + 3] ~= '' then
  if redis.call('HSETNX', decision, 'reported', '1') == 0 then
    return {2}
  end
  if redis.call('TTL', decision) < 0 then
    redis.call('EXPIRE', decision, ARGV[row + 3])
  end
end
for i = 1, n do
  local base = 1 + (i - 1) * 3
  add(KEYS[i], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3])
end
redis.call('XADD', stream, '*', 'kind', 'usage', 'row', ARGV[row + 1])
if ARGV[row + 2] ~= '' then
  redis.call('SET', idempotency, ARGV[row + 1], 'EX', ARGV[row + 2])
end
if ARGV[row + 4] ~= '' then
  redis.call('SET', ratelimit, ARGV[row + 4], 'EXAT', ARGV[row + 5])
end
return {0}
