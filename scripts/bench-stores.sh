#!/usr/bin/env bash
# Throughput of the demo app on every store, side by side in one run:
# wrk on GET /api/data (read) and PUT /api/data/n (write) with one signed-in
# session, plus `cloakroom store-bench` latency (p50/p99) per store operation.
# Loopback only; every run bounded. Not part of CI (timings are never tests).
#
#   scripts/bench-stores.sh                  # all stores
#   DURATION=5s scripts/bench-stores.sh memory: sqlite:/tmp/x.db
#   SESSIONS=64 scripts/bench-stores.sh      # spread the load over 64 sessions
#   DEMO_ARGS=--encrypt-store scripts/bench-stores.sh memory:   # EncryptedStore's cost
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-8s}
SESSIONS=${SESSIONS:-1}
PORT=${PORT:-18600}
BIN=target/release/cloakroom
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true' EXIT

stores=("$@")
if [ ${#stores[@]} -eq 0 ]; then
  stores=(
    "memory:"
    "sqlite:$tmp/bench.db"
    "file:$tmp/files"
    "postgres://postgres@127.0.0.1:5432/test"
    "mysql://root@127.0.0.1:3306/test"
    "redis://127.0.0.1:6379/"
    "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003/"
    "memcache://127.0.0.1:11211"
    "mongodb://127.0.0.1:27017/cloakroom_bench"
    "dynamodb+http://127.0.0.1:8000/cloakroom_bench"
    "tiered:redis://127.0.0.1:6379/|postgres://postgres@127.0.0.1:5432/test"
  )
fi
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
[ -x "$BIN" ] || cargo build --release -p cloakroom-cli

# Each wrk connection takes the next cookie from cookies.txt, round robin.
cat > "$tmp/session.lua" <<'LUA'
local cookies = {}
for line in io.lines(os.getenv("COOKIES")) do cookies[#cookies + 1] = line end
local n = 0
function setup(thread) end
function init(args)
  n = math.random(#cookies)
end
function request()
  n = n % #cookies + 1
  local headers = { ["Cookie"] = cookies[n], ["Content-Type"] = "application/json" }
  if os.getenv("WRITE") == "1" then
    return wrk.format("PUT", "/api/data/n", headers, "1")
  end
  return wrk.format("GET", "/api/data", headers)
end
LUA

# Waits (at most 60 s) until a session read answers within a second: a
# slow store may still be draining the previous phase's backlog, which the
# next phase should not be charged for.
settle() {
  for _ in $(seq 1 60); do
    curl -s -o /dev/null -m 1 -H "Cookie: $cookie" "http://127.0.0.1:$PORT/api/data" && return 0
  done
}

rate() { awk '/Requests\/sec/ {printf "%d", $2}'; }
p99() { awk '$1=="99%" {print $2}'; }

echo "Demo throughput, $SESSIONS signed-in session(s), wrk -t2 -c64 -d$DURATION:"
echo
echo "| store | read req/s | read p99 | write req/s | write p99 |"
echo "|---|---|---|---|---|"
for store in "${stores[@]}"; do
  # The demo makes a dynamodb+http:// table ready; store-bench below
  # then finds it. DEMO_ARGS is split on spaces on purpose.
  # shellcheck disable=SC2086
  RUST_LOG=warn CLOAKROOM_KEY_FILE="$tmp/bench.keys" "$BIN" --store "$store" --addr "127.0.0.1:$PORT" ${DEMO_ARGS:-} >"$tmp/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
  user="bench$RANDOM$RANDOM"
  body="{\"username\":\"$user\",\"password\":\"correct horse\"}"
  curl -s -o /dev/null -H 'content-type: application/json' -d "$body" "http://127.0.0.1:$PORT/api/register"
  : > "$tmp/cookies.txt"
  for _ in $(seq 1 "$SESSIONS"); do
    curl -s -D - -o /dev/null -H 'content-type: application/json' -d "$body" \
      "http://127.0.0.1:$PORT/api/login" | awk -F'[ ;]' 'tolower($1)=="set-cookie:" {print $2}' >> "$tmp/cookies.txt"
  done
  cookie=$(head -n1 "$tmp/cookies.txt")
  export COOKIES="$tmp/cookies.txt"
  if [ -z "$cookie" ]; then
    echo "| ${store%%\?*} | not reachable | | | |"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    continue
  fi
  WRITE=0 timeout 60 wrk -t2 -c64 -d2s -s "$tmp/session.lua" "http://127.0.0.1:$PORT" >/dev/null
  settle
  r=$(WRITE=0 timeout 60 wrk -t2 -c64 -d"$DURATION" --latency -s "$tmp/session.lua" "http://127.0.0.1:$PORT")
  settle
  w=$(WRITE=1 timeout 60 wrk -t2 -c64 -d"$DURATION" --latency -s "$tmp/session.lua" "http://127.0.0.1:$PORT")
  echo "| ${store/\/\/postgres@/\/\/…@} | $(echo "$r" | rate) | $(echo "$r" | p99) | $(echo "$w" | rate) | $(echo "$w" | p99) |"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
echo
echo "Store operation latency (cloakroom store-bench, 3000 sessions, 16 workers):"
for store in "${stores[@]}"; do
  RUST_LOG=warn timeout 300 "$BIN" store-bench --store "$store" --sessions 3000 --concurrency 16 || true
  echo
done
