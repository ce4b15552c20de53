/*
 * bench_queue.c - mproc queues against their peers, measured interleaved in
 * one run, medians of several rounds:
 *   - 64-byte messages, 1 producer -> 1 consumer and 2 -> 2, in messages
 *     per second: CPython 3.11 multiprocessing.Queue (bench/py/
 *     bench_queue.py), POSIX message queues (mq_send/mq_receive), a raw
 *     pipe (64-byte writes are atomic, so it is MPMC-safe);
 *   - 64-byte messages 1 -> 1 against the floor: a raw single-producer/
 *     single-consumer ring in shared memory (spsc below), that ring with a
 *     robust process-shared mutex locked and unlocked around every put
 *     and every get (spsc_locked: the plain way to make it repairable
 *     when a producer or consumer is killed, as mproc's queue is; with
 *     its locks it is safe for 2 -> 2 too, and measured so. Not a floor:
 *     it waits for data with the lock held and takes it with
 *     pthread_mutex_lock, and on an idle machine mproc's queue beats it),
 *     and with
 *     mproc_queue_put_many / get_many in batches of BATCH; CPU time per
 *     message (user + system of all the processes) beside wall rates;
 *   - 1 MiB messages, 1 -> 1, in MB/s, against single-core memcpy of 1 MiB
 *     blocks.
 * The RATIO rows at the end feed bench/plot.sh's ratio chart.
 * Every producer and consumer is its own process (fork). Timing runs from
 * a start signal, after the processes exist, until every consumer is done.
 *
 * usage: bench_queue [ROUNDS] [quick] (default 5; quick: only the mproc
 * queue, batched and not, and the ring floor); MPROC_BENCH_PYTHON overrides
 * the interpreter (default ~/.pyenv/versions/3.11.7/bin/python).
 */
#include <mproc.h>

#include "bench_util.h"

#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SMALL 64
#define BIG   ((size_t)1 << 20)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double median(const double *v, int n)
{
    return bench_median(v, n);
}

/* ---- the transports, behind one interface ------------------------------ */

enum { T_QUEUE, T_MQ, T_PIPE, T_SPSC, T_QBATCH, T_SPSCL };

/* Messages per mproc_queue_put_many / get_many call (T_QBATCH). */
#define BATCH 64

/*
 * The floor for 1 -> 1: a raw single-producer/single-consumer ring in
 * shared memory (MAP_SHARED | MAP_ANONYMOUS, inherited through fork), as
 * lean as such a ring gets while still handing over each message on its
 * own: the same 1 MiB of ring and the same frames as an mproc queue (a
 * 16-byte header, the payload padded to 16), one release store of the
 * tail per message and of the head per message, each side caching the
 * other's index and spinning (pause) when it must wait. No locks, no
 * sleeping, no recovery from a dead peer: what mproc adds is the price of
 * those.
 */
#define SPSC_CAP  ((uint64_t)1 << 20)
#define SPSC_LINE 128

typedef struct spsc {
    _Alignas(SPSC_LINE) _Atomic uint64_t tail;
    _Alignas(SPSC_LINE) uint64_t head_cache; /* the producer's */
    _Alignas(SPSC_LINE) _Atomic uint64_t head;
    _Alignas(SPSC_LINE) uint64_t tail_cache; /* the consumer's */
    /* spsc_locked only: each side's robust mutex, on lines of their own. */
    _Alignas(SPSC_LINE) pthread_mutex_t plock;
    _Alignas(SPSC_LINE) pthread_mutex_t clock;
    _Alignas(SPSC_LINE) unsigned char ring[SPSC_CAP];
} spsc;

/* The i-th look that found nothing: pause, and past a few thousand give
 * the CPU away (on a shared machine the other side may need it). */
static inline void spsc_relax(unsigned *i)
{
    if (++*i > 4000) {
        sched_yield();
        return;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static inline void spsc_copy_in(spsc *r, uint64_t pos, const void *p, size_t n)
{
    size_t off = (size_t)(pos & (SPSC_CAP - 1)), first = SPSC_CAP - off;
    if (n <= first) {
        memcpy(r->ring + off, p, n);
    } else {
        memcpy(r->ring + off, p, first);
        memcpy(r->ring, (const unsigned char *)p + first, n - first);
    }
}

static inline void spsc_copy_out(spsc *r, uint64_t pos, void *p, size_t n)
{
    size_t off = (size_t)(pos & (SPSC_CAP - 1)), first = SPSC_CAP - off;
    if (n <= first) {
        memcpy(p, r->ring + off, n);
    } else {
        memcpy(p, r->ring + off, first);
        memcpy((unsigned char *)p + first, r->ring, n - first);
    }
}

static int spsc_put(spsc *r, const void *p, size_t n)
{
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t need = 16 + ((n + 15) & ~(uint64_t)15);
    for (unsigned i = 0; SPSC_CAP - (tail - r->head_cache) < need;) {
        r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
        if (SPSC_CAP - (tail - r->head_cache) < need)
            spsc_relax(&i);
    }
    uint64_t hdr[2] = {n, 0};
    spsc_copy_in(r, tail, hdr, sizeof hdr);
    spsc_copy_in(r, tail + 16, p, n);
    atomic_store_explicit(&r->tail, tail + need, memory_order_release);
    return 0;
}

static int spsc_get(spsc *r, void *p, size_t cap)
{
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    for (unsigned i = 0; r->tail_cache == head;) {
        r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (r->tail_cache == head)
            spsc_relax(&i);
    }
    uint64_t hdr[2];
    spsc_copy_out(r, head, hdr, sizeof hdr);
    size_t n = (size_t)hdr[0];
    if (n > cap)
        return -1;
    spsc_copy_out(r, head + 16, p, n);
    atomic_store_explicit(&r->head, head + 16 + ((n + 15) & ~(uint64_t)15),
                          memory_order_release);
    return 0;
}

static long mq_depth; /* the POSIX queue depth that mq_open accepted */

typedef struct transport {
    int kind;
    mproc_queue *q;
    mqd_t mq;
    int pfd[2];
    spsc *ring;
} transport;

static int tr_open(transport *t, int kind, size_t capacity)
{
    memset(t, 0, sizeof *t);
    t->kind = kind;
    if (kind == T_QUEUE || kind == T_QBATCH) {
        mproc_queue_opts o = {MPROC_QUEUE, 0, capacity};
        return mproc_queue_new_opts(&t->q, &o);
    }
    if (kind == T_MQ) {
        char name[64];
        snprintf(name, sizeof name, "/mproc-bench-%d", (int)getpid());
        /* As deep as allowed: 256 (root may exceed msg_max), else 10. */
        long depths[] = {256, 10};
        for (int i = 0; i < 2; i++) {
            struct mq_attr a = {0, depths[i], SMALL, 0, {0}};
            t->mq =
                mq_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600, &a);
            if (t->mq != (mqd_t)-1) {
                mq_unlink(name);
                mq_depth = depths[i];
                return 0;
            }
        }
        return -errno;
    }
    if (kind == T_SPSC || kind == T_SPSCL) {
        void *m = mmap(NULL, sizeof(spsc), PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return -errno;
        t->ring = m;
        pthread_mutexattr_t a;
        pthread_mutexattr_init(&a);
        pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
        pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
        pthread_mutex_init(&t->ring->plock, &a);
        pthread_mutex_init(&t->ring->clock, &a);
        pthread_mutexattr_destroy(&a);
        return 0;
    }
    return pipe2(t->pfd, O_CLOEXEC) < 0 ? -errno : 0;
}

static void tr_close(transport *t)
{
    if (t->kind == T_QUEUE || t->kind == T_QBATCH)
        mproc_queue_free(t->q);
    else if (t->kind == T_MQ)
        mq_close(t->mq);
    else if (t->kind == T_SPSC || t->kind == T_SPSCL)
        munmap(t->ring, sizeof(spsc));
    else {
        close(t->pfd[0]);
        close(t->pfd[1]);
    }
}

static int tr_put(transport *t, const void *p, size_t n)
{
    if (t->kind == T_QUEUE)
        return mproc_queue_put(t->q, p, n, -1);
    if (t->kind == T_MQ)
        return mq_send(t->mq, p, n, 0);
    if (t->kind == T_SPSC)
        return spsc_put(t->ring, p, n);
    if (t->kind == T_SPSCL) {
        pthread_mutex_lock(&t->ring->plock);
        int rc = spsc_put(t->ring, p, n);
        pthread_mutex_unlock(&t->ring->plock);
        return rc;
    }
    return write(t->pfd[1], p, n) == (ssize_t)n ? 0 : -1;
}

static int tr_get(transport *t, void *p, size_t cap)
{
    size_t n;
    if (t->kind == T_QUEUE)
        return mproc_queue_get(t->q, p, cap, &n, -1);
    if (t->kind == T_MQ)
        return mq_receive(t->mq, p, cap, NULL) < 0 ? -1 : 0;
    if (t->kind == T_SPSC)
        return spsc_get(t->ring, p, cap);
    if (t->kind == T_SPSCL) {
        pthread_mutex_lock(&t->ring->clock);
        int rc = spsc_get(t->ring, p, cap);
        pthread_mutex_unlock(&t->ring->clock);
        return rc;
    }
    return read(t->pfd[0], p, SMALL) == SMALL ? 0 : -1;
}

/* A producer's and a consumer's loops with put_many/get_many: exit codes. */
static int batch_put(mproc_queue *q, const unsigned char *buf, size_t size,
                     long n)
{
    const void *msgs[BATCH];
    size_t lens[BATCH];
    for (int k = 0; k < BATCH; k++) {
        msgs[k] = buf;
        lens[k] = size;
    }
    while (n > 0) {
        size_t want = n < BATCH ? (size_t)n : BATCH;
        int rc = mproc_queue_put_many(q, msgs, lens, want, -1);
        if (rc <= 0)
            return 3;
        n -= rc;
    }
    return 0;
}

static int batch_get(mproc_queue *q, unsigned char *buf, size_t size, long n)
{
    unsigned char *many = malloc(size * BATCH);
    size_t lens[BATCH];
    if (!many)
        return 2;
    while (n > 0) {
        size_t want = n < BATCH ? (size_t)n : BATCH;
        int rc = mproc_queue_get_many(q, many, size * want, lens, want, -1);
        if (rc <= 0)
            return 3;
        n -= rc;
    }
    memcpy(buf, many, size);
    free(many);
    return 0;
}

/* CPU seconds (user + system) of the last run's processes, all of them. */
static double last_cpu;

/*
 * Runs np producers and nc consumers moving n messages of size bytes;
 * returns the seconds from the start signal until all are done.
 */
static double run(transport *t, int np, int nc, long n, size_t size)
{
    int ready[2], go[2];
    if (pipe(ready) < 0 || pipe(go) < 0)
        return -1;
    pid_t pids[8];
    int nk = 0;
    for (int i = 0; i < np + nc; i++) {
        pid_t pid = fork();
        if (pid < 0)
            return -1;
        if (pid == 0) {
            unsigned char *buf = malloc(size);
            memset(buf, 'x', size);
            char c = 0;
            close(ready[0]);
            close(go[1]);
            if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) < 0)
                _exit(2);
            long mine = i < np ? n / np : n / nc;
            if (t->kind == T_QBATCH)
                _exit(i < np ? batch_put(t->q, buf, size, mine)
                             : batch_get(t->q, buf, size, mine));
            for (long k = 0; k < mine; k++) {
                int rc = i < np ? tr_put(t, buf, size) : tr_get(t, buf, size);
                if (rc < 0)
                    _exit(3);
            }
            _exit(0);
        }
        pids[nk++] = pid;
    }
    close(ready[1]);
    close(go[0]);
    char c;
    for (int i = 0; i < nk; i++)
        if (read(ready[0], &c, 1) != 1)
            return -1;
    double t0 = now();
    close(go[1]); /* everybody's read returns 0: go */
    int ok = 1;
    last_cpu = 0;
    for (int i = 0; i < nk; i++) {
        int st;
        struct rusage ru;
        wait4(pids[i], &st, 0, &ru);
        last_cpu += (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
        ok &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    double dt = now() - t0;
    close(ready[0]);
    return ok ? dt : -1;
}

/* bench/ in the source tree, from this file's path. */
static double python_rate(const char *py, const char *script, int np, int nc,
                          long n)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s %d %d %ld %d 2>&1", py, script, np, nc, n,
             SMALL);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    double r = -1;
    if (fscanf(f, "%lf", &r) != 1)
        r = -1;
    pclose(f);
    return r;
}

static double memcpy_rate(long reps)
{
    unsigned char *a = malloc(BIG), *b = malloc(BIG);
    memset(a, 1, BIG);
    memset(b, 2, BIG);
    double t0 = now();
    for (long i = 0; i < reps; i++) {
        memcpy(i % 2 ? a : b, i % 2 ? b : a, BIG);
        __asm__ __volatile__("" : : "r"(a), "r"(b) : "memory");
    }
    double dt = now() - t0;
    free(a);
    free(b);
    return (double)reps * BIG / dt / 1e6;
}

static void line(const char *what, double mine, const char *peer, double theirs)
{
    if (theirs > 0)
        printf("%-24s mproc %10.3f   %-9s %10.3f   ratio %8.2fx\n", what, mine,
               peer, theirs, mine / theirs);
    else
        printf("%-24s mproc %10.3f   %-9s unavailable\n", what, mine, peer);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    if (rounds < 1 || rounds > 50)
        rounds = 5;
    /* "quick": only the mproc queue and its floor (while iterating). */
    bool quick = argc > 2 && strcmp(argv[2], "quick") == 0;
    const char *py = quick ? NULL : bench_python("bench_queue");
    const char *script =
        py ? bench_py_script("bench_queue", "bench_queue.py") : NULL;
    if (!script)
        py = NULL;

    const long N = 2000000, NPY = 200000, NBIG = 2000;
    double q11[50], q22[50], mq11[50], mq22[50], p11[50], p22[50], s11[50];
    double b11[50], b22[50], cq11[50], cs11[50], cb11[50], cq22[50];
    double py11[50], py22[50], qbig[50], qbig4[50], mc[50];
    double l11[50], cl11[50], l22[50];
    for (int r = 0; r < rounds; r++) {
        transport t;
        /* Interleaved: every contender once per round. */
        tr_open(&t, T_QUEUE, 0);
        q11[r] = N / run(&t, 1, 1, N, SMALL) / 1e6;
        cq11[r] = last_cpu / N * 1e9;
        q22[r] = N / run(&t, 2, 2, N, SMALL) / 1e6;
        cq22[r] = last_cpu / N * 1e9;
        tr_close(&t);
        tr_open(&t, T_QBATCH, 0);
        b11[r] = N / run(&t, 1, 1, N, SMALL) / 1e6;
        cb11[r] = last_cpu / N * 1e9;
        b22[r] = N / run(&t, 2, 2, N, SMALL) / 1e6;
        tr_close(&t);
        tr_open(&t, T_SPSC, 0);
        s11[r] = N / run(&t, 1, 1, N, SMALL) / 1e6;
        cs11[r] = last_cpu / N * 1e9;
        tr_close(&t);
        tr_open(&t, T_SPSCL, 0);
        l11[r] = N / run(&t, 1, 1, N, SMALL) / 1e6;
        cl11[r] = last_cpu / N * 1e9;
        /* With a lock per side the ring is safe for 2 -> 2 too. */
        l22[r] = N / run(&t, 2, 2, N, SMALL) / 1e6;
        tr_close(&t);
        if (quick)
            continue;
        if (tr_open(&t, T_MQ, 0) == 0) {
            mq11[r] = N / run(&t, 1, 1, N, SMALL) / 1e6;
            mq22[r] = N / run(&t, 2, 2, N, SMALL) / 1e6;
            tr_close(&t);
        } else {
            mq11[r] = mq22[r] = -1;
        }
        tr_open(&t, T_PIPE, 0);
        p11[r] = N / run(&t, 1, 1, N, SMALL) / 1e6;
        p22[r] = N / run(&t, 2, 2, N, SMALL) / 1e6;
        tr_close(&t);
        py11[r] = py ? python_rate(py, script, 1, 1, NPY) / 1e6 : -1;
        py22[r] = py ? python_rate(py, script, 2, 2, NPY) / 1e6 : -1;
        tr_open(&t, T_QUEUE, 0);
        qbig[r] = (double)NBIG * BIG / run(&t, 1, 1, NBIG, BIG) / 1e6;
        tr_close(&t);
        tr_open(&t, T_QUEUE, (size_t)4 << 20);
        qbig4[r] = (double)NBIG * BIG / run(&t, 1, 1, NBIG, BIG) / 1e6;
        tr_close(&t);
        mc[r] = memcpy_rate(NBIG * 2);
    }
    printf("bench_queue: %d rounds, medians; %ld x %d-byte messages, %ld x "
           "1 MiB; mq depth %ld; mproc ring 1 MiB (and 4 MiB); batches of "
           "%d\n",
           rounds, N, SMALL, NBIG, mq_depth, BATCH);
    double m11 = median(q11, rounds), m22 = median(q22, rounds);
    double mb11 = median(b11, rounds), ms11 = median(s11, rounds);
    line("64B 1->1 Mmsg/s", m11, "spsc_ring", ms11);
    double ml11 = median(l11, rounds);
    line("64B 1->1 Mmsg/s", m11, "spsc_locked", ml11);
    line("64B 1->1 batch Mmsg/s", mb11, "spsc_ring", ms11);
    printf("%-24s mproc %10.1f   batch %10.1f   spsc_ring %6.1f   "
           "spsc_locked %6.1f   (CPU ns per message, both sides)\n",
           "64B 1->1 CPU ns/msg", median(cq11, rounds), median(cb11, rounds),
           median(cs11, rounds), median(cl11, rounds));
    printf("%-24s mproc %10.1f   (CPU ns per message, all four)\n",
           "64B 2->2 CPU ns/msg", median(cq22, rounds));
    line("64B 2->2 Mmsg/s", m22, "spsc_locked", median(l22, rounds));
    line("64B 2->2 batch Mmsg/s", median(b22, rounds), "mproc", m22);
    double c11 = quick ? 0 : median(py11, rounds);
    double c22 = quick ? 0 : median(py22, rounds);
    bench_ratio_row("Queue 64B 1->1", m11 / ms11, c11 > 0 ? m11 / c11 : 0);
    bench_ratio_row("Queue 64B 1->1 / locked ring", m11 / ml11, 0);
    bench_ratio_row("Queue 64B 1->1 batch", mb11 / ms11,
                    c11 > 0 ? mb11 / c11 : 0);
    bench_ratio_row("Queue 64B 2->2", quick ? 0 : m22 / median(p22, rounds),
                    c22 > 0 ? m22 / c22 : 0);
    if (quick)
        return 0;
    line("64B 1->1 Mmsg/s", m11, "cpython", median(py11, rounds));
    line("64B 1->1 batch Mmsg/s", mb11, "cpython", median(py11, rounds));
    line("64B 1->1 Mmsg/s", m11, "posix_mq", median(mq11, rounds));
    line("64B 1->1 Mmsg/s", m11, "pipe", median(p11, rounds));
    line("64B 2->2 Mmsg/s", m22, "cpython", median(py22, rounds));
    line("64B 2->2 batch Mmsg/s", median(b22, rounds), "cpython",
         median(py22, rounds));
    line("64B 2->2 Mmsg/s", m22, "posix_mq", median(mq22, rounds));
    line("64B 2->2 Mmsg/s", m22, "pipe", median(p22, rounds));
    double mcm = median(mc, rounds);
    line("1MiB 1->1 MB/s", median(qbig, rounds), "memcpy", mcm);
    line("1MiB 1->1 MB/s ring4M", median(qbig4, rounds), "memcpy", mcm);
    return 0;
}
