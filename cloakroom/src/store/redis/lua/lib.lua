local function is_live(i, a, now)
  local ni, na = tonumber(i), tonumber(a)
  if not ni or not na then return false end
  return math.min(ni, na) > tonumber(now)
end
local function index_add(k, member, score, now, gt)
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
  if gt then
    redis.call('ZADD', k, 'GT', score, member)
  else
    redis.call('ZADD', k, score, member)
  end
  local top = redis.call('ZRANGE', k, -1, -1, 'WITHSCORES')
  if top[2] then
    redis.call('PEXPIREAT', k, string.format('%.0f', tonumber(top[2])))
  end
end
local function hash_fields(k, ...)
  if redis.call('TYPE', k)['ok'] ~= 'hash' then return nil end
  return redis.call('HMGET', k, ...)
end
