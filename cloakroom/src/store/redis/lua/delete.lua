local cur = hash_fields(KEYS[1], 'u')
redis.call('DEL', KEYS[1])
local u = cur and cur[1]
if u and ARGV[3] == '1' then redis.call('ZREM', ARGV[2] .. 'u:' .. u, ARGV[1]) end
return u
