#!/usr/bin/env bash
# Draws the charts of bench/RESULTS.md as PNGs under bench/plots/:
#   bash bench/plot.sh build/release [LOG]
# LOG is the output of bench/run.sh (what `make bench` saves): its
# bench_curves section gives the curves and its RATIO rows (every
# benchmark prints them) the ratio chart. Without a LOG, bench_curves is
# run here and the ratio chart is drawn from the RATIO rows of
# bench/plots/data/ratios.tsv as last saved. gnuplot (gnuplot-nox) is
# installed with apt-get when missing, as .ci/run installs packages.
set -eu
build=${1:-build/release}
log=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
out=$here/plots
data=$out/data
mkdir -p "$data"
if ! command -v gnuplot >/dev/null; then
  echo "bench/plot.sh: installing gnuplot-nox" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq gnuplot-nox >/dev/null
fi
curves=$data/curves.txt
if [ -n "$log" ] && grep -q '^===== bench_curves' "$log"; then
  sed -n '/^===== bench_curves =====/,/^===== /p' "$log" >"$curves"
elif [ -n "$log" ] && grep -q '^# queue_pc' "$log"; then
  cp "$log" "$curves"
else
  "$build/bench/bench_curves" >"$curves"
fi
# One file per curve: "# name" starts it, its header becomes a comment.
awk -v dir="$data" '
  /^# [a-z_]+$/ { f = dir "/" $2 ".dat"; printf "" > f; head = 1; next }
  f && head && NF { print "# " $0 > f; head = 0; next }
  f && NF && $1 !~ /^#/ { print > f }
' "$curves"
if [ -n "$log" ] && grep -q '^RATIO' "$log"; then
  grep '^RATIO' "$log" | cut -f2- >"$data/ratios.tsv"
fi
[ -s "$data/ratios.tsv" ] || printf 'none\t-\t-\n' >"$data/ratios.tsv"
cd "$data" && gnuplot -e "outdir='$out'" "$here/plots.gp"
echo "bench/plot.sh: charts in $out"
