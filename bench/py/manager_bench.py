"""CPython peer of bench/bench_manager.c: a dict proxy's round trip, the
CPU time client and server spend on it, proxy creation, throughput of
several client processes, and the server's memory holding 10^6 items.

Usage: python manager_bench.py client ADDRESS KEYHEX SERVERPID N | self N
  client  SyncManager.connect to ADDRESS (mproc's form: "@abstract" or
          "host:port") with the key; SERVERPID is the server's process
          (for its CPU time)
  self    the same against a CPython SyncManager it starts itself, and
          the memory figures
Prints "name value [unit]" lines:
  rtt <median microseconds per call (d[k] = v and d[k]) over 7 rounds>
  cpu_client / cpu_server <CPU microseconds per call, over all rounds>
  create <median microseconds from m.dict() to its first call>
  throughput_<n>_clients <ops/s of n forked clients, 1 s> ops/s
  memory_1e6_int_items / memory_1e6_str_items <server RSS growth> MiB
"""
import multiprocessing
import os
import struct
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


def cpu_of(pid):
    """CPU seconds (user + system) of process pid."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(
        os.sysconf('SC_CLK_TCK'))


def rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return -1


def measure(m, n, server_pid):
    d = m.dict()
    d['k'] = 0
    rounds = []
    c0, s0 = time.process_time(), cpu_of(server_pid)
    for _ in range(7):
        t0 = time.perf_counter()
        for i in range(n):
            d['k'] = i
            d['k']
        rounds.append((time.perf_counter() - t0) / (2 * n) * 1e6)
    cc = (time.process_time() - c0) / (14 * n) * 1e6
    cs = (cpu_of(server_pid) - s0) / (14 * n) * 1e6
    creates = []
    for _ in range(50):
        t0 = time.perf_counter()
        p = m.dict()
        len(p)
        creates.append((time.perf_counter() - t0) * 1e6)
        del p
    print('rtt %.2f' % median(rounds))
    print('cpu_client %.2f' % cc)
    print('cpu_server %.2f' % cs)
    print('create %.1f' % median(creates))
    sys.stdout.flush()
    for nc in (1, 2, 8, 32):
        print('throughput_%d_clients %.0f ops/s' % (nc, throughput(d, nc)))
        sys.stdout.flush()


def client_loop(d, c, w):
    ops = 0
    len(d)  # its connection opened before the clock
    end = time.perf_counter() + 1.0
    while time.perf_counter() < end:
        d[c] = ops
        d[c]
        ops += 2
    os.write(w, struct.pack('q', ops))


def throughput(d, nc):
    ctx = multiprocessing.get_context('fork')
    r, w = os.pipe()
    ps = [ctx.Process(target=client_loop, args=(d, c, w)) for c in range(nc)]
    for p in ps:
        p.start()
    os.close(w)
    total = 0
    for _ in range(nc):
        b = os.read(r, 8)
        if len(b) == 8:
            total += struct.unpack('q', b)[0]
    for p in ps:
        p.join()
    os.close(r)
    return total


def memory(m, pid):
    kept = []
    for strings in (False, True):
        d = m.dict()
        kept.append(d)
        before = rss_kib(pid)
        for b in range(100):
            if strings:
                d.update(dict(('k%07d' % i, 'v%07d' % i)
                              for i in range(b * 10000, (b + 1) * 10000)))
            else:
                d.update(dict((i, i)
                              for i in range(b * 10000, (b + 1) * 10000)))
        assert len(d) == 1000000
        print('memory_1e6_%s_items %.1f MiB' %
              ('str' if strings else 'int',
               (rss_kib(pid) - before) / 1024.0))
        sys.stdout.flush()


def main():
    if sys.argv[1] == 'client':
        m = SyncManager(address=address(sys.argv[2]),
                        authkey=bytes(bytearray.fromhex(sys.argv[3])))
        m.connect()
        measure(m, int(sys.argv[5]), int(sys.argv[4]))
    else:
        m = SyncManager()
        m.start()
        measure(m, int(sys.argv[2]), m._process.pid)
        memory(m, m._process.pid)
        m.shutdown()
    sys.stdout.flush()


if __name__ == '__main__':
    main()
