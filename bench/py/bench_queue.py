"""CPython's multiprocessing.Queue, the peer of bench/bench_queue.c.

usage: bench_queue.py PRODUCERS CONSUMERS MESSAGES SIZE
Prints messages per second: from the start signal until every consumer has
taken its share (bytes objects of SIZE bytes, fork start method).
"""
import multiprocessing as mp
import sys
import time


def produce(q, go, n, size):
    msg = b"x" * size
    go.wait()
    for _ in range(n):
        q.put(msg)


def consume(q, go, n):
    go.wait()
    for _ in range(n):
        q.get()


def main():
    np, nc, n, size = (int(a) for a in sys.argv[1:5])
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    go = ctx.Event()
    procs = [ctx.Process(target=produce, args=(q, go, n // np, size))
             for _ in range(np)]
    procs += [ctx.Process(target=consume, args=(q, go, n // nc))
              for _ in range(nc)]
    for p in procs:
        p.start()
    time.sleep(0.2)  # let them reach go.wait()
    t0 = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    print("%.1f" % (n / (time.perf_counter() - t0)))


if __name__ == "__main__":
    main()
