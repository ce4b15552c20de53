"""CPython peer of bench/bench_curves.c.

usage: curves_bench.py rss
  rss  resident (VmRSS) and proportional (Pss of smaps_rollup) set size of
       each idle worker of Pool(4) under the fork start method, after every
       worker has run tasks; prints the averages in KiB: "RSS PSS"
"""
import multiprocessing as mp
import sys


def square(x):
    return x * x


def field(path, name):
    with open(path) as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return -1


def rss():
    ctx = mp.get_context("fork")
    with ctx.Pool(4) as pool:
        pool.map(square, range(1000), chunksize=1)
        pids = [p.pid for p in pool._pool]
        r = [field("/proc/%d/status" % p, "VmRSS") for p in pids]
        s = [field("/proc/%d/smaps_rollup" % p, "Pss") for p in pids]
    print("%d %d" % (sum(r) // len(r), sum(s) // len(s)))


if __name__ == "__main__":
    if sys.argv[1:] == ["rss"]:
        rss()
    else:
        sys.exit(__doc__)
