#!/usr/bin/env bash
# Instructions per request through the session layer (memory store),
# counted by callgrind: repeatable where timings on a shared machine are not.
#
#   bench/layer-ir.sh [REQUESTS]        (default 5000)
#
# Each route (read, write, plain) runs twice, with 0 and with REQUESTS
# requests after the warm-up; the difference divided by REQUESTS is the
# cost of one request, start-up and warm-up cancelling out. The driver is
# cloakroom/benches/layer_ir.rs, which builds on older commits too, so two
# checkouts can be compared in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}
bin=$(cargo bench -p cloakroom --bench layer_ir --no-run 2>&1 |
  sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "$0: could not build the layer_ir bench" >&2; exit 1; }
ir() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 |
    awk '/Collected :/ { print $NF }'
}
for route in read write plain; do
  base=$(ir "$route" 0)
  total=$(ir "$route" "$N")
  echo "$route: $(( (total - base) / N )) Ir/request"
done
