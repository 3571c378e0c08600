#!/usr/bin/env bash
# Sourced by scripts/mongodb.sh and scripts/dynamodb.sh: the one virtual
# environment that holds the Python test servers (SecantusDB, moto).
#
# It lives outside the clone, so that every clone and CI run on a machine
# shares one install: CLOAKROOM_SERVICES_DIR, default /var/lib/cloakroom-services
# when that is writable, else .services/ in the clone (ignored by git).
# Idempotent: creates the environment if it is missing and installs the
# pinned packages only when they are not there at the pinned version.

here_venv="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -z "${CLOAKROOM_SERVICES_DIR:-}" ]; then
  if mkdir -p /var/lib/cloakroom-services 2>/dev/null && [ -w /var/lib/cloakroom-services ]; then
    CLOAKROOM_SERVICES_DIR=/var/lib/cloakroom-services
  else
    CLOAKROOM_SERVICES_DIR="$here_venv/../.services"
  fi
fi
VENV="$CLOAKROOM_SERVICES_DIR/venv"
# Pinned: the versions the test suite was proved against.
SECANTUSDB_VERSION=0.7.0b3
MOTO_VERSION=5.2.5

# ensure_python_package PIP_NAME VERSION [EXTRA_SPEC]: installs PIP_NAME==VERSION
# (as EXTRA_SPEC==VERSION, e.g. "moto[server]") into the environment unless
# it is already there.
ensure_python_package() {
  local name=$1 version=$2 spec=${3:-$1}
  mkdir -p "$CLOAKROOM_SERVICES_DIR" || return 1
  if [ ! -x "$VENV/bin/python" ]; then
    echo "python services: creating $VENV"
    python3 -m venv "$VENV" || return 1
  fi
  if [ "$("$VENV/bin/python" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')" = "$version" ]; then
    return 0
  fi
  echo "python services: installing $spec==$version"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$spec==$version"
}

# start_daemon NAME LOGFILE CMD...: runs CMD detached from this shell (its
# own session, output to LOGFILE), recording its pid in NAME.pid.
start_daemon() {
  local name=$1 log=$2
  shift 2
  mkdir -p "$CLOAKROOM_SERVICES_DIR"
  setsid nohup "$@" >"$log" 2>&1 </dev/null &
  echo $! >"$CLOAKROOM_SERVICES_DIR/$name.pid"
}
