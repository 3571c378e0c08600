#!/usr/bin/env bash
# Load benchmark of cloakroom against its peers. See README.md.
#
#   bench/run.sh                                   # every setup
#   bench/run.sh cloakroom-memory axum-baseline    # a subset
#   DURATION=5s bench/run.sh                       # shorter runs
#
# Environment (defaults in brackets):
#   DURATION [10s]   measured wrk run per endpoint
#   WARMUP   [3s]    wrk warm-up per endpoint, discarded (0 to skip)
#   THREADS  [2]     wrk threads          CONNS [64]  wrk connections
#   ROUNDS   [1]     rounds over all setups, alternating their order; the
#                    report keeps each figure's best round (the machine's
#                    speed drifts over minutes: rounds spread that drift)
#   SESSIONS [1]     sessions the load is spread over (1 = one cookie, as
#                    in PERFORMANCE.md; 64 = the "over 64 sessions" figure)
#   ENDPOINTS ["read write plain"]
#   BASE_PORT [18100]  servers listen on 127.0.0.1:BASE_PORT+i
#   REDIS_PORT [16390] private redis-server for the redis peers
#   PG_URL [postgres://postgres@127.0.0.1:5432/test]  PostgreSQL for the
#                    postgres setups (skipped when psql cannot reach it)
#   SKIP_BUILD [0]   1 = use the binaries already built
#   MAX_LOAD [1.5]   wait (up to LOAD_WAIT seconds [600]) for the 1-minute
#                    load average to drop below this before starting
#   RESULTS [bench/results/latest.md]
#
# All traffic goes to 127.0.0.1 only.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
SESSIONS=${SESSIONS:-1}
ROUNDS=${ROUNDS:-1}
ENDPOINTS=${ENDPOINTS:-"read write plain"}
BASE_PORT=${BASE_PORT:-18100}
REDIS_PORT=${REDIS_PORT:-16390}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
SKIP_BUILD=${SKIP_BUILD:-0}
MAX_LOAD=${MAX_LOAD:-1.5}
LOAD_WAIT=${LOAD_WAIT:-600}
RESULTS=${RESULTS:-$HERE/results/latest.md}

RUST_SETUPS=(axum-baseline cloakroom-memory cloakroom-sqlite cloakroom-cookie
  cloakroom-redis cloakroom-postgres tower-sessions-memory tower-sessions-redis
  actix-cookie actix-redis)
NODE_SETUPS=(express-session cookie-session)
DEMO_SETUPS=(demo-server-memory demo-cookie)
ALL_SETUPS=("${RUST_SETUPS[@]}" "${NODE_SETUPS[@]}" "${DEMO_SETUPS[@]}")

die() { echo "run.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
is_in() { local x=$1; shift; local y; for y in "$@"; do [[ $x == "$y" ]] && return 0; done; return 1; }

HAVE_REDIS=0
command -v redis-server >/dev/null && command -v redis-cli >/dev/null && HAVE_REDIS=1
HAVE_PG=0
command -v psql >/dev/null && psql "$PG_URL" -qtAc 'SELECT 1' >/dev/null 2>&1 && HAVE_PG=1

# ---- which setups --------------------------------------------------------
if (($# > 0)); then
  SETUPS=("$@")
  for s in "${SETUPS[@]}"; do
    is_in "$s" "${ALL_SETUPS[@]}" || die "unknown setup '$s' (known: ${ALL_SETUPS[*]})"
  done
else
  SETUPS=("${ALL_SETUPS[@]}")
fi
WANT_REDIS=0
for s in "${SETUPS[@]}"; do [[ $s == *-redis ]] && WANT_REDIS=1; done
if ((WANT_REDIS && !HAVE_REDIS)); then
  log "redis-server not installed: skipping the redis peers"
  filtered=(); for s in "${SETUPS[@]}"; do [[ $s == *-redis ]] || filtered+=("$s"); done
  SETUPS=("${filtered[@]}"); WANT_REDIS=0
fi
if ((!HAVE_PG)); then
  filtered=()
  for s in "${SETUPS[@]}"; do
    if [[ $s == *-postgres ]]; then log "PostgreSQL unreachable at $PG_URL: skipping $s"; else filtered+=("$s"); fi
  done
  SETUPS=("${filtered[@]}")
fi
NEED_RUST=0 NEED_NODE=0 NEED_DEMO=0
for s in "${SETUPS[@]}"; do
  is_in "$s" "${RUST_SETUPS[@]}" && NEED_RUST=1
  is_in "$s" "${NODE_SETUPS[@]}" && NEED_NODE=1
  is_in "$s" "${DEMO_SETUPS[@]}" && NEED_DEMO=1
done
true

# ---- tools -----------------------------------------------------------------
if ! command -v wrk >/dev/null; then
  log "installing wrk"
  if [[ $(id -u) == 0 ]]; then apt-get update && apt-get install -y wrk
  else sudo apt-get update && sudo apt-get install -y wrk; fi
fi
for t in curl python3; do command -v $t >/dev/null || die "$t is required"; done

# ---- build -----------------------------------------------------------------
BENCH_BIN=$HERE/target/release/bench-server
DEMO_BIN=$ROOT/target/release/cloakroom
if [[ $SKIP_BUILD != 1 ]]; then
  if ((NEED_RUST)); then
    log "building bench servers (release)"
    feats=""; ((HAVE_REDIS)) && feats="redis-peers"; ((HAVE_PG)) && feats="$feats pg-peers"
    features=(); [[ -n $feats ]] && features=(--features "${feats# }")
    cargo build --release --manifest-path "$HERE/Cargo.toml" "${features[@]}"
  fi
  if ((NEED_DEMO)); then
    log "building the demo (cargo build --release -p cloakroom-cli)"
    (cd "$ROOT" && cargo build --release -p cloakroom-cli)
  fi
  if ((NEED_NODE)) && [[ ! -d $HERE/node/node_modules ]]; then
    log "installing node peers (npm ci)"
    (cd "$HERE/node" && npm ci --no-audit --no-fund)
  fi
fi
# The library state the binaries were built from (commits keep landing).
REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- cloakroom 2>/dev/null || echo ' + uncommitted changes in cloakroom/')"
((NEED_RUST)) && { [[ -x $BENCH_BIN ]] || die "$BENCH_BIN missing (build failed?)"; }
((NEED_DEMO)) && { [[ -x $DEMO_BIN ]] || die "$DEMO_BIN missing (build failed?)"; }
((NEED_NODE)) && { [[ -d $HERE/node/node_modules ]] || die "node/node_modules missing: npm ci in bench/node"; }

# ---- process bookkeeping ---------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cloakroom-bench.XXXXXX")
SERVER_PID=""
REDIS_PID=""
stop_pid() {
  local pid=$1 i
  [[ -n $pid ]] || return 0
  kill "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop_pid "$SERVER_PID"; SERVER_PID=""
  stop_pid "$REDIS_PID"; REDIS_PID=""
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # port, seconds
  local i
  for i in $(seq $(($2 * 10))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

if ((WANT_REDIS)); then
  log "starting a private redis-server on 127.0.0.1:$REDIS_PORT"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$WORK" --logfile "$WORK/redis.log" &
  REDIS_PID=$!
  for i in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$REDIS_PORT" ping >/dev/null || die "redis-server did not start"
fi

# ---- one measurement at a time ---------------------------------------------------
# Two benchmark runs on two cores measure each other; run.sh, cost.sh and
# callgrind.sh queue on one lock (30 min at most).
mkdir -p "$HERE/results"
exec 9>"$HERE/results/.lock"
if ! flock -n 9; then
  log "another benchmark (run.sh/cost.sh/callgrind.sh) is running; waiting for it"
  flock -w 1800 9 || die "still locked after 30 min"
fi

# ---- load --------------------------------------------------------------------
load1() { cut -d' ' -f1 /proc/loadavg; }
waited=0
while python3 -c "import sys; sys.exit(0 if float('$(load1)') > float('$MAX_LOAD') else 1)" \
  && ((waited < LOAD_WAIT)); do
  log "load average $(load1) > $MAX_LOAD (other builds?); waiting 30 s"
  sleep 30; waited=$((waited + 30))
done
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- per setup -----------------------------------------------------------------
# Cookie header value from a response's Set-Cookie headers (all of them).
cookie_from() { { grep -i '^set-cookie:' "$1" || true; } | sed 's/^[^:]*: *//; s/;.*//' | tr -d '\r' | paste -sd';' - | sed 's/;/; /g'; }

login_plain() { # port -> cookie
  curl -sS -m 10 -D "$WORK/h" -o /dev/null -X POST "http://127.0.0.1:$1/login"
  cookie_from "$WORK/h"
}
DEMO_USER='{"username":"bench","password":"bench-password-1"}'
register_demo() {
  curl -sS -m 20 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    -d "$DEMO_USER" "http://127.0.0.1:$1/api/register" | grep -q 201 || die "demo register failed"
}
login_demo() {
  curl -sS -m 20 -D "$WORK/h" -o /dev/null -H 'Content-Type: application/json' \
    -d "$DEMO_USER" "http://127.0.0.1:$1/api/login"
  cookie_from "$WORK/h"
}

start_server() { # setup port; run in the background: exec, so $! is the server
  local s=$1 port=$2
  case $s in
    express-session | cookie-session)
      NODE_ENV=production exec node "$HERE/node/server.js" --setup "$s" --port "$port" ;;
    demo-server-memory)
      RUST_LOG=warn exec "$DEMO_BIN" --store memory: --addr "127.0.0.1:$port" ;;
    demo-cookie)
      RUST_LOG=warn exec "$DEMO_BIN" --store memory: --mode cookie --keys "$("$DEMO_BIN" keygen)" \
        --addr "127.0.0.1:$port" ;;
    *)
      exec "$BENCH_BIN" --setup "$s" --port "$port" --redis-url "redis://127.0.0.1:$REDIS_PORT" \
        --pg-url "$PG_URL" ;;
  esac
}

# "busy total" jiffies of the whole machine, from /proc/stat.
cpu_busy() { awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8 + $9; total = busy + $5 + $6; print busy, total; exit }' /proc/stat; }
# utime + stime jiffies of the given processes (and their reaped children).
proc_cpu() {
  local pid sum=0 v
  for pid in "$@"; do
    [[ -n $pid && -r /proc/$pid/stat ]] || continue
    v=$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13 + $14 + $15}') || v=0
    sum=$((sum + v))
  done
  echo "$sum"
}
wrk_secs() { local d=$1; case $d in *m) echo $((${d%m} * 60));; *s) echo "${d%s}";; *) echo "$d";; esac; }
TSV=$WORK/results.tsv
: >"$TSV"
wrk_run() { # setup endpoint port -> appends to TSV
  local s=$1 ep=$2 port=$3 path method=GET body="" ct="" out
  if [[ $s == demo-* ]]; then
    case $ep in
      read) path=/api/data ;;
      write) path=/api/data/n method=PUT body=1 ct=application/json ;;
      plain) return 0 ;; # the demo has no session-layer route that ignores the session
    esac
  else
    path=/$ep
    [[ $ep == write ]] && method=POST
  fi
  export BENCH_METHOD=$method BENCH_BODY=$body BENCH_CT=$ct BENCH_COOKIES=$WORK/cookies
  local url="http://127.0.0.1:$port$path" lim
  if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
    lim=$(($(wrk_secs "$WARMUP") + 30))
    timeout "$lim" wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -s "$HERE/lua/request.lua" "$url" >/dev/null 2>&1 || true
  fi
  lim=$(($(wrk_secs "$DURATION") + 30))
  # CPU accounting: everything busy on the machine during the run, minus
  # the server (and our redis), minus wrk = what other processes took.
  local busy0 own0 busy1 own1 wrk_cpu
  busy0=$(cpu_busy); own0=$(proc_cpu "$SERVER_PID" "$REDIS_PID")
  out=$(timeout "$lim" /usr/bin/time -f 'WRKCPU %U %S' wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency \
    -s "$HERE/lua/request.lua" "$url" 2>&1) || true
  busy1=$(cpu_busy); own1=$(proc_cpu "$SERVER_PID" "$REDIS_PID")
  wrk_cpu=$(awk '/^WRKCPU/ {printf "%d", ($2 + $3) * 100}' <<<"$out")
  echo "$out" >"$WORK/wrk-$s-$ep.txt"
  local other
  other=$(awk -v b="${busy1%% *}" -v b0="${busy0%% *}" -v t="${busy1##* }" -v t0="${busy0##* }" \
    -v o="$own1" -v o0="$own0" -v w="${wrk_cpu:-0}" \
    'BEGIN { x = (b - b0) - (o - o0) - w; if (x < 0) x = 0; if (t > t0) printf "%.0f", 100 * x / (t - t0); else print "?" }')
  local rps p99 non2xx errors
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")
  errors=$(awk '/Socket errors:/ {sub(/^ *Socket errors: */, ""); gsub(/ /, ""); print}' <<<"$out")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$ep" "${rps:-0}" "${p99:--}" "${non2xx:-0}" "${errors:-}" "$other" >>"$TSV"
  log "  $s /$ep: ${rps:-?} req/s, p99 ${p99:-?}, other processes ${other}% CPU${non2xx:+, non-2xx $non2xx}${errors:+, socket errors $errors}"
}

n_ep=$(wc -w <<<"$ENDPOINTS")
per=$(( ($(wrk_secs "$WARMUP") + $(wrk_secs "$DURATION")) * n_ep + 5 ))
log "${#SETUPS[@]} setups × $ROUNDS round(s), ~${per}s each, ~$(( per * ${#SETUPS[@]} * ROUNDS / 60 + 1 )) min; load $LOAD_START"
for round in $(seq "$ROUNDS"); do
ORDER=("${SETUPS[@]}")
if ((round % 2 == 0)); then
  ORDER=(); for ((k = ${#SETUPS[@]} - 1; k >= 0; k--)); do ORDER+=("${SETUPS[k]}"); done
fi
((ROUNDS > 1)) && log "round $round of $ROUNDS"
i=0
for s in "${ORDER[@]}"; do
  port=$((BASE_PORT + i)); i=$((i + 1))
  log "$s on 127.0.0.1:$port"
  start_server "$s" "$port" >"$WORK/server-$s.log" 2>&1 &
  SERVER_PID=$!
  if ! wait_port "$port" 20; then
    log "  $s did not start:"; sed 's/^/    /' "$WORK/server-$s.log" >&2
    stop_pid "$SERVER_PID"; SERVER_PID=""
    continue
  fi
  : >"$WORK/cookies"
  if [[ $s == demo-* ]]; then
    register_demo "$port"
    for _ in $(seq "$SESSIONS"); do login_demo "$port" >>"$WORK/cookies"; done
  else
    for _ in $(seq "$SESSIONS"); do login_plain "$port" >>"$WORK/cookies"; done
  fi
  if [[ $s != axum-baseline ]] && ! grep -q . "$WORK/cookies"; then
    log "  $s: /login set no cookie; skipping"; stop_pid "$SERVER_PID"; SERVER_PID=""; continue
  fi
  for ep in $ENDPOINTS; do wrk_run "$s" "$ep" "$port"; done
  stop_pid "$SERVER_PID"; SERVER_PID=""
done
done
# Raw Redis, the reference for the Redis targets: GET and SET with as many
# clients as wrk has connections, against the same private redis-server.
if ((WANT_REDIS)) && command -v redis-benchmark >/dev/null; then
  log "redis-benchmark GET/SET, $CONNS clients"
  rb=$(redis-benchmark -p "$REDIS_PORT" -c "$CONNS" -n 300000 -t get,set -d 200 --csv 2>/dev/null || true)
  for pair in "GET read" "SET write"; do
    set -- $pair
    v=$(awk -F'"' -v op="$1" '$2 == op {print $4}' <<<"$rb")
    p=$(awk -F'"' -v op="$1" '$2 == op {print $14}' <<<"$rb")
    printf 'redis-benchmark\t%s\t%s\t%s\t0\t\t\n' "$2" "${v:-0}" "${p:+${p}ms}" >>"$TSV"
    log "  redis-benchmark $1: ${v:-?} req/s"
  done
  SETUPS+=(redis-benchmark)
fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report --------------------------------------------------------------------
versions() {
  if [[ -f $HERE/Cargo.lock ]]; then
    awk '/^name = / {n=$3} /^version = / {v=$3; gsub(/"/,"",n); gsub(/"/,"",v);
      if (n ~ /^(axum|tokio|hyper|tower-sessions|tower-sessions-core|tower-sessions-memory-store|tower-sessions-redis-store|tower-sessions-sqlx-store|sqlx|fred|actix-web|actix-session|redis|rusqlite)$/) printf "%s %s, ", n, v}' \
      "$HERE/Cargo.lock" | sed 's/, $//'
  fi
  if [[ -f $HERE/node/package-lock.json ]]; then
    printf '; node %s, ' "$(node --version 2>/dev/null)"
    python3 -c "import json,sys; p=json.load(open(sys.argv[1]))['packages']; print(', '.join(n+' '+p['node_modules/'+n]['version'] for n in ['express','express-session','cookie-session'] if 'node_modules/'+n in p))" \
      "$HERE/node/package-lock.json"
  fi
}
mkdir -p "$(dirname "$RESULTS")"
export LOAD_START LOAD_END DURATION WARMUP THREADS CONNS SESSIONS ROUNDS
export REV="$REV (at build time)"
export VERSIONS="$(versions)"
export REDIS_STATUS=$HAVE_REDIS
python3 "$HERE/report.py" "$TSV" "${SETUPS[*]}" | tee "$RESULTS"
log "written to $RESULTS"
