#!/usr/bin/env bash
# Instruction counts per request under valgrind --tool=callgrind, for one
# setup and endpoint of bench-server (no PMU needed; slow, so low load).
#
#   bench/callgrind.sh cloakroom-memory read [REQUESTS_SECONDS]
#
# BENCH_ARGS adds bench-server options (e.g. "--redis-url redis://127.0.0.1:6379").
# Prints Ir per request and writes the profile to
# bench/results/callgrind.SETUP.ENDPOINT.out (open it with callgrind_annotate
# or kcachegrind). Counters are zeroed after login and warm-up, so start-up
# is excluded.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SETUP=${1:?setup}; EP=${2:?endpoint}; SECS=${3:-10}
PORT=${PORT:-18191}
OUT=$HERE/results/callgrind.$SETUP.$EP.out
mkdir -p "$HERE/results"
exec 9>"$HERE/results/.lock"   # shared with run.sh: one measurement at a time
flock -w 1800 9 || { echo "$0: benchmark lock busy" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cloakroom-cg.XXXXXX")
valgrind --tool=callgrind --callgrind-out-file="$OUT" \
  "$HERE/target/release/bench-server" --setup "$SETUP" --port "$PORT" ${BENCH_ARGS:-} 2>"$WORK/vg.log" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
curl -s -D "$WORK/h" -o /dev/null -X POST "http://127.0.0.1:$PORT/login"
{ grep -i '^set-cookie:' "$WORK/h" || true; } | sed 's/^[^:]*: *//; s/;.*//' | tr -d '\r' | paste -sd';' - | sed 's/;/; /g' >"$WORK/cookies"
method=GET; [[ $EP == write ]] && method=POST
export BENCH_METHOD=$method BENCH_COOKIES=$WORK/cookies
wrk -t1 -c4 -d3s -s "$HERE/lua/request.lua" "http://127.0.0.1:$PORT/$EP" >/dev/null
callgrind_control -z "$PID" >/dev/null
out=$(wrk -t1 -c4 -d"${SECS}s" -s "$HERE/lua/request.lua" "http://127.0.0.1:$PORT/$EP")
callgrind_control -d "$PID" >/dev/null
sleep 1
reqs=$(awk '/requests in/ {print $1}' <<<"$out")
# The dump after zeroing is the newest file callgrind wrote ($OUT.N).
dump=$(ls -t "$OUT"* | head -1)
ir=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(/,/,"",$1); print $1; exit}')
echo "$SETUP /$EP: $reqs requests, $ir Ir, $(( ir / reqs )) Ir/request; profile: $dump"
