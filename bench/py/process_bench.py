"""CPython peer of bench/bench_process.c: Process start + join per start method.

Usage: python process_bench.py METHOD:N [METHOD:N ...]
For each METHOD (fork, spawn, forkserver) times N rounds of
ctx.Process(target=noop); p.start(); p.join() after one untimed warm-up
(which, under forkserver, starts the server) and prints one line
"METHOD <microseconds per start+join>". Exits 1 if a child fails.
"""
import multiprocessing
import sys
import time


def noop():
    pass


def one(ctx):
    p = ctx.Process(target=noop)
    p.start()
    p.join()
    if p.exitcode != 0:
        sys.exit("child exited with %r" % p.exitcode)


def main(argv):
    for spec in argv:
        method, n = spec.split(":")
        n = int(n)
        ctx = multiprocessing.get_context(method)
        one(ctx)  # warm-up: imports, forkserver start
        t0 = time.perf_counter()
        for _ in range(n):
            one(ctx)
        dt = time.perf_counter() - t0
        print("%s %.3f" % (method, dt / n * 1e6), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
