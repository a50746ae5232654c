-- Take back charges counted for a report the database did not store (a repeated idempotency key).
--
-- KEYS: quota hashes; ARGV, three per hash: bucket, amount (negative to take back), key lifetime.

for i = 1, #KEYS do
  add(KEYS[i], ARGV[i * 3 - 2], ARGV[i * 3 - 1], ARGV[i * 3])
end
