"""CPython peer of bench/bench_manager.c: a dict proxy's round trip.

Usage: python manager_bench.py client ADDRESS KEYHEX N | self N
  client  SyncManager.connect to ADDRESS (mproc's form: "@abstract" or
          "host:port") with the key; times N d[k] = v and N d[k]
  self    the same against a CPython SyncManager it starts itself
Prints "rtt <median microseconds per call over 7 rounds>" and
"create <median microseconds from m.dict() to its first call>".
"""
import sys
import time
from multiprocessing.managers import SyncManager


def address(a):
    if a.startswith('@'):
        return '\0' + a[1:]
    host, port = a.rsplit(':', 1)
    return (host, int(port))


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def measure(m, n):
    d = m.dict()
    d['k'] = 0
    rounds = []
    for _ in range(7):
        t0 = time.perf_counter()
        for i in range(n):
            d['k'] = i
            d['k']
        rounds.append((time.perf_counter() - t0) / (2 * n) * 1e6)
    creates = []
    for _ in range(50):
        t0 = time.perf_counter()
        p = m.dict()
        len(p)
        creates.append((time.perf_counter() - t0) * 1e6)
        del p
    print('rtt %.2f' % median(rounds))
    print('create %.1f' % median(creates))


def main():
    if sys.argv[1] == 'client':
        m = SyncManager(address=address(sys.argv[2]),
                        authkey=bytes(bytearray.fromhex(sys.argv[3])))
        m.connect()
        measure(m, int(sys.argv[4]))
    else:
        m = SyncManager()
        m.start()
        measure(m, int(sys.argv[2]))
        m.shutdown()
    sys.stdout.flush()


if __name__ == '__main__':
    main()
