"""CPython peer of bench/bench_latency.c: tail latency of one operation
at a time between two processes (fork start method).

usage: latency_bench.py ROUND_TRIPS WAKES
Prints one line per case, "name p50 p99 p99.9" in microseconds:
  conn   64-byte send_bytes + recv_bytes round trip over Pipe()
  queue  Queue.put -> Queue.get of a consumer that has waited 300 us, one
         way (time.monotonic_ns: CLOCK_MONOTONIC, one clock for both)
  lock   Lock.release -> the acquire of a process blocked in it, one way
  event  Event.set -> the return of Event.wait, one way
  apply  Pool(1).apply_async(tiny).get() round trip
"""
import multiprocessing as mp
import sys
import time

GAP = 300e-6
MSG = b"x" * 64


def pct(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2], v[int(n * 0.99)], v[int(n * 0.999)]


def out(name, v):
    p50, p99, p999 = pct(v)
    print("%s %.2f %.2f %.2f" % (name, p50, p99, p999), flush=True)


def echo(c, other):
    other.close()  # the parent's end, inherited through fork
    while True:
        try:
            b = c.recv_bytes()
        except EOFError:
            return
        c.send_bytes(b)


def conn_rtt(n):
    a, b = mp.Pipe()
    p = mp.Process(target=echo, args=(b, a))
    p.start()
    b.close()
    v = []
    for i in range(n + 100):
        t = time.monotonic_ns()
        a.send_bytes(MSG)
        a.recv_bytes()
        if i >= 100:
            v.append((time.monotonic_ns() - t) / 1e3)
    a.close()
    p.join()
    return v


def queue_waiter(q, back, n):
    lat = []
    for _ in range(n):
        m = q.get()
        lat.append((time.monotonic_ns() - int.from_bytes(m[:8], "little")) / 1e3)
        back.put(None)
    back.put(lat)


def queue_hand(n):
    q, back = mp.Queue(), mp.Queue()
    p = mp.Process(target=queue_waiter, args=(q, back, n))
    p.start()
    for _ in range(n):
        time.sleep(GAP)
        t0 = time.monotonic_ns()
        q.put(t0.to_bytes(8, "little") + MSG[8:])
        back.get()
    lat = back.get()
    p.join()
    return lat


def lock_waiter(lock, go, ack, t0, n, res):
    lat = []
    for _ in range(n):
        go.wait()
        go.clear()
        ack.set()
        lock.acquire()
        lat.append((time.monotonic_ns() - t0.value) / 1e3)
        lock.release()
        ack.set()
    res.put(lat)


def lock_hand(n):
    lock, go, ack = mp.Lock(), mp.Event(), mp.Event()
    t0 = mp.Value("q", 0, lock=False)
    res = mp.Queue()
    p = mp.Process(target=lock_waiter, args=(lock, go, ack, t0, n, res))
    p.start()
    for _ in range(n):
        lock.acquire()
        go.set()
        ack.wait()
        ack.clear()
        time.sleep(GAP)
        t0.value = time.monotonic_ns()
        lock.release()
        ack.wait()
        ack.clear()
    lat = res.get()
    p.join()
    return lat


def event_waiter(ev, ack, t0, n, res):
    lat = []
    for _ in range(n):
        ev.wait()
        lat.append((time.monotonic_ns() - t0.value) / 1e3)
        ev.clear()
        ack.set()
    res.put(lat)


def event_wake(n):
    ev, ack = mp.Event(), mp.Event()
    t0 = mp.Value("q", 0, lock=False)
    res = mp.Queue()
    p = mp.Process(target=event_waiter, args=(ev, ack, t0, n, res))
    p.start()
    for _ in range(n):
        time.sleep(GAP)
        t0.value = time.monotonic_ns()
        ev.set()
        ack.wait()
        ack.clear()
    lat = res.get()
    p.join()
    return lat


def tiny(x):
    return x


def apply_rtt(n):
    v = []
    with mp.Pool(1) as pool:
        for i in range(n + 100):
            t = time.monotonic_ns()
            pool.apply_async(tiny, (7,)).get()
            if i >= 100:
                v.append((time.monotonic_ns() - t) / 1e3)
    return v


def main():
    mp.set_start_method("fork")
    rtts, wakes = int(sys.argv[1]), int(sys.argv[2])
    out("conn", conn_rtt(rtts))
    out("queue", queue_hand(wakes))
    out("lock", lock_hand(wakes))
    out("event", event_wake(wakes))
    out("apply", apply_rtt(rtts))


if __name__ == "__main__":
    main()
