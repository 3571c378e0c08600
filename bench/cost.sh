#!/usr/bin/env bash
# Server-side cost per request: CPU time (and, where the CPU exposes
# hardware counters, instructions) the server process spends per request
# (perf stat on the server's PID while wrk runs). Less sensitive to a busy
# machine than req/s, which depends on how much of the two cores the server
# gets. On VMs without a PMU the instructions column reads n/a; use
# valgrind --tool=callgrind for instruction counts there (see README.md).
#
#   bench/cost.sh [SETUP ...]          # default: a cloakroom/peer selection
#   DURATION=5s ENDPOINTS="read plain" bench/cost.sh cloakroom-memory
#
# Needs perf (linux-perf) and the binaries run.sh builds (it does not build).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
DURATION=${DURATION:-5s}
ENDPOINTS=${ENDPOINTS:-"read write plain"}
PORT=${PORT:-18190}
BENCH_BIN=$HERE/target/release/bench-server
DEMO_BIN=$ROOT/target/release/cloakroom
command -v perf >/dev/null || { echo "cost.sh: perf is required" >&2; exit 1; }
(($# > 0)) && SETUPS=("$@") || SETUPS=(axum-baseline cloakroom-memory cloakroom-sqlite
  cloakroom-cookie tower-sessions-memory actix-cookie demo-server-memory demo-cookie)

mkdir -p "$HERE/results"
exec 9>"$HERE/results/.lock"   # shared with run.sh: one measurement at a time
flock -w 1800 9 || { echo "$0: benchmark lock busy" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cloakroom-cost.XXXXXX")
PID=""
cleanup() { [[ -n $PID ]] && { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }; rm -rf "$WORK"; }
trap cleanup EXIT

cookie_from() { { grep -i '^set-cookie:' "$1" || true; } | sed 's/^[^:]*: *//; s/;.*//' | tr -d '\r' | paste -sd';' - | sed 's/;/; /g'; }
DEMO_USER='{"username":"bench","password":"bench-password-1"}'

printf '| setup | endpoint | req/s | server CPU µs/req | instructions/req |\n|---|---|---|---|---|\n'
for s in "${SETUPS[@]}"; do
  case $s in
    demo-server-memory) RUST_LOG=warn "$DEMO_BIN" --store memory: --addr "127.0.0.1:$PORT" >/dev/null 2>&1 & ;;
    demo-cookie) RUST_LOG=warn "$DEMO_BIN" --store memory: --mode cookie --keys "$("$DEMO_BIN" keygen)" --addr "127.0.0.1:$PORT" >/dev/null 2>&1 & ;;
    express-session | cookie-session) node "$HERE/node/server.js" --setup "$s" --port "$PORT" >/dev/null 2>&1 & ;;
    *) "$BENCH_BIN" --setup "$s" --port "$PORT" >/dev/null 2>&1 & ;;
  esac
  PID=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
  if [[ $s == demo-* ]]; then
    curl -s -o /dev/null -H 'Content-Type: application/json' -d "$DEMO_USER" "http://127.0.0.1:$PORT/api/register"
    curl -s -D "$WORK/h" -o /dev/null -H 'Content-Type: application/json' -d "$DEMO_USER" "http://127.0.0.1:$PORT/api/login"
  else
    curl -s -D "$WORK/h" -o /dev/null -X POST "http://127.0.0.1:$PORT/login"
  fi
  cookie_from "$WORK/h" >"$WORK/cookies"
  for ep in $ENDPOINTS; do
    path=/$ep method=GET body="" ct=""
    [[ $ep == write ]] && method=POST
    if [[ $s == demo-* ]]; then
      case $ep in read) path=/api/data ;; write) path=/api/data/n method=PUT body=1 ct=application/json ;; *) continue ;; esac
    fi
    export BENCH_METHOD=$method BENCH_BODY=$body BENCH_CT=$ct BENCH_COOKIES=$WORK/cookies
    url="http://127.0.0.1:$PORT$path"
    timeout 60 wrk -t2 -c64 -d2s -s "$HERE/lua/request.lua" "$url" >/dev/null 2>&1 || true
    # perf counts while its workload (a sleep) lives; killing the sleep
    # ends the count cleanly (background jobs ignore SIGINT, so perf would).
    perf stat -x, -e task-clock,instructions -p "$PID" -o "$WORK/stat" -- sleep 600 &
    spid=$!
    sleep 0.2
    out=$(timeout 120 wrk -t2 -c64 -d"$DURATION" -s "$HERE/lua/request.lua" "$url" 2>&1 || true)
    kill $(pgrep -P "$spid") 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
    clock=$(awk -F, '$3 ~ /task-clock/ {print $1}' "$WORK/stat")   # ms
    instr=$(awk -F, '$3 ~ /instructions/ {print $1}' "$WORK/stat")
    python3 - "$s" "$ep" "$rps" "$reqs" "$clock" "$instr" <<'EOF'
import sys
s, ep, rps, reqs, clock, instr = sys.argv[1:]
reqs = float(reqs or 0)
def per(x, f=1.0):
    try:
        return f"{float(x) * f / reqs:,.1f}" if reqs else "–"
    except ValueError:
        return "n/a"
print(f"| {s} | /{ep} | {int(rps or 0):,} | {per(clock, 1000.0)} | {per(instr)} |")
EOF
  done
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
done
