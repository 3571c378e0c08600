#!/usr/bin/env bash
# Makes sure a memcached answers on 127.0.0.1:11211 for the memcached store's
# tests (feature `memcached`). Idempotent: installs memcached from the
# distribution if it is missing (Debian/Ubuntu, as root), starts a daemon if
# nothing answers on the port, waits until it answers, exits 0.
#
#   bash scripts/memcached.sh          # = start
#   bash scripts/memcached.sh status   # exit 0 if the port answers
#
# Tests find the server through CLOAKROOM_TEST_MEMCACHED_URL (default
# memcache://127.0.0.1:11211).
#
# Environment:
#   CLOAKROOM_MEMCACHED_PORT     port (default 11211)
#   CLOAKROOM_MEMCACHED_MEMORY   item memory in MiB (default 64)
#
# Only the loopback address is used. A memcached already answering on the
# port (ours from an earlier run, or a system service) is left alone.
set -uo pipefail

HOST=127.0.0.1
PORT=${CLOAKROOM_MEMCACHED_PORT:-11211}
MEMORY=${CLOAKROOM_MEMCACHED_MEMORY:-64}
WAIT_SECONDS=30

log() { echo "memcached: $*"; }

# True when something on HOST:PORT answers the memcached `version` command.
answers() {
  local reply
  reply=$(
    exec 2>/dev/null
    exec 3<>"/dev/tcp/$HOST/$PORT" || exit 1
    printf 'version\r\n' >&3
    IFS= read -r -t 2 line <&3 && printf '%s' "$line"
  ) || return 1
  [[ $reply == VERSION* ]]
}

wait_answers() {
  local i
  for ((i = 0; i < $1 * 4; i++)); do
    answers && return 0
    sleep 0.25
  done
  return 1
}

ensure_installed() {
  command -v memcached >/dev/null && return 0
  if command -v apt-get >/dev/null && [ "$(id -u)" = "0" ]; then
    log "installing memcached"
    apt-get update -q >/dev/null &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends memcached >/dev/null
  fi
  command -v memcached >/dev/null && return 0
  log "memcached not found and cannot be installed here; install memcached 1.5 or newer" >&2
  return 1
}

start() {
  if answers; then
    log "already answering on $HOST:$PORT"
    return 0
  fi
  ensure_installed || return 1
  local user=root
  if [ "$(id -u)" != "0" ]; then
    user=$(id -un)
  elif id memcache >/dev/null 2>&1; then
    user=memcache
  fi
  log "starting on $HOST:$PORT (${MEMORY} MiB, user $user)"
  # The Debian package may start a system service on install; if it already
  # took the port, the daemon below fails to bind and the wait finds it.
  memcached -d -u "$user" -l "$HOST" -p "$PORT" -U 0 -m "$MEMORY" ||
    log "memcached -d failed; waiting in case another instance is starting" >&2
  if wait_answers "$WAIT_SECONDS"; then
    log "answering on $HOST:$PORT"
    return 0
  fi
  log "nothing answers on $HOST:$PORT after ${WAIT_SECONDS}s" >&2
  return 1
}

case "${1:-start}" in
  start) start ;;
  status)
    if answers; then
      log "answering on $HOST:$PORT"
    else
      log "not answering on $HOST:$PORT"
      exit 1
    fi
    ;;
  *)
    echo "usage: $0 [start|status]" >&2
    exit 2
    ;;
esac
