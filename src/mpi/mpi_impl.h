/*
 * mpi/mpi_impl.h - what the files of the MPI backend share: the messages
 * between rank 0 and the serving ranks, and the two halves.
 *
 * Rank 0's pool drives each serving rank through a few channels (slots of
 * the pool, pool/engine.h): relay.c sits on the far end of them, forwards
 * what the pool's thread sends a slot (the worker protocol of
 * pool/pool_impl.h, with out-of-line items made inline and the records of a
 * chunk attached) to the rank, and writes what comes back into the slot's
 * ring. server.c, on each serving rank, runs those messages in a local
 * pool and answers each one, per slot in order, with ring entries.
 *
 * Messages (tags), on a duplicate of MPI_COMM_WORLD:
 *   T_HELLO  server -> 0   mpi__hello
 *   T_MSG    0 -> server   u32 slot (on that rank), u32 0, then one pool
 *                          message (pool__hdr ...); items inline
 *   T_RES    server -> 0   u32 slot, u32 0, then ring entries (pool__entry
 *                          + bytes padded to 8); a records chunk's entry
 *                          carries its output records
 *   T_EXITED server -> 0   u32 slot, u32 0: the slot's PM_EXIT was reached
 *   T_STOP   0 -> server   stop serving; an int32, 1 when a rank was lost
 *                          (0 -> 0: wakes rank 0's rx)
 *   T_BYE    server -> 0   the last message of a server
 *   T_ADDR   0 -> server   mpi__addr: where rank 0 listens for the
 *                          servers' lifelines
 *
 * Lifelines: each server connects a TCP socket to rank 0 and writes its
 * rank; rank 0 reads nothing more from it, so end of file (the server's
 * process ended) or a keepalive's failure (its node is unreachable) tells
 * it the rank is lost, which MPI 4.1 itself cannot tell.
 */
#ifndef MPROC_MPI_IMPL_H
#define MPROC_MPI_IMPL_H

#include "pool/engine.h"
#include "mproc/mpi.h"

#include <mpi.h>

enum { T_HELLO = 1, T_MSG, T_RES, T_EXITED, T_STOP, T_BYE, T_ADDR };

#define MPI__MAX_ADDRS 16

typedef struct mpi__addr {
    uint16_t port; /* network order */
    uint16_t n;
    uint32_t ip[MPI__MAX_ADDRS]; /* IPv4, network order, loopback first */
} mpi__addr;

typedef struct mpi__hello {
    int32_t nproc; /* workers of its local pool; < 0: cannot serve (code) */
    int32_t pid;
    char host[64];
} mpi__hello;

/* The prefix of T_MSG, T_RES and T_EXITED. */
typedef struct mpi__pre {
    uint32_t slot;
    uint32_t pad;
} mpi__pre;

/* A records chunk as a serving rank's worker gets it (an apply of
 * mpi__records_task): this, the kernel's reference padded to 8, then the
 * input records. The result is the output records. */
typedef struct mpi__rtask {
    uint64_t count, first, in_size, out_size;
    uint32_t reflen, pad;
} mpi__rtask;

/* The bytes task that runs a records chunk in a serving rank's worker. */
int mpi__records_task(const void *in, size_t len, mproc_out *out);

/* ---- relay.c (rank 0) --------------------------------------------------- */

typedef struct mpi__relay mpi__relay;

/* Channels for every serving rank (hello[r] from rank r; slots[r] of
 * them; its lifeline life[r], taken, or -1), and the threads that carry
 * them. Returns 0 or -errno. */
int mpi__relay_new(MPI_Comm comm, int size, const mpi__hello *hello,
                   const int *slots, const int *life, mpi__relay **out);
/* Slot k begins (see struct mproc_pool_backend.start). */
int mpi__relay_start(mpi__relay *rl, int k, pool__slot *slot,
                     unsigned char *ring, int *chan, int *sentinel);
/* How slot k ended (0: after PM_EXIT). */
int mpi__relay_status(mpi__relay *rl, int k, char *buf, size_t n);
/* Stops the servers (each answers T_BYE), then the threads; frees rl.
 * Returns true when a rank was lost: MPI_Finalize, which waits for every
 * rank, would then hang (Open MPI 4.1), so nobody calls it. */
bool mpi__relay_free(mpi__relay *rl);

/* ---- lifeline.c ------------------------------------------------------------
 */

/* Rank 0: listens for the lifelines of ranks 1..size-1, tells them where
 * (T_ADDR) and stores each one's socket in life[r] (-1 when it did not
 * call within a few seconds). Returns 0 or -errno. */
int mpi__lifelines_accept(MPI_Comm comm, int size, int *life);
/* A server: connects its lifeline to rank 0 (the fd, or -1). */
int mpi__lifeline_connect(MPI_Comm comm, int rank);

/* ---- server.c (other ranks) --------------------------------------------- */

/* Serves rank 0 until T_STOP (opts: the pool's options on this rank),
 * then returns whether rank 0 said a rank was lost; the caller exits. */
bool mpi__serve(MPI_Comm comm, const mproc_pool_opts *opts);

#endif
