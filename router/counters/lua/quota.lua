-- Shared by every script (prepended to each when it is loaded).
--
-- A quota's hash holds its buckets ('<bucket>': usage) and two fields that make a read O(1):
-- 'total', the sum of every bucket in the hash, and 'low', at most its oldest bucket. `add` keeps
-- both with every change of a bucket; `counted` scans the buckets only when 'low' has left the
-- window or holds no usage, deleting the buckets that no longer count.

-- The quota rule, as router.engine.admits has it: room for `amount` within the hard limit and, unless the
-- request may use the headroom (soft < 0), usage still below the soft limit.
local function admits(used, amount, soft, limit)
  return used + amount <= limit and (soft < 0 or used < soft)
end

-- A bucket that held nothing before is new: only then can it be older than 'low' (a hash holding any bucket keeps
-- 'low'), and only then does the hash's lifetime have to run from it (`ttl` outlasts the window from a bucket's start).
local function add(key, bucket, amount, ttl)
  redis.call('HINCRBY', key, 'total', amount)
  if redis.call('HINCRBY', key, bucket, amount) ~= tonumber(amount) then
    return
  end
  local low = tonumber(redis.call('HGET', key, 'low'))
  if low == nil or tonumber(bucket) < low then
    redis.call('HSET', key, 'low', bucket)
  end
  redis.call('EXPIRE', key, ttl)
end

-- The usage counted from bucket `oldest` on, and the oldest bucket holding usage (-1 if none).
local function counted(key, oldest)
  local state = redis.call('HMGET', key, 'total', 'low')
  local low = tonumber(state[2])
  if low ~= nil and low >= oldest and (tonumber(redis.call('HGET', key, state[2])) or 0) > 0 then
    return tonumber(state[1]), low
  end
  local fields = redis.call('HGETALL', key)
  local total, first = 0, -1
  low = nil
  for j = 1, #fields, 2 do
    local bucket, value = tonumber(fields[j]), tonumber(fields[j + 1])
    if bucket ~= nil then
      if bucket < oldest or value == 0 then
        redis.call('HDEL', key, fields[j])
      else
        total = total + value
        if low == nil or bucket < low then low = bucket end
        if value > 0 and (first < 0 or bucket < first) then first = bucket end
      end
    end
  end
  if low == nil then
    redis.call('HDEL', key, 'total', 'low')
  else
    redis.call('HSET', key, 'total', string.format('%d', total), 'low', string.format('%d', low))
  end
  return total, first
end
