#!/usr/bin/env bash
# The fuzz smoke of `make check`: builds the fuzz targets with clang (a
# tree of their own) and runs each on its in-tree corpus and then for a
# few seconds. Skipped (77) where clang or libFuzzer is missing.
set -u
src=$1; build=$2; secs=${3:-3}
command -v clang >/dev/null || { echo "no clang: fuzz smoke skipped"; exit 77; }
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n){return 0;}' \
  >"${TMPDIR:-/tmp}/mproc-fz-$$.c"
if ! clang -fsanitize=fuzzer "${TMPDIR:-/tmp}/mproc-fz-$$.c" \
     -o "${TMPDIR:-/tmp}/mproc-fz-$$" 2>/dev/null; then
  rm -f "${TMPDIR:-/tmp}/mproc-fz-$$"*
  echo "no libFuzzer (libclang-rt-dev): fuzz smoke skipped"; exit 77
fi
rm -f "${TMPDIR:-/tmp}/mproc-fz-$$"*
if ! { CC=clang cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
         -DMPROC_FUZZ=ON -DMPROC_TESTS=OFF -DMPROC_EXAMPLES=OFF \
         -DMPROC_BENCH=OFF && cmake --build "$build" -j2; } >"$build.log" 2>&1; then
  cat "$build.log"; exit 1
fi
exec bash "$src/fuzz/run.sh" "$build" "$secs"
