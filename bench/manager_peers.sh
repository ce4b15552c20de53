#!/usr/bin/env bash
# The manager benchmark with every peer it compares with: installs Debian's
# redis-server when it is missing (for the benchmark only: bench_manager
# runs it on a private Unix socket, without persistence, and stops it),
# then runs bench_manager from a build tree:
#   bash bench/manager_peers.sh build/rel
set -eu
build=${1:-build/release}
if ! command -v redis-server >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server >/dev/null
fi
exec "$build/bench/bench_manager"
