"""CPython peer of bench/bench_shm.c: Value and SharedMemory.

Usage: python shm_bench.py MODE:N [MODE:N ...]
Modes (each prints one line "MODE <nanoseconds per op>"):
  incr  two processes (fork) each do N times
        `with v.get_lock(): v.value += 1` on one Value('i'), started
        together by an Event; the time is from the start signal to the
        last one done, per increment (2N of them). Checks the total.
  new   N times Value('i', 0) (with its lock) and its release.
  shm   N times SharedMemory(create=True, size=4096), close(), unlink().
"""
import multiprocessing as mp
import sys
import time
from multiprocessing import shared_memory


def incr_worker(v, go, ends, i, n):
    go.wait()
    for _ in range(n):
        with v.get_lock():
            v.value += 1
    ends[i] = time.perf_counter()


def incr(n):
    ctx = mp.get_context("fork")
    v = ctx.Value("i", 0)
    go = ctx.Event()
    ends = ctx.RawArray("d", 2)
    ps = [ctx.Process(target=incr_worker, args=(v, go, ends, i, n))
          for i in range(2)]
    for p in ps:
        p.start()
    time.sleep(0.05)  # both are waiting on the event
    t0 = time.perf_counter()
    go.set()
    for p in ps:
        p.join()
    if v.value != 2 * n:
        sys.exit("lost increments: %d of %d" % (v.value, 2 * n))
    return (max(ends) - t0) / (2 * n)


def new(n):
    ctx = mp.get_context("fork")
    t0 = time.perf_counter()
    for _ in range(n):
        v = ctx.Value("i", 0)
        del v
    return (time.perf_counter() - t0) / n


def shm(n):
    t0 = time.perf_counter()
    for _ in range(n):
        s = shared_memory.SharedMemory(create=True, size=4096)
        s.close()
        s.unlink()
    return (time.perf_counter() - t0) / n


def main(argv):
    modes = {"incr": incr, "new": new, "shm": shm}
    for spec in argv:
        mode, n = spec.split(":")
        print("%s %.1f" % (mode, modes[mode](int(n)) * 1e9), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
