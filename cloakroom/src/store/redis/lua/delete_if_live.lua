local d = hash_fields(KEYS[1], 'u', 'i', 'a')
if not d or not is_live(d[2], d[3], ARGV[1]) then return {0} end
redis.call('DEL', KEYS[1])
return {1, d[1] or ''}
