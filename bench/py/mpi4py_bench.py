"""bench_mpi's peer: mpi4py.futures' MPIPoolExecutor mapping tiny tasks.

Run as `mpirun -np N python3 -m mpi4py.futures mpi4py_bench.py COUNT
CHUNK`: rank 0 runs this script, the other N-1 ranks are the executor's
workers. Prints "RESULT tiny <tasks/s>", the median of 3 rounds, with
chunks of CHUNK tasks, or (CHUNK 0) as bench_mpi's: COUNT / (4 x workers).
"""
import sys
import time

from mpi4py import MPI
from mpi4py.futures import MPIPoolExecutor


def tiny(x):
    return x + 1


def main():
    n = int(sys.argv[1])
    workers = max(1, MPI.COMM_WORLD.Get_size() - 1)
    chunk = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    chunk = chunk or max(1, n // (4 * workers))
    rates = []
    with MPIPoolExecutor() as ex:
        list(ex.map(tiny, range(1000), chunksize=chunk))  # workers up
        for _ in range(3):
            t = time.perf_counter()
            out = list(ex.map(tiny, range(n), chunksize=chunk))
            rates.append(n / (time.perf_counter() - t))
            assert out[-1] == n
    rates.sort()
    print("RESULT tiny %.0f" % rates[1], flush=True)


if __name__ == "__main__":
    main()
