local cur = hash_fields(KEYS[1], 'i', 'a', 'u')
if redis.call('EXISTS', KEYS[1]) == 1 then
  if cur and is_live(cur[1], cur[2], ARGV[6]) then return 0 end
  redis.call('DEL', KEYS[1])
  if ARGV[11] == '1' and cur and cur[3] then
    redis.call('ZREM', ARGV[10] .. 'u:' .. cur[3], ARGV[9])
  end
end
if tonumber(ARGV[5]) <= tonumber(ARGV[6]) then return 1 end
write(KEYS[1], KEYS[2])
return 1
