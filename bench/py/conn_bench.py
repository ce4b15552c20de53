"""CPython peer of bench/bench_conn.c: Connection round trip and throughput.

Usage: python conn_bench.py rtt N SIZE | tput N SIZE
  rtt   N round trips of a SIZE-byte message through a duplex Pipe with a
        forked echo child (send_bytes / recv_bytes on both sides); prints
        "rtt <microseconds per round trip>"
  tput  a forked child sends N messages of SIZE bytes (send_bytes), the
        parent receives them (recv_bytes_into a preallocated buffer);
        prints "tput <MB/s>" (MB = 10^6 bytes)
One untimed warm-up exchange precedes the timing. Exits 1 on a failure.
MPROC_BENCH_PIN="P,C" pins the parent to CPU P and the child to CPU C, as
bench_conn pins its own contenders.
"""
import multiprocessing
import os
import sys
import time

PIN = [int(x) for x in os.environ.get('MPROC_BENCH_PIN', '').split(',') if x]


def pin(i):
    if len(PIN) == 2:
        os.sched_setaffinity(0, {PIN[i]})


def echo(conn):
    pin(1)
    while True:
        m = conn.recv_bytes()
        if not m:  # an empty message ends the echo
            return
        conn.send_bytes(m)


def streamer(conn, n, size):
    pin(1)
    buf = b'x' * size
    conn.recv_bytes()  # go
    for _ in range(n):
        conn.send_bytes(buf)
    conn.recv_bytes()  # done


def main(argv):
    mode, n, size = argv[0], int(argv[1]), int(argv[2])
    pin(0)
    ctx = multiprocessing.get_context('fork')
    a, b = ctx.Pipe()
    if mode == 'rtt':
        p = ctx.Process(target=echo, args=(b,))
        p.start()
        msg = b'y' * size
        a.send_bytes(msg)
        a.recv_bytes()
        t0 = time.perf_counter()
        for _ in range(n):
            a.send_bytes(msg)
            a.recv_bytes()
        dt = time.perf_counter() - t0
        a.send_bytes(b'')
        p.join()
        print('rtt %.3f' % (dt / n * 1e6), flush=True)
    elif mode == 'tput':
        p = ctx.Process(target=streamer, args=(b, n, size))
        p.start()
        buf = bytearray(size)
        t0 = time.perf_counter()
        a.send_bytes(b'go')
        for _ in range(n):
            if a.recv_bytes_into(buf) != size:
                sys.exit(1)
        dt = time.perf_counter() - t0
        a.send_bytes(b'done')
        p.join()
        print('tput %.1f' % (n * size / dt / 1e6), flush=True)
    else:
        sys.exit('bad mode')
    return 1 if p.exitcode else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
