#!/usr/bin/env bash
# Starts (or stops) the local 3-master Redis Cluster used by the Redis store's
# cluster tests: 127.0.0.1 ports 7001-7003, no replicas, no persistence.
#
#   bash scripts/redis-cluster.sh          # = start: idempotent, exits 0 once
#                                          #   every node reports cluster_state:ok
#   bash scripts/redis-cluster.sh stop     # shuts the nodes down (nosave) and
#                                          #   forgets the cluster configuration
#   bash scripts/redis-cluster.sh status   # prints each node's cluster_state
#
# Tests find the cluster through CLOAKROOM_TEST_REDIS_CLUSTER_URLS (default
# redis://127.0.0.1:7001/,redis://127.0.0.1:7002/,redis://127.0.0.1:7003/).
#
# Environment:
#   CLOAKROOM_REDIS_CLUSTER_DIR   working directory (node configs, logs, pid
#                                 files); default /tmp/cloakroom-redis-cluster
#   CLOAKROOM_REDIS_CLUSTER_PORTS space-separated ports; default "7001 7002 7003"
#
# Only loopback addresses are used. Safe to run any number of times: running
# nodes are left alone, a cluster that is already formed is not re-created,
# and nodes restarted after a crash rejoin from their saved cluster config.
set -uo pipefail

DIR=${CLOAKROOM_REDIS_CLUSTER_DIR:-/tmp/cloakroom-redis-cluster}
read -r -a PORTS <<<"${CLOAKROOM_REDIS_CLUSTER_PORTS:-7001 7002 7003}"
HOST=127.0.0.1
WAIT_SECONDS=30

log() { echo "redis-cluster: $*"; }
cli() { local port=$1; shift; redis-cli -h "$HOST" -p "$port" "$@" 2>/dev/null; }
is_up() { [ "$(cli "$1" ping)" = "PONG" ]; }
state_of() { cli "$1" cluster info | tr -d '\r' | sed -n 's/^cluster_state://p'; }
known_nodes() { cli "$1" cluster info | tr -d '\r' | sed -n 's/^cluster_known_nodes://p'; }
slots_assigned() { cli "$1" cluster info | tr -d '\r' | sed -n 's/^cluster_slots_assigned://p'; }

all_ok() {
  local p
  for p in "${PORTS[@]}"; do
    [ "$(state_of "$p")" = "ok" ] || return 1
  done
}

wait_all_ok() {
  local i
  for ((i = 0; i < $1 * 2; i++)); do
    all_ok && return 0
    sleep 0.5
  done
  return 1
}

ensure_installed() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
  if command -v apt-get >/dev/null && [ "$(id -u)" = "0" ]; then
    log "installing redis-server"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null ||
      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null; }
  fi
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
  log "redis-server / redis-cli not found; install Redis 6.2 or newer" >&2
  exit 1
}

start_node() {
  local port=$1
  if is_up "$port"; then
    if [ "$(cli "$port" info cluster | tr -d '\r' | sed -n 's/^cluster_enabled://p')" != "1" ]; then
      log "port $port is taken by a Redis server without cluster mode" >&2
      exit 1
    fi
    return 0
  fi
  redis-server --port "$port" --bind "$HOST" \
    --cluster-enabled yes --cluster-config-file "$DIR/nodes-$port.conf" \
    --daemonize yes --save "" --appendonly no --dir "$DIR" \
    --logfile "$DIR/redis-$port.log" --pidfile "$DIR/redis-$port.pid" >/dev/null ||
    { log "redis-server on port $port failed to start; see $DIR/redis-$port.log" >&2; exit 1; }
  local i
  for ((i = 0; i < 50; i++)); do
    is_up "$port" && return 0
    sleep 0.1
  done
  log "redis-server on port $port did not answer; see $DIR/redis-$port.log" >&2
  exit 1
}

# Whether every node is a fresh, empty, unclustered node.
all_fresh() {
  local p
  for p in "${PORTS[@]}"; do
    [ "$(known_nodes "$p")" = "1" ] && [ "$(slots_assigned "$p")" = "0" ] || return 1
  done
}

create_cluster() {
  local addrs=() p
  for p in "${PORTS[@]}"; do addrs+=("$HOST:$p"); done
  log "creating cluster on ${addrs[*]}"
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$DIR/create.log" 2>&1 ||
    { log "cluster create failed:" >&2; cat "$DIR/create.log" >&2; exit 1; }
}

reset_nodes() {
  local p
  log "cluster is inconsistent; resetting the nodes (their data is discarded)"
  for p in "${PORTS[@]}"; do
    cli "$p" flushall >/dev/null
    cli "$p" cluster reset hard >/dev/null
  done
}

start() {
  ensure_installed
  mkdir -p "$DIR"
  local p
  for p in "${PORTS[@]}"; do start_node "$p"; done
  if all_ok; then
    log "cluster on ports ${PORTS[*]} is up (cluster_state:ok)"
    return 0
  fi
  if ! all_fresh; then
    # Nodes restarted from saved configs gossip their way back to ok.
    if wait_all_ok 10; then
      log "cluster on ports ${PORTS[*]} is up (cluster_state:ok)"
      return 0
    fi
    reset_nodes
  fi
  create_cluster
  if wait_all_ok "$WAIT_SECONDS"; then
    log "cluster on ports ${PORTS[*]} is up (cluster_state:ok)"
    return 0
  fi
  log "cluster did not reach cluster_state:ok within ${WAIT_SECONDS}s" >&2
  exit 1
}

stop() {
  command -v redis-cli >/dev/null || return 0
  local p i
  for p in "${PORTS[@]}"; do
    if is_up "$p"; then
      cli "$p" shutdown nosave >/dev/null
      for ((i = 0; i < 50; i++)); do
        is_up "$p" || break
        sleep 0.1
      done
    fi
    rm -f "$DIR/nodes-$p.conf" "$DIR/redis-$p.pid"
  done
  log "stopped ports ${PORTS[*]}"
}

status() {
  local p rc=0
  for p in "${PORTS[@]}"; do
    if is_up "$p"; then
      echo "$HOST:$p cluster_state:$(state_of "$p")"
      [ "$(state_of "$p")" = "ok" ] || rc=1
    else
      echo "$HOST:$p down"
      rc=1
    fi
  done
  return "$rc"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *)
    echo "usage: $0 [start|stop|status]" >&2
    exit 2
    ;;
esac
