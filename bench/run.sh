#!/usr/bin/env bash
# Runs every benchmark program built in a build tree, one at a time:
#   bash bench/run.sh build/release     (what `make bench` runs)
# Extra arguments are passed to each benchmark. Exits non-zero if one
# fails (a benchmark fails on errors, never on missed timing targets).
set -u
build=${1:-build/release}
shift || true
dir=$build/bench
if [ ! -d "$dir" ]; then
  echo "bench/run.sh: no $dir (build with -DMPROC_BENCH=ON first)" >&2
  exit 1
fi
fail=0
found=0
for exe in "$dir"/bench_*; do
  [ -f "$exe" ] && [ -x "$exe" ] || continue
  found=1
  echo "===== $(basename "$exe") ====="
  if ! "$exe" "$@"; then
    echo "!!!!! $(basename "$exe") failed" >&2
    fail=1
  fi
done
if [ $found = 0 ]; then
  echo "bench/run.sh: no bench_* programs in $dir" >&2
  exit 1
fi
exit $fail
