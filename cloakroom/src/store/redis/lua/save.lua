local single = ARGV[11] == '1'
local cur = hash_fields(KEYS[1], 'v', 'u', 'i', 'a')
if not cur or not cur[1] or not is_live(cur[3], cur[4], ARGV[6]) then return {'N'} end
if cur[1] ~= ARGV[12] then return {'V'} end
local old = cur[2]
local keeps_user = ARGV[7] == '1' and old == ARGV[8]
local live = tonumber(ARGV[5]) > tonumber(ARGV[6])
if not single and ARGV[7] == '1' and ARGV[13] ~= '1' and live then
  if not keeps_user or tonumber(ARGV[4]) > tonumber(cur[4]) then return {'I'} end
end
if single and old and (not keeps_user or not live) then
  redis.call('ZREM', ARGV[10] .. 'u:' .. old, ARGV[9])
end
if not live then
  redis.call('DEL', KEYS[1])
  return {'K', old}
end
write(KEYS[1], KEYS[2])
return {'K', old}
