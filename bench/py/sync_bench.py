"""CPython peer of bench/bench_sync.c: multiprocessing's Lock and Value.

Usage: python sync_bench.py lock:N counter:N event:N
  lock:N     N uncontended Lock().acquire() + release() pairs in one process;
             prints "lock <ns per pair>"
  counter:N  2 processes each do N times `with v.get_lock(): v.value += 1`
             on a Value('i') (all start together); prints "counter <ns per
             increment>" (wall time / 2N) and exits 1 if the count is wrong
  event:N    Event ping-pong between 2 processes, N round trips; prints
             "event <ns per round trip>"
Each mode runs one untimed warm-up first. Start method: fork.
"""
import multiprocessing as mp
import sys
import time


def bench_lock(n):
    lock = mp.Lock()
    acq, rel = lock.acquire, lock.release
    for _ in range(1000):
        acq()
        rel()
    t0 = time.perf_counter()
    for _ in range(n):
        acq()
        rel()
    return (time.perf_counter() - t0) / n * 1e9


def incr(v, n, go):
    go.wait()
    lock = v.get_lock()
    for _ in range(n):
        with lock:
            v.value += 1


def bench_counter(n):
    v = mp.Value("i", 0)
    go = mp.Event()
    ps = [mp.Process(target=incr, args=(v, n, go)) for _ in range(2)]
    for p in ps:
        p.start()
    time.sleep(0.05)
    t0 = time.perf_counter()
    go.set()
    for p in ps:
        p.join()
    dt = time.perf_counter() - t0
    if v.value != 2 * n:
        sys.exit("counter: %d != %d" % (v.value, 2 * n))
    return dt / (2 * n) * 1e9


def pong(e1, e2, n):
    for _ in range(n):
        e1.wait()
        e1.clear()
        e2.set()


def bench_event(n):
    e1, e2 = mp.Event(), mp.Event()
    p = mp.Process(target=pong, args=(e1, e2, n + 100))
    p.start()
    for _ in range(100):
        e1.set()
        e2.wait()
        e2.clear()
    t0 = time.perf_counter()
    for _ in range(n):
        e1.set()
        e2.wait()
        e2.clear()
    dt = time.perf_counter() - t0
    p.join()
    return dt / n * 1e9


def main(argv):
    mp.set_start_method("fork")
    modes = {"lock": bench_lock, "counter": bench_counter, "event": bench_event}
    for spec in argv:
        mode, n = spec.split(":")
        print("%s %.1f" % (mode, modes[mode](int(n))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
