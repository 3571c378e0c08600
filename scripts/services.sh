#!/usr/bin/env bash
# Starts the local services the tests may need, if they are not running.
# Idempotent: safe to run any number of times. Only loopback addresses.
set -uo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! up 6379 && command -v redis-server >/dev/null; then
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
if ! up 5432 && command -v pg_ctlcluster >/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! up 3306 && [ -x /usr/sbin/mariadbd ]; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
for port in 6379 5432 3306; do
  for _ in $(seq 1 30); do up "$port" && break; sleep 1; done
  if up "$port"; then echo "service on 127.0.0.1:$port is up"; else echo "service on 127.0.0.1:$port is not running"; fi
done
here="$(cd "$(dirname "$0")" && pwd)"
# Redis Cluster (3 masters on 7001-7003) and memcached (11211) for their stores' tests.
bash "$here/redis-cluster.sh" start || echo "redis cluster did not start"
if [ -f "$here/memcached.sh" ]; then bash "$here/memcached.sh" || echo "memcached did not start"; fi
# SecantusDB (MongoDB wire protocol, 27017) and moto (DynamoDB API, 8000),
# from PyPI into one shared virtual environment (scripts/python-venv.sh).
bash "$here/mongodb.sh" || echo "mongodb (SecantusDB) did not start"
bash "$here/dynamodb.sh" || echo "dynamodb (moto) did not start"
# Debian's chromium and playwright-core for the demo page's browser test
# (cloakroom-cli/tests/browser.rs).
bash "$here/browser.sh" || echo "browser tests could not be installed"
# The networked stores' tests refuse to be skipped under CI, so a service
# that failed to start fails the run there.
exit 0
