local function write(k, ik)
  redis.call('HSET', k, 'r', ARGV[1], 'v', ARGV[2], 'i', ARGV[3], 'a', ARGV[4])
  if ARGV[7] == '1' then
    redis.call('HSET', k, 'u', ARGV[8])
    if ARGV[11] == '1' then index_add(ik, ARGV[9], ARGV[4], ARGV[6], false) end
  else
    redis.call('HDEL', k, 'u')
  end
  redis.call('PEXPIREAT', k, ARGV[5])
end
