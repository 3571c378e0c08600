local d = hash_fields(KEYS[1], 'u', 'i', 'a')
if not d or d[1] ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[1])
if is_live(d[2], d[3], ARGV[2]) then return 1 end
return 0
