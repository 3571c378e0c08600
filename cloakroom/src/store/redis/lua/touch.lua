local cur = hash_fields(KEYS[1], 'i', 'a')
if not cur or not is_live(cur[1], cur[2], ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 'i', ARGV[1])
local at = ARGV[2]
if tonumber(cur[2]) < tonumber(at) then at = cur[2] end
redis.call('PEXPIREAT', KEYS[1], at)
return 1
