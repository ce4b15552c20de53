#!/usr/bin/env bash
# The tour: runs every example program in order (examples/exNN_*.c). The
# MPI ones (exNN_mpi_*) run under mpirun -n 3, or are reported skipped when
# the library was built without MPI (then they are not built).
set -u
dir=${1:-build/release/examples}
src=$(dirname "$0")
fail=0
mpirun=$(command -v mpirun || true)
for exe in $( (ls "$dir"; ls "$src" | sed -n 's/\(ex[0-9]*_mpi_.*\)\.c$/\1/p') |
              grep -E '^ex[0-9]+_' | sort -u); do
  run=("$dir/$exe")
  if [[ $exe == *_mpi_* ]]; then
    if [ ! -x "$dir/$exe" ] || [ -z "$mpirun" ]; then
      echo "===== $exe ====="
      echo "skipped: mproc was built without MPI (install openmpi-bin and libopenmpi-dev)"
      continue
    fi
    # As root (containers) Open MPI wants both variables; without ptrace
    # its shared-memory single copy cannot work.
    run=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
         OMPI_MCA_btl_vader_single_copy_mechanism=none
         "$mpirun" --oversubscribe -n 3 "$dir/$exe")
  fi
  [ -x "$dir/$exe" ] || continue
  echo "===== $exe ====="
  if ! timeout 60 "${run[@]}"; then
    echo "!!!!! $exe failed"
    fail=1
  fi
done
exit $fail
