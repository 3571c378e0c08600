#!/usr/bin/env bash
# Bad input at scale (issue 14; docs/reliability.md):
#   1. every cargo-fuzz target in fuzz/ for a bounded time each;
#   2. `reliability hostile` against a demo instance: malformed, duplicated,
#      oversized and non-ASCII cookies; oversized, deeply nested and
#      malformed bodies; raw garbage; slow clients. It fails if the demo
#      dies, answers 500, stops serving normal requests during the slow
#      clients, or a session made before the attack loses its data or user.
#
#   bash scripts/bad-input.sh                 # long form: 600 s per target, 20000 rounds
#   bash scripts/bad-input.sh --short         # a few seconds per target, 1000 rounds
#   bash scripts/bad-input.sh --short --no-fuzz   # the hostile client only
#
# cargo-fuzz needs nightly flags; on the stable toolchain RUSTC_BOOTSTRAP=1
# allows them (fuzz/README.md). It is installed if missing.
# Environment: FUZZ_SECONDS overrides the time per target.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

fuzz_seconds=600
rounds=20000
fuzz=yes
for arg in "$@"; do
  case "$arg" in
    --short) fuzz_seconds=5 rounds=1000 ;;
    --long) ;;
    --no-fuzz) fuzz=no ;;
    *) echo "usage: $0 [--short|--long] [--no-fuzz]" >&2; exit 2 ;;
  esac
done
fuzz_seconds=${FUZZ_SECONDS:-$fuzz_seconds}
work=${REL_DIR:-$root/target/reliability}
mkdir -p "$work"
target=${CARGO_TARGET_DIR:-$root/target}

if [ "$fuzz" = yes ]; then
  if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
  fi
  summary=$work/fuzz-summary.md
  echo "| target | runs | seconds | result |" >"$summary"
  echo "|---|---|---|---|" >>"$summary"
  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build -O >/dev/null)
  for t in $(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz list); do
    log=$work/fuzz-$t.log
    echo "bad-input: fuzzing $t for ${fuzz_seconds}s"
    if (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$t" -- -max_total_time="$fuzz_seconds" >"$log" 2>&1); then
      result=ok
    else
      result="FAILED (see $log)"
    fi
    # libFuzzer's last line: "Done 123 runs in 5 second(s)".
    done_line=$(grep -E '^Done [0-9]+ runs in' "$log" | tail -n 1 || true)
    runs=$(echo "$done_line" | awk '{print $2}')
    secs=$(echo "$done_line" | awk '{print $5}')
    echo "| \`$t\` | ${runs:-?} | ${secs:-?} | $result |" >>"$summary"
    if [ "$result" != ok ]; then
      cat "$summary"
      echo "bad-input: $t found a crash" >&2
      exit 1
    fi
  done
  cat "$summary"
fi

echo "bad-input: hostile clients ($rounds rounds)"
cargo build -q -p cloakroom-cli -p cloakroom-reliability
"$target/debug/reliability" hostile --demo-bin "$target/debug/cloakroom" \
  --rounds "$rounds" --work-dir "$work"
