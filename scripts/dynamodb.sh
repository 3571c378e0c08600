#!/usr/bin/env bash
# Makes sure a DynamoDB-compatible server answers on 127.0.0.1:8000 for the
# DynamoDB store's tests (feature `dynamodb`). The server is moto in server
# mode (PyPI `moto[server]`, an AWS emulator; not AWS's DynamoDB),
# installed into the shared Python environment of scripts/python-venv.sh.
# Idempotent: a server already answering on the port is left alone.
#
#   bash scripts/dynamodb.sh          # = start
#   bash scripts/dynamodb.sh status   # exit 0 if the port answers
#
# Tests find it through CLOAKROOM_TEST_DYNAMODB_URL (default
# dynamodb+http://127.0.0.1:8000/cloakroom_test). CLOAKROOM_DYNAMODB_PORT
# picks another port.
set -uo pipefail
. "$(dirname "$0")/python-venv.sh"

HOST=127.0.0.1
PORT=${CLOAKROOM_DYNAMODB_PORT:-8000}
WAIT_SECONDS=60

log() { echo "dynamodb: $*"; }

# A DynamoDB ListTables call answered with JSON naming TableNames.
answers() {
  python3 - "$HOST" "$PORT" >/dev/null 2>&1 <<'PY'
import sys, urllib.request
req = urllib.request.Request(
    f"http://{sys.argv[1]}:{sys.argv[2]}/",
    data=b"{}",
    headers={
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "DynamoDB_20120810.ListTables",
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
    },
)
with urllib.request.urlopen(req, timeout=2) as r:
    assert b"TableNames" in r.read()
PY
}

start() {
  if answers; then
    log "already answering on $HOST:$PORT"
    return 0
  fi
  ensure_python_package moto "$MOTO_VERSION" "moto[server]" || {
    log "could not install moto[server] $MOTO_VERSION" >&2
    return 1
  }
  log "starting moto $MOTO_VERSION on $HOST:$PORT"
  start_daemon moto "$CLOAKROOM_SERVICES_DIR/moto.log" \
    "$VENV/bin/moto_server" -H "$HOST" -p "$PORT"
  local i
  for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
    if answers; then
      log "answering on $HOST:$PORT"
      return 0
    fi
    sleep 0.5
  done
  log "nothing answers on $HOST:$PORT after ${WAIT_SECONDS}s; see $CLOAKROOM_SERVICES_DIR/moto.log" >&2
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
