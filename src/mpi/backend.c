/*
 * mpi/backend.c - the MPI backend of the pool (mproc_pool_backend_mpi):
 * at the pool's creation it initializes MPI if the program has not, and
 * splits the ranks: every rank but 0 serves (server.c) and exits when
 * done; rank 0 collects each server's hello (its workers, pid and host),
 * gives the pool max(2, workers) slots per serving rank and carries them
 * (relay.c). MPI is finalized at exit when mproc initialized it, after the
 * servers were stopped (a pool never freed stops them then).
 */
#include "mpi/mpi_impl.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct {
    pthread_mutex_t mu;
    bool used;     /* a pool on MPI was made in this run */
    bool ours;     /* mproc initialized MPI: it finalizes it at exit */
    MPI_Comm comm; /* the pool's duplicate of MPI_COMM_WORLD */
    mpi__relay *rl;
    bool lost; /* a rank was lost: MPI_Finalize would wait for it forever */
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .comm = MPI_COMM_NULL};

/* At exit: servers still serving a pool never freed are stopped first;
 * then MPI ends, if it was ours to end. */
static void at_exit(void)
{
    pthread_mutex_lock(&g.mu);
    mpi__relay *rl = g.rl;
    g.rl = NULL;
    pthread_mutex_unlock(&g.mu);
    if (rl && mpi__relay_free(rl))
        g.lost = true;
    int fin = 0;
    MPI_Finalized(&fin);
    /* After a loss Open MPI 4.1's MPI_Finalize waits for the lost rank
     * forever: end without it (mpirun then reports that rank 0 did not
     * finalize, which is true). */
    if (g.ours && !fin && !g.lost) {
        if (g.comm != MPI_COMM_NULL)
            MPI_Comm_free(&g.comm);
        MPI_Finalize();
    }
}

/* MPI, with threads. Returns 0 or a negative code. */
static int init_mpi(void)
{
    int inited = 0, fin = 0, provided = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    if (fin)
        return MPROC_EPOOL;
    if (!inited) {
        /* A rank's server and rank 0's relay wait in MPI_Probe, which
         * spins: let it give the core to the workers whenever they can
         * run (unless the user chose otherwise). */
        setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0);
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided) !=
            MPI_SUCCESS)
            return -EIO;
        g.ours = true;
        atexit(at_exit);
    } else {
        MPI_Query_thread(&provided);
    }
    if (provided < MPI_THREAD_MULTIPLE)
        return -ENOTSUP;
    if (MPI_Comm_dup(MPI_COMM_WORLD, &g.comm) != MPI_SUCCESS)
        return -EIO;
    MPI_Comm_set_errhandler(g.comm, MPI_ERRORS_RETURN);
    return 0;
}

/* A serving rank: serve, then end the process (the documented contract). */
static void become_server(const mproc_pool_opts *o)
{
    mproc_pool_opts lo = *o;
    lo.backend = NULL;
    bool lost = mpi__serve(g.comm, &lo);
    /* Nothing of the program runs here any more: MPI ends, whoever
     * started it (unless a rank was lost: see at_exit). */
    if (!lost) {
        MPI_Comm_free(&g.comm);
        MPI_Finalize();
    }
    g.ours = false; /* at_exit: nothing left to do */
    exit(0);
}

static int mpi_attach(const mproc_pool_opts *o, void **ctx, int *nremote)
{
    pthread_mutex_lock(&g.mu);
    bool used = g.used;
    g.used = true;
    pthread_mutex_unlock(&g.mu);
    if (used)
        return MPROC_EPOOL;
    int r = init_mpi();
    if (r < 0)
        return r;
    int rank = 0, size = 1;
    MPI_Comm_rank(g.comm, &rank);
    MPI_Comm_size(g.comm, &size);
    if (rank != 0)
        become_server(o);
    mpi__hello *hello = calloc((size_t)size, sizeof *hello);
    int *slots = calloc((size_t)size, sizeof *slots);
    r = hello && slots ? 0 : -ENOMEM;
    int total = 0;
    for (int k = 1; k < size && r == 0; k++) {
        /* Every server says hello, even one that cannot serve. */
        if (MPI_Recv(&hello[k], sizeof *hello, MPI_BYTE, k, T_HELLO, g.comm,
                     MPI_STATUS_IGNORE) != MPI_SUCCESS)
            r = -EIO;
        hello[k].host[sizeof hello[k].host - 1] = 0;
        int np = hello[k].nproc;
        slots[k] = np <= 0 ? 0 : np < 2 ? 2 : np;
        total += slots[k];
    }
    int *life = calloc((size_t)size, sizeof *life);
    if (r == 0 && !life)
        r = -ENOMEM;
    if (r == 0)
        r = mpi__lifelines_accept(g.comm, size, life);
    mpi__relay *rl = NULL;
    if (r == 0)
        r = mpi__relay_new(g.comm, size, hello, slots, life, &rl);
    free(life); /* (the relay took the lifelines, even when it failed) */
    free(hello);
    free(slots);
    if (r < 0)
        return r;
    pthread_mutex_lock(&g.mu);
    g.rl = rl;
    pthread_mutex_unlock(&g.mu);
    *ctx = rl;
    *nremote = total;
    return 0;
}

static int mpi_start(void *ctx, int k, pool__slot *slot, unsigned char *ring,
                     int *chan, int *sentinel)
{
    return mpi__relay_start(ctx, k, slot, ring, chan, sentinel);
}

static int mpi_status(void *ctx, int k, char *buf, size_t n)
{
    return mpi__relay_status(ctx, k, buf, n);
}

static void mpi_detach(void *ctx)
{
    pthread_mutex_lock(&g.mu);
    bool mine = g.rl == ctx;
    g.rl = NULL;
    pthread_mutex_unlock(&g.mu);
    if (mine && mpi__relay_free(ctx))
        g.lost = true;
}

static const mproc_pool_backend mpi_backend = {
    .name = "mpi",
    .attach = mpi_attach,
    .start = mpi_start,
    .status = mpi_status,
    .detach = mpi_detach,
};

const mproc_pool_backend *mproc_pool_backend_mpi(void)
{
    return &mpi_backend;
}
