-- The login throttle's one script: check, fail or reset the counters in
-- KEYS (all in one hash slot), timed by the server's clock.
--
-- ARGV[1]: the operation: "check", "fail" or "reset".
-- Then, per key i (1-based), four numbers: ARGV[2 + 4*(i-1) + 0..3] =
--   free, base, cap, window (milliseconds; see policy.rs `Rule`).
-- Each key is a hash {n = failures, start = window start, last = latest
-- failure} (Unix milliseconds) that expires at start + window.
--
-- Returns, for "check", the longest wait in milliseconds and the 1-based
-- index of the key imposing it (0 0: admitted); otherwise 0 0.
--
-- A transcription of Rule::record and Rule::wait in policy.rs: change both
-- together (the property test in tests/throttle.rs compares them).

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op = ARGV[1]
local worst, worst_key = 0, 0

for i, key in ipairs(KEYS) do
  local at = 2 + 4 * (i - 1)
  local free = tonumber(ARGV[at])
  local base = tonumber(ARGV[at + 1])
  local cap = tonumber(ARGV[at + 2])
  local window = tonumber(ARGV[at + 3])
  if op == 'reset' then
    redis.call('DEL', key)
  else
    local v = redis.call('HMGET', key, 'n', 'start', 'last')
    local n, start, last = tonumber(v[1]), tonumber(v[2]), tonumber(v[3])
    -- Missing, unreadable or past its window: a fresh counter.
    local live = n ~= nil and start ~= nil and last ~= nil and now < start + window
    if op == 'fail' then
      if live then
        n = math.min(n + 1, 4294967295)
      else
        n, start = 1, now
      end
      redis.call('HSET', key, 'n', n, 'start', start, 'last', now)
      redis.call('PEXPIREAT', key, start + window)
    elseif live and n >= free then
      local delay = math.min(base * 2 ^ math.min(n - free, 40), cap)
      local wait = math.min(last + delay, start + window) - now
      if wait > worst then
        worst, worst_key = wait, i
      end
    end
  end
end

return {worst, worst_key}
