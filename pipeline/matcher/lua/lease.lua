-- Take, renew or give up a lease: KEYS[1] the lease, ARGV[1] who asks, ARGV[2] its life
-- (ms; 0 = give it up). Returns 1 when ARGV[1] holds it now (taken free, or renewed), else
-- 0. A holder that dies stops renewing: the lease passes to the next one who asks after
-- ARGV[2] ms.
local holder = redis.call('GET', KEYS[1])
if ARGV[2] == '0' then
  if holder == ARGV[1] then redis.call('DEL', KEYS[1]) end
  return 0
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
