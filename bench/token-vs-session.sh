#!/usr/bin/env bash
# The demo's GET /api/me three ways in one run: a server-side session
# cookie (memory store), a sealed client-side cookie, and a Bearer access
# token (token mode). Loopback only, bounded by DURATION per case.
#
#   bench/token-vs-session.sh [DURATION_SECONDS] [CONNECTIONS]
#
# Prints requests/s per case and the ratios to the session cookie.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
CONNS=${2:-16}
PORT=${PORT:-18291}
command -v wrk >/dev/null || { echo "$0: needs wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release -p cloakroom-cli >/dev/null
BIN=target/release/cloakroom
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cloakroom-tvs.XXXXXX")
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
LUA=$WORK/header.lua
up() { for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && return; sleep 0.1; done; exit 1; }
start() {
  RUST_LOG=warn "$BIN" --addr "127.0.0.1:$PORT" --store memory: --mode "$1" \
    --key-file "$WORK/keys" --signing-key-file "$WORK/signing" >/dev/null 2>&1 &
  PID=$!
  up
  curl -sf -H 'content-type: application/json' -d '{"username":"bench","password":"bench password"}' \
    "http://127.0.0.1:$PORT/api/register" >/dev/null
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }
run() { wrk -t2 -c"$CONNS" -d"${SECS}s" -s "$LUA" "http://127.0.0.1:$PORT/api/me" | awk '/Requests\/sec/ {print $2}'; }
creds='{"username":"bench","password":"bench password"}'
declare -A rps
for mode in server cookie; do
  start "$mode"
  cookie=$(curl -s -D - -o /dev/null -H 'content-type: application/json' -d "$creds" \
    "http://127.0.0.1:$PORT/api/login" | awk 'tolower($1)=="set-cookie:" {sub(/;.*/, "", $2); print $2}' | paste -sd';' -)
  printf 'wrk.headers["Cookie"] = "%s"\n' "$cookie" >"$LUA"
  rps[$mode]=$(run)
  stop
done
start token
access=$(curl -s -H 'content-type: application/json' -d "$creds" "http://127.0.0.1:$PORT/api/token" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$access" >"$LUA"
rps[token]=$(run)
stop
echo "GET /api/me, ${SECS}s, ${CONNS} connections, memory store:"
for m in server cookie token; do
  printf '  %-7s %10s req/s  (%.2fx session cookie)\n' "$m" "${rps[$m]}" "$(python3 -c "print(${rps[$m]}/${rps[server]})")"
done
