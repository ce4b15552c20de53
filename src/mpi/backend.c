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

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct {
    pthread_mutex_t mu;
    bool used;      /* a pool on MPI was made in this run */
    bool ours;      /* mproc initialized MPI: it finalizes it at exit */
    MPI_Comm comm;  /* the pool's duplicate of MPI_COMM_WORLD, or the merge
                     * of the spawn's intercommunicator */
    MPI_Comm inter; /* MPI_Comm_spawn's intercommunicator (either side) */
    int spawn;      /* mproc_pool_backend_mpi_spawn's count (-1: bad) */
    mpi__relay *rl;
    bool lost; /* a rank was lost: MPI_Finalize would wait for it forever */
} g = {.mu = PTHREAD_MUTEX_INITIALIZER,
       .comm = MPI_COMM_NULL,
       .inter = MPI_COMM_NULL};

/* Ends the pool's communicators: the spawned servers are a job of their
 * own, joined to rank 0 until both sides disconnect (MPI_Finalize would
 * otherwise wait on the connection). */
static void free_comms(void)
{
    if (g.comm != MPI_COMM_NULL)
        MPI_Comm_free(&g.comm);
    if (g.inter != MPI_COMM_NULL)
        MPI_Comm_disconnect(&g.inter);
}

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
        free_comms();
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
        free_comms();
        MPI_Finalize();
    }
    g.ours = false; /* at_exit: nothing left to do */
    exit(0);
}

/* This program's arguments (after argv[0]), for the spawned copies: a
 * NULL-terminated array in one allocation, or NULL (-ENOMEM, -errno). */
static char **own_args(int *err)
{
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *err = -errno;
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    ssize_t k = 0;
    while (buf && (k = read(fd, buf + n, cap - n)) > 0) {
        n += (size_t)k;
        if (n == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    close(fd);
    if (!buf || k < 0) {
        *err = buf ? -EIO : -ENOMEM;
        free(buf);
        return NULL;
    }
    size_t argc = 0;
    for (size_t i = 0; i < n; i++)
        argc += buf[i] == 0;
    /* The pointers first, the strings after them. */
    char **av = malloc((argc + 1) * sizeof *av + n + 1);
    if (!av) {
        free(buf);
        *err = -ENOMEM;
        return NULL;
    }
    char *str = (char *)(av + argc + 1);
    memcpy(str, buf, n);
    str[n] = 0;
    free(buf);
    size_t a = 0;
    for (size_t i = 0; i < n; i += strlen(str + i) + 1)
        av[a++] = str + i;
    av[a] = NULL;
    return av;
}

/* The pool talks on the merge of spawn's intercommunicator (either side;
 * high 0 for rank 0, 1 for the copies, so that rank 0 comes first).
 * Returns 0 or -EIO. */
static int merge(MPI_Comm inter, int high)
{
    MPI_Comm merged = MPI_COMM_NULL;
    MPI_Comm_set_errhandler(inter, MPI_ERRORS_RETURN);
    if (MPI_Intercomm_merge(inter, high, &merged) != MPI_SUCCESS)
        return -EIO;
    MPI_Comm_set_errhandler(merged, MPI_ERRORS_RETURN);
    MPI_Comm_free(&g.comm);
    g.comm = merged;
    g.inter = inter;
    return 0;
}

/* Rank 0 started alone: spawns g.spawn copies of this program (the same
 * file and arguments), which serve, and merges them with it into g.comm
 * (rank 0 first). Returns 0 or -EIO (Open MPI would not spawn). */
static int spawn_servers(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return n < 0 ? -errno : -EIO;
    exe[n] = 0;
    int r = 0;
    char **av = own_args(&r);
    if (!av)
        return r;
    int *errs = calloc((size_t)g.spawn, sizeof *errs);
    if (!errs) {
        free(av);
        return -ENOMEM;
    }
    MPI_Comm inter = MPI_COMM_NULL;
    /* A refusal must come back as a code, not abort the program. */
    MPI_Errhandler old = MPI_ERRHANDLER_NULL;
    MPI_Comm_get_errhandler(MPI_COMM_SELF, &old);
    MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
    /* av[0] is the program's own name: MPI passes the rest. */
    int rc = MPI_Comm_spawn(exe, av[0] ? av + 1 : MPI_ARGV_NULL, g.spawn,
                            MPI_INFO_NULL, 0, MPI_COMM_SELF, &inter, errs);
    if (old != MPI_ERRHANDLER_NULL) {
        MPI_Comm_set_errhandler(MPI_COMM_SELF, old);
        MPI_Errhandler_free(&old);
    }
    free(errs);
    free(av);
    if (rc != MPI_SUCCESS || inter == MPI_COMM_NULL)
        return -EIO;
    if (merge(inter, 0) < 0) {
        MPI_Comm_disconnect(&inter);
        return -EIO;
    }
    return 0;
}

/* Attaches the pool; when this program runs alone, spawns `spawn` servers
 * first. */
static int attach(const mproc_pool_opts *o, void **ctx, int *nremote, int spawn)
{
    if (spawn < 0)
        return -EINVAL;
    pthread_mutex_lock(&g.mu);
    bool used = g.used;
    g.used = true;
    pthread_mutex_unlock(&g.mu);
    if (used)
        return MPROC_EPOOL;
    int r = init_mpi();
    if (r < 0)
        return r;
    MPI_Comm parent = MPI_COMM_NULL;
    MPI_Comm_get_parent(&parent);
    int wsize = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &wsize);
    if (parent != MPI_COMM_NULL)
        r = merge(parent, 1); /* a copy spawned by rank 0: serves it */
    else if (spawn > 0 && wsize == 1)
        r = spawn_servers();
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

static int mpi_attach(const mproc_pool_opts *o, void **ctx, int *nremote)
{
    return attach(o, ctx, nremote, 0);
}

static int mpi_spawn_attach(const mproc_pool_opts *o, void **ctx, int *nremote)
{
    pthread_mutex_lock(&g.mu);
    int spawn = g.spawn;
    pthread_mutex_unlock(&g.mu);
    return attach(o, ctx, nremote, spawn);
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

static const mproc_pool_backend mpi_spawn_backend = {
    .name = "mpi",
    .attach = mpi_spawn_attach,
    .start = mpi_start,
    .status = mpi_status,
    .detach = mpi_detach,
};

const mproc_pool_backend *mproc_pool_backend_mpi(void)
{
    return &mpi_backend;
}

const mproc_pool_backend *mproc_pool_backend_mpi_spawn(int servers)
{
    pthread_mutex_lock(&g.mu);
    if (!g.used)
        g.spawn = servers < 0 ? -1 : servers;
    pthread_mutex_unlock(&g.mu);
    return &mpi_spawn_backend;
}
