-- Reserve a decision on every quota of its model, if each has room, and append its ledger row.
--
-- KEYS: one hash per quota, then the ready marker, the ledger stream and the decision's memory.
-- ARGV, six per quota: oldest counted bucket, bucket to add to, amount, soft limit (-1: may use the
-- headroom), hard limit, key lifetime; then the decision's ledger row, its memory, that memory's
-- lifetime. Returns 0 when reserved and recorded, -1 when the counters are being rebuilt, else the
-- 1-based index of the first quota that has no room.

local n = #KEYS - 3
if redis.call('EXISTS', KEYS[n + 1]) == 0 then
  return -1
end
for i = 1, n do
  local base = (i - 1) * 6
  local used = counted(KEYS[i], tonumber(ARGV[base + 1]))
  local amount, soft, limit = tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4]), tonumber(ARGV[base + 5])
  if not admits(used, amount, soft, limit) then
    return i
  end
end
for i = 1, n do
  local base = (i - 1) * 6
  add(KEYS[i], ARGV[base + 2], ARGV[base + 3], ARGV[base + 6])
end
local row = n * 6
redis.call('XADD', KEYS[n + 2], '*', 'kind', 'decision', 'row', ARGV[row + 1])
redis.call('HSET', KEYS[n + 3], 'decision', ARGV[row + 2])
redis.call('EXPIRE', KEYS[n + 3], ARGV[row + 3])
return 0
