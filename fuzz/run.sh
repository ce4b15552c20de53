#!/usr/bin/env bash
# Runs every fuzz target of a fuzz build for a while:
#   bash fuzz/run.sh <fuzz build dir> <seconds per target> [smoke]
# Each target first replays its corpus in the tree (fuzz/corpus/<name>:
# a regression there fails at once), then fuzzes for the given time with a
# working corpus under the build dir, seeded from the tree's. Prints each
# target's executions; exits non-zero on any crash, leak or timeout.
# Crashing inputs are left as <build>/crash-<name>-*.
set -u
build=$1; secs=$2
here=$(cd "$(dirname "$0")" && pwd)
fail=0
for exe in "$build"/fuzz/fuzz_*; do
  [ -x "$exe" ] || continue
  name=$(basename "$exe"); name=${name#fuzz_}
  seeds=$here/corpus/$name
  work=$build/corpus/$name
  mkdir -p "$work"
  log=$build/$name.log
  [ -d "$seeds" ] || seeds=$work # no corpus in the tree yet
  if ! "$exe" -runs=0 "$seeds" >"$log" 2>&1; then
    echo "fuzz $name: the in-tree corpus fails (see $log)"; fail=1; continue
  fi
  if ! "$exe" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
       -print_final_stats=1 -artifact_prefix="$build/crash-$name-" \
       "$work" "$seeds" >"$log" 2>&1; then
    echo "fuzz $name: FAILED (see $log)"; grep -m3 -E 'ERROR|SUMMARY' "$log"
    fail=1; continue
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
  printf 'fuzz %-10s %12s execs in %ss, %s, 0 crashes\n' "$name" "$runs" "$secs" "$cov"
done
exit $fail
