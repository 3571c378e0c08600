#!/usr/bin/env bash
# A second DynamoDB emulator, for telling an emulator's bug from a store's:
# dynalite (npm, on LevelDB in memory) on 127.0.0.1:8001. Not part of CI
# (moto, scripts/dynamodb.sh, is the one the tests run against); run the
# DynamoDB tests against it with
#
#   bash scripts/dynalite.sh
#   CLOAKROOM_TEST_DYNAMODB_URL=dynamodb+http://127.0.0.1:8001/cloakroom_test \
#     cargo test -p cloakroom --all-features --test dynamodb --test encrypted
#
# Idempotent: installs dynalite into the shared services folder (see
# scripts/python-venv.sh) if missing, starts it if nothing listens.
set -uo pipefail
. "$(dirname "$0")/python-venv.sh"

HOST=127.0.0.1
PORT=${CLOAKROOM_DYNALITE_PORT:-8001}
DYNALITE_VERSION=4.0.0
DIR="$CLOAKROOM_SERVICES_DIR/dynalite"

log() { echo "dynalite: $*"; }
up() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

if up; then
  log "already listening on $HOST:$PORT"
  exit 0
fi
if [ ! -x "$DIR/node_modules/.bin/dynalite" ]; then
  command -v npm >/dev/null || { log "npm not found" >&2; exit 1; }
  mkdir -p "$DIR"
  log "installing dynalite $DYNALITE_VERSION"
  (cd "$DIR" && npm install --no-audit --no-fund --silent "dynalite@$DYNALITE_VERSION") || exit 1
fi
start_daemon dynalite "$DIR/dynalite.log" "$DIR/node_modules/.bin/dynalite" --host "$HOST" --port "$PORT"
for _ in $(seq 1 60); do
  if up; then
    log "listening on $HOST:$PORT"
    exit 0
  fi
  sleep 0.5
done
log "nothing listens on $HOST:$PORT; see $DIR/dynalite.log" >&2
exit 1
