#!/usr/bin/env bash
# The tour: runs every example program in order (examples/exNN_*.c).
set -u
dir=${1:-build/release/examples}
fail=0
for exe in $(ls "$dir" | grep -E '^ex[0-9]+_' | sort); do
  [ -x "$dir/$exe" ] || continue
  echo "===== $exe ====="
  if ! timeout 60 "$dir/$exe"; then
    echo "!!!!! $exe failed"
    fail=1
  fi
done
exit $fail
