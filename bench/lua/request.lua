-- wrk script shared by every setup (see ../run.sh).
--   BENCH_METHOD   GET (default), POST or PUT
--   BENCH_BODY     request body (optional)
--   BENCH_CT       Content-Type (optional)
--   BENCH_COOKIES  file with one Cookie header value per line; with more
--                  than one line, requests cycle through them (several
--                  sessions instead of one). With one line it is sent on
--                  every request without a per-request Lua call.
wrk.method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY")
if body and body ~= "" then wrk.body = body end
local ct = os.getenv("BENCH_CT")
if ct and ct ~= "" then wrk.headers["Content-Type"] = ct end

local cookies = {}
local file = os.getenv("BENCH_COOKIES")
if file and file ~= "" then
  for line in io.lines(file) do
    if line ~= "" then cookies[#cookies + 1] = line end
  end
end
if #cookies == 1 then
  wrk.headers["Cookie"] = cookies[1]
elseif #cookies > 1 then
  local i = 0
  request = function()
    i = i % #cookies + 1
    wrk.headers["Cookie"] = cookies[i]
    return wrk.format()
  end
  -- Start each wrk thread at a different session.
  init = function(args)
    i = math.random(#cookies) - 1
  end
end
