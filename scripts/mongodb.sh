#!/usr/bin/env bash
# Makes sure a MongoDB wire-protocol server answers on 127.0.0.1:27017 for
# the MongoDB store's tests (feature `mongodb`). The server is SecantusDB
# (PyPI `secantusdb`, a MongoDB-compatible server on WiredTiger; not
# MongoDB Inc.'s server), installed into the shared Python environment of
# scripts/python-venv.sh and run in memory (`--storage-path :memory:`).
# Idempotent: a server already answering on the port is left alone.
#
#   bash scripts/mongodb.sh          # = start
#   bash scripts/mongodb.sh status   # exit 0 if the port answers a ping
#
# Tests find it through CLOAKROOM_TEST_MONGODB_URL (default
# mongodb://127.0.0.1:27017/cloakroom_test). CLOAKROOM_MONGODB_PORT picks
# another port.
set -uo pipefail
. "$(dirname "$0")/python-venv.sh"

HOST=127.0.0.1
PORT=${CLOAKROOM_MONGODB_PORT:-27017}
WAIT_SECONDS=60

log() { echo "mongodb: $*"; }

# A `ping` through pymongo (installed with secantusdb), or through the
# system's python if the environment is not there yet.
answers() {
  local py=python3
  [ -x "$VENV/bin/python" ] && py="$VENV/bin/python"
  "$py" - "$HOST" "$PORT" >/dev/null 2>&1 <<'PY'
import sys
import pymongo
c = pymongo.MongoClient(host=sys.argv[1], port=int(sys.argv[2]), serverSelectionTimeoutMS=1000, connectTimeoutMS=1000)
c.admin.command("ping")
PY
}

start() {
  if answers; then
    log "already answering on $HOST:$PORT"
    return 0
  fi
  ensure_python_package secantusdb "$SECANTUSDB_VERSION" || {
    log "could not install secantusdb $SECANTUSDB_VERSION" >&2
    return 1
  }
  log "starting SecantusDB $SECANTUSDB_VERSION on $HOST:$PORT (in memory)"
  start_daemon secantusd "$CLOAKROOM_SERVICES_DIR/secantusd.log" \
    "$VENV/bin/secantusd-py" --host "$HOST" --port "$PORT" --storage-path :memory: --log-level WARNING
  local i
  for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
    if answers; then
      log "answering on $HOST:$PORT"
      return 0
    fi
    sleep 0.5
  done
  log "nothing answers on $HOST:$PORT after ${WAIT_SECONDS}s; see $CLOAKROOM_SERVICES_DIR/secantusd.log" >&2
  return 1
}

case "${1:-start}" in
  start) start ;;
  status)
    if answers; then log "answering on $HOST:$PORT"; else log "not answering on $HOST:$PORT"; exit 1; fi
    ;;
  *)
    echo "usage: $0 [start|status]" >&2
    exit 2
    ;;
esac
