#!/usr/bin/env bash
# Two "machines" on one host for test_mpi: two network namespaces joined
# by a veth pair (10.77.N.1 and 10.77.N.2), each with a hostname of its
# own, mpirun in the first, and an rsh agent (this script, called as
# `mpi_netns.sh agent HOST CMD...`) that runs Open MPI's daemon for the
# second inside its namespace. Two ranks per namespace (Open MPI 4.1.4's
# TCP layer fails with one, ompi #10734); TCP only between ranks.
#   mpi_netns.sh run MPIRUN PROG ARGS...   exit 77 when namespaces cannot
#                                           be made (not root, no ip)
set -u
if [ "${1:-}" = agent ]; then
  # mpirun calls the agent as: agent [options] HOST COMMAND... Only the
  # second machine is ever remote.
  shift
  while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done
  host=$1; shift
  ns=$(cat "$MPROC_NETNS_DIR/ns.$host") || exit 1
  exec ip netns exec "$ns" unshare -u sh -c \
    'hostname "$0"; exec sh -c "$*"' "mproc-$host" "$@"
fi
[ "${1:-}" = run ] || { echo "usage: $0 run MPIRUN PROG ARGS..." >&2; exit 2; }
shift
mpirun=$1; shift
command -v ip >/dev/null || { echo "mpi_netns: no ip command (iproute2)"; exit 77; }
n=$(( ($$ % 200) + 20 ))
a=mprocA$$ b=mprocB$$
dir=$(mktemp -d)
cleanup() { ip netns del "$a" 2>/dev/null; ip netns del "$b" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
if ! ip netns add "$a" 2>/dev/null || ! ip netns add "$b" 2>/dev/null ||
   ! ip link add "va$$" type veth peer name "vb$$" 2>/dev/null; then
  echo "mpi_netns: cannot make network namespaces here (needs root and CAP_NET_ADMIN)"
  exit 77
fi
ip link set "va$$" netns "$a" && ip link set "vb$$" netns "$b" &&
ip -n "$a" addr add "10.77.$n.1/24" dev "va$$" &&
ip -n "$b" addr add "10.77.$n.2/24" dev "vb$$" &&
ip -n "$a" link set lo up && ip -n "$b" link set lo up &&
ip -n "$a" link set "va$$" up && ip -n "$b" link set "vb$$" up || {
  echo "mpi_netns: cannot set up the veth pair"; exit 77; }
echo "$b" > "$dir/ns.10.77.$n.2"
export MPROC_NETNS_DIR=$dir
self=$(readlink -f "$0")
ip netns exec "$a" unshare -u sh -c 'hostname mproc-A; exec "$@"' sh \
  "$mpirun" --oversubscribe \
  --host "10.77.$n.1:2,10.77.$n.2:2" -np 4 \
  --mca plm_rsh_agent "$self agent" \
  --mca btl self,tcp --mca btl_tcp_if_include "10.77.$n.0/24" \
  --mca oob_tcp_if_include "10.77.$n.0/24" \
  -x LSAN_OPTIONS -x OMPI_MCA_btl_vader_single_copy_mechanism \
  "$@"
