"""CPython peer of bench/bench_pool.c: multiprocessing.Pool figures.

Usage: python pool_bench.py SPEC [SPEC ...], each SPEC one of
  map:N        Pool(2).map(square, range(N)), default chunksize; the pool is
               started and warmed up first (untimed). Prints "map <ns/item>"
               and "mapcpu <CPU ns/item>" (every thread of this process and
               the workers, from /proc/.../schedstat, as bench_pool.c).
  apply:N      N x apply_async(square, (i,)) then get() of each, pool warm.
               Prints "apply <tasks/s>" and "applycpu <CPU us/task>".
  start:K      K x (Pool(2); apply(square, (1,)); terminate via `with`).
               Prints "start <ms per start+first result+shutdown>" (mean).
  cpu:T:N      T tasks of N increments (the tutorial's cpu_bound_task) on a
               Pool(cpu_count()) with map(chunksize=1). Prints "cpu <s>".
The start method is the platform default (fork on Linux).
"""
import multiprocessing
import os
import sys
import time


def _sched_ns(path):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def cpu_ns(pool):
    """CPU ns so far of every thread of this process and pool's workers."""
    t = sum(_sched_ns("/proc/self/task/%s/schedstat" % tid)
            for tid in os.listdir("/proc/self/task"))
    for p in pool._pool:
        t += _sched_ns("/proc/%d/schedstat" % p.pid)
    return t


def square(x):
    return x * x


def cpu_bound_task(n):
    result = 0
    for _ in range(n):
        result += 1
    return result


def main(argv):
    for spec in argv:
        parts = spec.split(":")
        kind = parts[0]
        if kind == "map":
            n = int(parts[1])
            data = list(range(n))
            with multiprocessing.Pool(2) as pool:
                pool.map(square, range(100))
                c = cpu_ns(pool)
                t = time.perf_counter()
                res = pool.map(square, data)
                dt = time.perf_counter() - t
                c = cpu_ns(pool) - c
            if res[-1] != (n - 1) * (n - 1):
                sys.exit("wrong result")
            print("map %.3f" % (dt * 1e9 / n))
            print("mapcpu %.3f" % (c / n))
        elif kind == "apply":
            n = int(parts[1])
            with multiprocessing.Pool(2) as pool:
                pool.map(square, range(100))
                c = cpu_ns(pool)
                t = time.perf_counter()
                rs = [pool.apply_async(square, (i,)) for i in range(n)]
                out = [r.get() for r in rs]
                dt = time.perf_counter() - t
                c = cpu_ns(pool) - c
            if out[-1] != (n - 1) * (n - 1):
                sys.exit("wrong result")
            print("apply %.1f" % (n / dt))
            print("applycpu %.4f" % (c / n / 1e3))
        elif kind == "start":
            k = int(parts[1])
            t = time.perf_counter()
            for _ in range(k):
                with multiprocessing.Pool(2) as pool:
                    if pool.apply(square, (3,)) != 9:
                        sys.exit("wrong result")
            dt = time.perf_counter() - t
            print("start %.3f" % (dt * 1e3 / k))
        elif kind == "cpu":
            tasks, n = int(parts[1]), int(parts[2])
            with multiprocessing.Pool() as pool:
                pool.map(square, range(4))
                t = time.perf_counter()
                pool.map(cpu_bound_task, [n] * tasks, chunksize=1)
                dt = time.perf_counter() - t
            print("cpu %.4f" % dt)
        else:
            sys.exit("unknown spec " + spec)
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
