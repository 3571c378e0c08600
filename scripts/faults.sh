#!/usr/bin/env bash
# Fault injection with history checks (issue 14; docs/reliability.md).
#
#   bash scripts/faults.sh              # long form: every store, every fault
#   bash scripts/faults.sh --short      # short form (CI): one or two faults per store
#   bash scripts/faults.sh --short redis sqlite   # only these stores
#
# Stores: sqlite postgres mysql redis cluster tiered memcached.
#
# For each (store, fault) it runs `reliability faults`: two demo instances
# (target/debug/cloakroom) share the store, a load generator writes distinct
# keys with unique values through both, logs out and logs out everywhere,
# and one fault is injected mid-run; afterwards every session of the
# history is read back. Lost and resurrected must be 0, except where a row
# says why the store cannot promise it.
#
# Every server a fault touches is a PRIVATE one this script starts on a
# spare loopback port under $REL_DIR and stops at exit: PostgreSQL (initdb
# + pg_ctl), MariaDB (mariadb-install-db + mariadbd), Redis (append-only
# file, fsync always), a 3-master Redis Cluster without replicas, and
# memcached. The shared servers on 5432/3306/6379/7001-7003/11211 are never
# touched. App faults (kill -9 / SIGSTOP) hit only the demo processes the
# harness started.
#
# Environment: REL_DIR (default target/reliability), CARGO_TARGET_DIR.
# Writes $REL_DIR/faults.md: one Markdown row per run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

mode=long
if [ "${1:-}" = "--short" ]; then mode=short; shift; fi
if [ "${1:-}" = "--long" ]; then shift; fi
stores=("$@")
[ ${#stores[@]} -gt 0 ] || stores=(sqlite postgres mysql redis cluster tiered memcached)

REL_DIR=${REL_DIR:-$root/target/reliability}
REL_DIR=$(mkdir -p "$REL_DIR" && cd "$REL_DIR" && pwd)
run_dir=$(mktemp -d "$REL_DIR/run.XXXXXX")
report=$REL_DIR/faults.md
target=${CARGO_TARGET_DIR:-$root/target}

if [ "$mode" = short ]; then
  load=(--workers 6 --warmup 1 --hold 1 --settle 1)
else
  load=(--workers 16 --warmup 10 --hold 5 --settle 10)
fi

log() { echo "faults: $*"; }
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_up() { local i; for ((i = 0; i < 300; i++)); do up "$1" && return 0; sleep 0.1; done; return 1; }
wait_down() { local i; for ((i = 0; i < 300; i++)); do up "$1" || return 0; sleep 0.1; done; return 1; }
# A free loopback port, different on each call.
next_port=$((20000 + RANDOM % 20000))
spare() {
  while up "$next_port"; do next_port=$((next_port + 1)); done
  echo "$next_port"
  next_port=$((next_port + 1))
}

cleanup() {
  set +e
  for f in "$run_dir"/*.pid; do
    [ -f "$f" ] || continue
    kill -CONT "$(cat "$f")" 2>/dev/null
    kill -9 "$(cat "$f")" 2>/dev/null
  done
  if [ -n "${pg_data:-}" ]; then
    pg_as "$pg_bin/pg_ctl" -D "$pg_data" stop -m immediate >/dev/null 2>&1
    rm -rf "$pg_dir"
  fi
  [ -n "${KEEP_RUN_DIR:-}" ] || rm -rf "$run_dir"
}
trap cleanup EXIT

log "building the demo and the harness (debug)"
cargo build -q -p cloakroom-cli -p cloakroom-reliability
demo=$target/debug/cloakroom
harness=$target/debug/reliability
: >"$report"

failures=0
# run LABEL STORE_URL FAULT [harness options...]
run() {
  local label=$1 url=$2 fault=$3
  shift 3
  if ! "$harness" faults --demo-bin "$demo" --store "$url" --label "$label" \
    --fault "$fault" "${load[@]}" --work-dir "$run_dir" --report "$report" "$@"; then
    failures=$((failures + 1))
  fi
}
# A fault that runs shell commands: run_cmd LABEL URL NAME DOWN UP [opts...]
run_cmd() {
  local label=$1 url=$2 name=$3 down=$4 upcmd=$5
  shift 5
  run "$label" "$url" command --fault-name "$name" --down "$down" --up "$upcmd" "$@"
}

# ---- private Redis (append-only file, fsync always) ----
redis_start() { # PORT NAME [extra args]
  local port=$1 name=$2
  shift 2
  mkdir -p "$run_dir/$name"
  redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$run_dir/$name" \
    --save "" --appendonly yes --appendfsync always \
    --pidfile "$run_dir/$name.pid" --logfile "$run_dir/$name/redis.log" "$@" >/dev/null
  wait_up "$port"
}
# Commands for the harness (they run in `sh -c`).
kill9() { echo "kill -9 \$(cat $run_dir/$1.pid) && sleep 0.2"; }
stop_cmd() { echo "kill -STOP \$(cat $run_dir/$1.pid)"; }
cont_cmd() { echo "kill -CONT \$(cat $run_dir/$1.pid)"; }

# ---- private PostgreSQL ----
pg_as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
pg_start() { # PORT
  pg_port=$1
  # Outside $REL_DIR: the postgres user must reach it.
  pg_dir=$(mktemp -d /tmp/cloakroom-faults-pg.XXXXXX)
  pg_data=$pg_dir/data
  if [ "$(id -u)" = 0 ]; then chown postgres "$pg_dir"; fi
  pg_as "$pg_bin/initdb" -D "$pg_data" --auth=trust -U postgres >/dev/null
  pg_as "$pg_bin/pg_ctl" -D "$pg_data" -l "$pg_dir/log" -w \
    -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=on" start >/dev/null
}
pg_ctl_cmd() { # ARGS: a command line for the harness
  local pre=""
  [ "$(id -u)" = 0 ] && pre="runuser -u postgres -- "
  echo "$pre$pg_bin/pg_ctl -D $pg_data $*"
}
pg_crash() { echo "$(pg_ctl_cmd "stop -m immediate") >/dev/null"; }
pg_restart() { echo "$(pg_ctl_cmd "-l $pg_dir/log -w -o '-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1' start") >/dev/null"; }
# Pauses the postmaster and every process it started (this instance only).
pg_pause() { echo "p=\$(head -n1 $pg_data/postmaster.pid); kill -STOP \$p \$(pgrep -P \$p)"; }
pg_resume() { echo "p=\$(head -n1 $pg_data/postmaster.pid); kill -CONT \$(pgrep -P \$p) \$p"; }

# ---- private MariaDB ----
my_start() { # PORT
  my_port=$1
  my_dir=$run_dir/my
  mkdir -p "$my_dir"
  if [ ! -d "$my_dir/data/mysql" ]; then
    mariadb-install-db --no-defaults --datadir="$my_dir/data" --user="$(id -un)" \
      --auth-root-authentication-method=normal --skip-test-db >"$my_dir/install.log" 2>&1
  fi
  my_cmd="setsid mariadbd --no-defaults --datadir=$my_dir/data --port=$my_port --bind-address=127.0.0.1 --socket=$my_dir/sock --pid-file=$run_dir/my.pid --user=$(id -un) --skip-grant-tables --skip-name-resolve --innodb-flush-log-at-trx-commit=1 --log-error=$my_dir/err.log >/dev/null 2>&1 &"
  sh -c "$my_cmd"
  wait_up "$my_port"
  local i
  for ((i = 0; i < 100; i++)); do
    mariadb --no-defaults -S "$my_dir/sock" -u root -e "CREATE DATABASE IF NOT EXISTS test" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
my_crash() { echo "kill -9 \$(cat $run_dir/my.pid); while (exec 3<>/dev/tcp/127.0.0.1/$my_port) 2>/dev/null; do sleep 0.1; done"; }
my_restart() { echo "$my_cmd"; }

# ---- private Redis Cluster (3 masters, no replicas, no persistence) ----
cluster_start() {
  cl_ports="$(spare) $(spare) $(spare)"
  CLOAKROOM_REDIS_CLUSTER_DIR=$run_dir/cluster CLOAKROOM_REDIS_CLUSTER_PORTS=$cl_ports \
    bash scripts/redis-cluster.sh start >/dev/null
  read -r -a cl <<<"$cl_ports"
  for p in "${cl[@]}"; do cp "$run_dir/cluster/redis-$p.pid" "$run_dir/cluster-$p.pid"; done
}

# The servers a store's runs start. A missing one fails the run under
# CI=true (like the service-backed tests); elsewhere it is skipped, said.
needs() {
  case "$1" in
    sqlite) ;;
    postgres) echo "$pg_bin/initdb $pg_bin/pg_ctl" ;;
    mysql) echo "mariadb-install-db mariadbd mariadb" ;;
    redis) echo "redis-server" ;;
    cluster) echo "redis-server redis-cli" ;;
    tiered) echo "redis-server $pg_bin/initdb $pg_bin/pg_ctl" ;;
    memcached) echo "memcached" ;;
  esac
}
skipped=0
for store in "${stores[@]}"; do
  missing=""
  for cmd in $(needs "$store"); do
    command -v "$cmd" >/dev/null 2>&1 || missing="$missing $cmd"
  done
  if [ -n "$missing" ] || { [ -z "$pg_bin" ] && { [ "$store" = postgres ] || [ "$store" = tiered ]; }; }; then
    echo "CLOAKROOM-SERVICE-SKIPPED: faults for $store: not installed:${missing:- PostgreSQL server binaries}"
    skipped=$((skipped + 1))
    continue
  fi
  case "$store" in
    sqlite)
      url="sqlite:$run_dir/sqlite.db"
      run sqlite "$url" kill-app
      [ "$mode" = long ] && run sqlite "$url" pause-app
      [ "$mode" = long ] && run sqlite "$url" none
      ;;
    postgres)
      p=$(spare)
      pg_start "$p"
      url="postgres://postgres@127.0.0.1:$p/postgres"
      run_cmd postgres "$url" "restart (immediate)" "$(pg_crash)" "$(pg_restart)"
      if [ "$mode" = long ]; then
        run_cmd postgres "$url" "pause (SIGSTOP)" "$(pg_pause)" "$(pg_resume)"
        run postgres "$url" kill-app
      fi
      ;;
    mysql)
      p=$(spare)
      my_start "$p"
      url="mysql://root@127.0.0.1:$p/test"
      run_cmd mysql "$url" "restart (kill -9)" "$(my_crash)" "$(my_restart)"
      if [ "$mode" = long ]; then
        run_cmd mysql "$url" "pause (SIGSTOP)" "$(stop_cmd my)" "$(cont_cmd my)"
        run mysql "$url" kill-app
      fi
      ;;
    redis)
      p=$(spare)
      redis_start "$p" redis
      url="redis://127.0.0.1:$p/"
      restart="redis-server --port $p --bind 127.0.0.1 --daemonize yes --dir $run_dir/redis --save '' --appendonly yes --appendfsync always --pidfile $run_dir/redis.pid --logfile $run_dir/redis/redis.log"
      run_cmd redis "$url" "restart (kill -9, AOF)" "$(kill9 redis)" "$restart"
      run_cmd redis "$url" "pause (SIGSTOP)" "$(stop_cmd redis)" "$(cont_cmd redis)"
      [ "$mode" = long ] && run redis "$url" kill-app
      ;;
    cluster)
      cluster_start
      url="redis+cluster://127.0.0.1:${cl[0]},127.0.0.1:${cl[1]},127.0.0.1:${cl[2]}/"
      restart="CLOAKROOM_REDIS_CLUSTER_DIR=$run_dir/cluster CLOAKROOM_REDIS_CLUSTER_PORTS='${cl[*]}' bash $root/scripts/redis-cluster.sh start >/dev/null && cp $run_dir/cluster/redis-${cl[1]}.pid $run_dir/cluster-${cl[1]}.pid"
      run_cmd redis-cluster "$url" "kill one master (kill -9)" "$(kill9 "cluster-${cl[1]}")" "$restart" \
        --loss-expected "a master without a replica or persistence comes back empty: the sessions in its slots are gone (they read as signed out, never as someone else's)"
      [ "$mode" = long ] && run_cmd redis-cluster "$url" "pause one master (SIGSTOP)" \
        "$(stop_cmd "cluster-${cl[1]}")" "$(cont_cmd "cluster-${cl[1]}")"
      ;;
    tiered)
      rp=$(spare)
      redis_start "$rp" cache
      if [ -z "${pg_port:-}" ]; then pg_start "$(spare)"; fi
      url="tiered:redis://127.0.0.1:$rp/|postgres://postgres@127.0.0.1:$pg_port/postgres"
      run_cmd tiered "$url" "pause the cache (SIGSTOP)" "$(stop_cmd cache)" "$(cont_cmd cache)"
      [ "$mode" = long ] && run_cmd tiered "$url" "restart the durable store" "$(pg_crash)" "$(pg_restart)"
      ;;
    memcached)
      p=$(spare)
      mc="memcached -d -u $(id -un) -l 127.0.0.1 -p $p -U 0 -m 64 -P $run_dir/mc.pid"
      sh -c "$mc"
      wait_up "$p"
      run_cmd memcached "memcache://127.0.0.1:$p" "restart (kill -9)" "$(kill9 mc)" "$mc" \
        --loss-expected "memcached keeps nothing on disk (and may evict): a restart loses every session"
      ;;
    *)
      echo "unknown store $store" >&2
      exit 2
      ;;
  esac
done

if [ "$skipped" -gt 0 ] && [ "${CI:-}" = "true" ]; then
  log "$skipped store(s) skipped under CI" >&2
  failures=$((failures + skipped))
fi
log "rows in $report"
cat "$report"
if [ "$failures" -gt 0 ]; then
  log "$failures run(s) FAILED" >&2
  exit 1
fi
log "every run passed"
