local old = hash_fields(KEYS[1], 'u', 'i', 'a')
if not old or not is_live(old[2], old[3], ARGV[6]) then return -1 end
local taken = hash_fields(KEYS[2], 'i', 'a', 'u')
if redis.call('EXISTS', KEYS[2]) == 1 then
  if taken and is_live(taken[1], taken[2], ARGV[6]) then return 0 end
  redis.call('DEL', KEYS[2])
  if taken and taken[3] then redis.call('ZREM', ARGV[10] .. 'u:' .. taken[3], ARGV[9]) end
end
redis.call('DEL', KEYS[1])
if old[1] then redis.call('ZREM', ARGV[10] .. 'u:' .. old[1], ARGV[12]) end
if tonumber(ARGV[5]) <= tonumber(ARGV[6]) then return 1 end
write(KEYS[2], KEYS[3])
return 1
