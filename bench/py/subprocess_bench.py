"""CPython peer of bench/bench_subprocess.c: subprocess start, capture, communicate.

Usage: python subprocess_bench.py SPEC [SPEC ...], each SPEC one of
  run:N          N x subprocess.run(["true"]); prints "run <median us>"
  runbig:N       the same after making 1 GiB of this process resident;
                 prints "runbig <median us>"
  capture:BYTES  check_output(["head", "-c", BYTES, "/dev/zero"]);
                 prints "capture <MB/s>"
  comm:BYTES     Popen(["cat"], stdin=PIPE, stdout=PIPE).communicate() of
                 BYTES in and out; prints "comm <MB/s>"
One untimed warm-up precedes each timed figure. Exits 1 on a failure.
"""
import statistics
import subprocess
import sys
import time

_big = None


def runs(n):
    """The median of n runs, in microseconds (as the C side's figure)."""
    subprocess.run(["true"], check=True)
    t = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(["true"], check=True)
        t.append(time.perf_counter() - t0)
    return statistics.median(t) * 1e6


def capture(nbytes):
    t0 = time.perf_counter()
    out = subprocess.check_output(["head", "-c", str(nbytes), "/dev/zero"])
    dt = time.perf_counter() - t0
    if len(out) != nbytes:
        sys.exit("capture: got %d bytes" % len(out))
    return nbytes / dt / 1e6


def comm(nbytes, data=[]):
    if not data:
        data.append(b"x" * nbytes)
    t0 = time.perf_counter()
    p = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out, _ = p.communicate(data[0])
    dt = time.perf_counter() - t0
    if len(out) != nbytes or p.returncode != 0:
        sys.exit("comm: got %d bytes, code %r" % (len(out), p.returncode))
    return nbytes / dt / 1e6


def main(argv):
    global _big
    for spec in argv:
        name, n = spec.split(":")
        n = int(n)
        if name == "run":
            print("run %.3f" % runs(n), flush=True)
        elif name == "runbig":
            if _big is None:
                _big = bytearray(1 << 30)
                for i in range(0, len(_big), 4096):
                    _big[i] = 1
            print("runbig %.3f" % runs(n), flush=True)
        elif name == "capture":
            print("capture %.1f" % capture(n), flush=True)
        elif name == "comm":
            print("comm %.1f" % comm(n), flush=True)
        else:
            sys.exit("unknown spec %r" % spec)


if __name__ == "__main__":
    main(sys.argv[1:])
