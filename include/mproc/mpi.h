/*
 * mproc/mpi.h - the pool on Open MPI (library mproc_mpi; docs/mpi.md).
 *
 * The same mproc_pool API, with tasks spread over the ranks of an MPI job:
 *
 *   mproc_pool_opts o = {.processes = 2,
 *                        .backend = mproc_pool_backend_mpi()};
 *   mproc_pool *pool;
 *   mproc_pool_new(&pool, &o);    // ranks other than 0 serve in here
 *   ... mproc_pool_map(pool, ...) exactly as with a local pool ...
 *   mproc_pool_free(pool);        // the serving ranks exit
 *
 * Start it as any MPI program, `mpirun -n N ./prog`: every rank runs the
 * same program from main(). In mproc_pool_new:
 *  - rank 0 returns, with a pool whose slots are its own `processes`
 *    workers plus max(2, their `processes`) channels per serving rank
 *    (mproc_pool_processes counts both);
 *  - every other rank becomes a server and never returns into the
 *    program: it runs the tasks rank 0 sends in a local pool of its own
 *    (`processes` workers, the same initializer and start method), and
 *    when rank 0 frees the pool (or exits) it frees that pool, finalizes
 *    MPI if mproc initialized it, and ends the process with exit(0)
 *    (atexit handlers run). If it cannot serve (its local pool cannot be
 *    started) it tells rank 0, which then counts no slots for it, and
 *    exits the same way.
 * Code before mproc_pool_new runs on every rank; code after it on rank 0
 * only. One MPI pool per run: a second one (after the first was freed)
 * returns MPROC_EPOOL, since its servers are gone.
 *
 * MPI is initialized with MPI_THREAD_MULTIPLE when the program has not
 * done it (and finalized at exit); a program that did must have asked for
 * MPI_THREAD_MULTIPLE (else -ENOTSUP). mproc talks on a duplicate of
 * MPI_COMM_WORLD.
 *
 * Tasks run in worker processes on every rank, never in an MPI process:
 * a task that crashes, aborts, exits or times out fails alone (as in a
 * local pool: MPROC_EWORKER, MPROC_ETASKTIMEOUT; the message names the
 * rank and host) and MPI never sees a process die. A rank that is lost
 * (killed, its node down: rank 0 watches a TCP lifeline to each) fails
 * the tasks it held with MPROC_ERANKLOST; the pool goes on with the
 * others (mpirun itself ends the whole job when a rank dies unless it was
 * started with --enable-recovery). Task functions are sent as (object
 * file, offset) and must be the same files on every node.
 *
 * mproc_pool_new with this backend returns, besides its usual codes:
 * MPROC_EPOOL (a second MPI pool in this run, or MPI already finalized),
 * -ENOTSUP (the program initialized MPI without MPI_THREAD_MULTIPLE),
 * -EIO (MPI could not be initialized, or a rank's hello failed).
 */
#ifndef MPROC_MPI_H
#define MPROC_MPI_H

#include "pool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The MPI backend, for mproc_pool_opts.backend. Static; never NULL. */
MPROC_API const mproc_pool_backend *mproc_pool_backend_mpi(void);

/* The MPI backend that grows its own servers (docs/mpi.md, "Started
 * alone"): when the program runs as a single MPI process (started alone,
 * `./prog`, or `mpirun -n 1 ./prog`), mproc_pool_new spawns `servers`
 * copies of this program (the same executable and arguments) with
 * MPI_Comm_spawn; each runs main() up to its own mproc_pool_new, which
 * turns it into a server as an mpirun rank would be (it never returns into
 * the program). Started by mpirun with more than one rank, it is
 * mproc_pool_backend_mpi: the ranks serve, nothing is spawned.
 * servers == 0 spawns nothing. Static; never NULL; thread-safe; the count
 * of the last call before the pool is created holds. mproc_pool_new then
 * returns, besides the codes above: -EINVAL (servers < 0), -EIO (Open MPI
 * refused to spawn, or the spawned copies could not join). Not the
 * default: Open MPI 4.1's spawn path is fragile (docs/mpi.md). */
MPROC_API const mproc_pool_backend *mproc_pool_backend_mpi_spawn(int servers);

#ifdef __cplusplus
}
#endif

#endif
