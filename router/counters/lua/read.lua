-- Read the counters for a decision, and reserve the walk's likely choice in the same step if it holds.
--
-- KEYS: the quota hashes, then the models' cooldown and rate-limit keys, then the ready marker,
-- the ledger stream and the memory of the decision. ARGV: the number of quota hashes, each one's
-- oldest counted bucket; then the choice to reserve at once if it holds (router.decisions): the
-- chosen model's 1-based position among the models (0: read only), its number of charges, six per
-- charge (quota position, bucket, amount, soft limit or -1, hard limit, key lifetime), the
-- decision's ledger row, its memory and that memory's lifetime.
-- Returns the marker's existence, whether the choice was reserved, then per quota its counted
-- usage and its oldest bucket holding usage (-1 if none), then the state keys' values; the
-- readings are those from before the reservation. Summing here keeps the reply small.

local quotas = tonumber(ARGV[1])
local ready = redis.call('EXISTS', KEYS[#KEYS - 2])
local out = {ready, 0}
local used = {}
for i = 1, quotas do
  local sum, first = counted(KEYS[i], tonumber(ARGV[i + 1]))
  used[i] = sum
  out[#out + 1] = sum
  out[#out + 1] = first
end
for i = quotas + 1, #KEYS - 3 do
  out[#out + 1] = redis.call('GET', KEYS[i])
end
local choice = tonumber(ARGV[quotas + 2])
if ready == 0 or choice == 0 then
  return out
end
local state = 2 + 2 * quotas + 2 * (choice - 1)
if out[state + 1] or out[state + 2] then
  return out
end
local charges = tonumber(ARGV[quotas + 3])
local base = quotas + 3
for c = 0, charges - 1 do
  local a = base + c * 6
  local q, amount, soft, limit = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  if not admits(used[q], amount, soft, limit) then
    return out
  end
end
for c = 0, charges - 1 do
  local a = base + c * 6
  add(KEYS[tonumber(ARGV[a + 1])], ARGV[a + 2], ARGV[a + 3], ARGV[a + 6])
end
local row = base + charges * 6
redis.call('XADD', KEYS[#KEYS - 1], '*', 'kind', 'decision', 'row', ARGV[row + 1])
redis.call('HSET', KEYS[#KEYS], 'decision', ARGV[row + 2])
redis.call('EXPIRE', KEYS[#KEYS], ARGV[row + 3])
out[2] = 1
return out
