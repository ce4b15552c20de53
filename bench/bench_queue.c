/*
 * bench_queue.c - mproc queues against their peers, measured interleaved in
 * one run, medians of several rounds:
 *   - 64-byte messages, 1 producer -> 1 consumer and 2 -> 2, in messages
 *     per second: CPython 3.11 multiprocessing.Queue (bench/py/
 *     bench_queue.py), POSIX message queues (mq_send/mq_receive), a raw
 *     pipe (64-byte writes are atomic, so it is MPMC-safe);
 *   - 1 MiB messages, 1 -> 1, in MB/s, against single-core memcpy of 1 MiB
 *     blocks.
 * Every producer and consumer is its own process (fork). Timing runs from
 * a start signal, after the processes exist, until every consumer is done.
 *
 * usage: bench_queue [ROUNDS] (default 5); MPROC_BENCH_PYTHON overrides
 * the interpreter (default ~/.pyenv/versions/3.11.7/bin/python).
 */
#include <mproc.h>

#include "bench_util.h"

#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

enum { T_QUEUE, T_MQ, T_PIPE };

static long mq_depth; /* the POSIX queue depth that mq_open accepted */

typedef struct transport {
    int kind;
    mproc_queue *q;
    mqd_t mq;
    int pfd[2];
} transport;

static int tr_open(transport *t, int kind, size_t capacity)
{
    memset(t, 0, sizeof *t);
    t->kind = kind;
    if (kind == T_QUEUE) {
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
    return pipe2(t->pfd, O_CLOEXEC) < 0 ? -errno : 0;
}

static void tr_close(transport *t)
{
    if (t->kind == T_QUEUE)
        mproc_queue_free(t->q);
    else if (t->kind == T_MQ)
        mq_close(t->mq);
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
    return write(t->pfd[1], p, n) == (ssize_t)n ? 0 : -1;
}

static int tr_get(transport *t, void *p, size_t cap)
{
    size_t n;
    if (t->kind == T_QUEUE)
        return mproc_queue_get(t->q, p, cap, &n, -1);
    if (t->kind == T_MQ)
        return mq_receive(t->mq, p, cap, NULL) < 0 ? -1 : 0;
    return read(t->pfd[0], p, SMALL) == SMALL ? 0 : -1;
}

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
    for (int i = 0; i < nk; i++) {
        int st;
        waitpid(pids[i], &st, 0);
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
    const char *py = bench_python("bench_queue");
    const char *script =
        py ? bench_py_script("bench_queue", "bench_queue.py") : NULL;
    if (!script)
        py = NULL;

    const long N = 2000000, NPY = 200000, NBIG = 2000;
    double q11[50], q22[50], mq11[50], mq22[50], p11[50], p22[50];
    double py11[50], py22[50], qbig[50], qbig4[50], mc[50];
    for (int r = 0; r < rounds; r++) {
        transport t;
        /* Interleaved: every contender once per round. */
        tr_open(&t, T_QUEUE, 0);
        q11[r] = N / run(&t, 1, 1, N, SMALL) / 1e6;
        q22[r] = N / run(&t, 2, 2, N, SMALL) / 1e6;
        tr_close(&t);
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
           "1 MiB; mq depth %ld; mproc ring 1 MiB (and 4 MiB)\n",
           rounds, N, SMALL, NBIG, mq_depth);
    double m11 = median(q11, rounds), m22 = median(q22, rounds);
    line("64B 1->1 Mmsg/s", m11, "cpython", median(py11, rounds));
    line("64B 1->1 Mmsg/s", m11, "posix_mq", median(mq11, rounds));
    line("64B 1->1 Mmsg/s", m11, "pipe", median(p11, rounds));
    line("64B 2->2 Mmsg/s", m22, "cpython", median(py22, rounds));
    line("64B 2->2 Mmsg/s", m22, "posix_mq", median(mq22, rounds));
    line("64B 2->2 Mmsg/s", m22, "pipe", median(p22, rounds));
    double mcm = median(mc, rounds);
    line("1MiB 1->1 MB/s", median(qbig, rounds), "memcpy", mcm);
    line("1MiB 1->1 MB/s ring4M", median(qbig4, rounds), "memcpy", mcm);
    return 0;
}
