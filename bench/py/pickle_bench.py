"""CPython peer of bench/bench_pickle.c: pickle.dumps / pickle.loads (the
C accelerator, _pickle) with the default protocol (4 in 3.8+).

Usage: python pickle_bench.py NAME:N [NAME:N ...]
Names: dict (1,000 str -> int items: 'key0': 0, ...), list (10**5 ints,
0 .. 99999), bytes (one 1 MiB bytes), shared (t = (1, 2), then t = (t, t)
40 times: 41 tuples, 2**40 leaves). For each, dumps N times, then
loads N times, and prints "NAME_dumps <ns per op>" and "NAME_loads <ns
per op>". Checks that what loads gives equals the data.
"""
import os
import pickle
import sys
import time

DATA = {
    "dict": lambda: {"key%d" % i: i for i in range(1000)},
    "list": lambda: list(range(100000)),
    "bytes": lambda: os.urandom(1 << 20),
    "shared": lambda: doubled(40),
}


def doubled(levels):
    t = (1, 2)
    for _ in range(levels):
        t = (t, t)
    return t


def same(back, data):
    """back == data, but the shared tuple by its shape: == compares it
    path by path, 2**40 of them."""
    while isinstance(data, tuple) and len(data) == 2 and \
            isinstance(data[0], tuple):
        if not (isinstance(back, tuple) and len(back) == 2 and
                back[0] is back[1]):
            return False
        back, data = back[0], data[0]
    return back == data


def main():
    for arg in sys.argv[1:]:
        name, n = arg.split(":")
        n = int(n)
        data = DATA[name]()
        dumps, loads = pickle.dumps, pickle.loads
        t0 = time.perf_counter()
        for _ in range(n):
            p = dumps(data)
        t1 = time.perf_counter()
        for _ in range(n):
            back = loads(p)
        t2 = time.perf_counter()
        if not same(back, data):
            print("mismatch", name)
            return 1
        print("%s_dumps %.1f" % (name, (t1 - t0) / n * 1e9))
        print("%s_loads %.1f" % (name, (t2 - t1) / n * 1e9))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
