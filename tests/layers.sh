#!/usr/bin/env bash
# The source tree's layers, checked on the built objects: every call from
# one file of src/ into another goes down the stack, never up or around.
#
#   os  <  core  <  obj  <  process  <  sync, conn, queue, subprocess  <  shm  <  pool
#     <  mpi, manager
#
# (mpi/, the pool's MPI backend, is built only where MPI is found.)
# Inside core/ and process/ the files are ordered too (see core/core.h and
# process/process.h); inside the other folders files may call each other.
# Usage: layers.sh <source dir> <object dir of the library>
set -euo pipefail
src=$1; objdir=$2
rank() { # folder/file -> "folder-rank file-rank"
  local f=$1
  case $f in
    os/*) echo "0 0" ;;
    core/buf|core/error) echo "1 0" ;;
    core/self|core/util|core/finalize) echo "1 1" ;;
    core/resolve|core/log) echo "1 2" ;;
    core/args) echo "1 3" ;;
    obj/*) echo "2 -1" ;;
    process/process) echo "3 0" ;;
    process/boot) echo "3 1" ;;
    process/spawn) echo "3 2" ;;
    process/entry) echo "3 3" ;;
    process/forkserver) echo "3 4" ;;
    process/start) echo "3 5" ;;
    sync/*|conn/*|queue/*|subprocess/*) echo "4 -1" ;;
    shm/*) echo "5 -1" ;;
    pool/*) echo "6 -1" ;;
    mpi/*|manager/*) echo "7 -1" ;;
    *) echo "unranked" ;;
  esac
}
declare -A def
objs=()
while IFS= read -r c; do
  rel=${c#"$src"/}; rel=${rel%.c}
  o=$(find "$objdir" -path "*/src/$rel.c.o" | head -1)
  [ -n "$o" ] || continue
  objs+=("$rel=$o")
  while read -r _ t s; do
    case $t in T|D|B|R) def[$s]=$rel ;; esac
  done < <(nm "$o" | awk 'NF == 3 && $3 ~ /^mproc/')
done < <(find "$src" -name '*.c' | sort)
[ ${#objs[@]} -gt 10 ] || { echo "no objects under $objdir"; exit 1; }
bad=0
for e in "${objs[@]}"; do
  rel=${e%%=*}; o=${e#*=}
  read -r fr ff <<<"$(rank "$rel")" || true
  if [ "$fr" = unranked ]; then echo "$rel: not in any layer"; bad=1; continue; fi
  for s in $(nm "$o" | awk '$1 == "U" && $2 ~ /^mproc/ {print $2}'); do
    to=${def[$s]:-}
    [ -n "$to" ] && [ "$to" != "$rel" ] || continue
    read -r tr tf <<<"$(rank "$to")"
    if [ "$tr" -gt "$fr" ] ||
       { [ "$tr" = "$fr" ] && [ "$ff" != -1 ] && [ "$tf" -ge "$ff" ]; }; then
      echo "$rel calls up into $to ($s)"; bad=1
    fi
  done
done
# Headers: a file includes only its own folder's header and lower layers'.
while IFS= read -r f; do
  rel=${f#"$src"/}
  read -r fr _ <<<"$(rank "${rel%.*}")"
  [ "$fr" != unranked ] || continue
  for inc in $(sed -n 's/^#include "\([a-z]*\)\/[a-z_]*\.h"/\1/p' "$f"); do
    read -r ir _ <<<"$(rank "$inc/x")"
    [ "$ir" = unranked ] && continue
    if [ "$ir" -gt "$fr" ]; then echo "$rel includes a higher layer ($inc/)"; bad=1; fi
  done
done < <(find "$src" -name '*.[ch]' | sort)
[ $bad = 0 ] && echo "layers: ${#objs[@]} files, every call and include goes down"
exit $bad
