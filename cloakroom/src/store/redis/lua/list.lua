redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local out = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local d = hash_fields(ARGV[3] .. 's:' .. m, 'u', 'i', 'a', 'r')
  if not d or d[1] ~= ARGV[1] then
    redis.call('ZREM', KEYS[1], m)
  elseif d[4] and is_live(d[2], d[3], ARGV[2]) then
    out[#out + 1] = m
    out[#out + 1] = d[4]
    out[#out + 1] = d[2]
  end
end
return out
