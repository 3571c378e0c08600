redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local n = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local k = ARGV[4] .. 's:' .. m
  local d = hash_fields(k, 'u', 'i', 'a')
  if not d or d[1] ~= ARGV[1] then
    redis.call('ZREM', KEYS[1], m)
  elseif m ~= ARGV[2] then
    if is_live(d[2], d[3], ARGV[3]) then n = n + 1 end
    redis.call('DEL', k)
    redis.call('ZREM', KEYS[1], m)
  end
end
return n
