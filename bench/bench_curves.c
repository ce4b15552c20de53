/*
 * bench_curves.c - how costs grow with the work (issue 15, section 3), as
 * data for the charts bench/plot.sh draws: each curve from one run, one
 * block per curve, "# name" then a header line, whitespace-separated
 * columns (gnuplot reads a block by its index). The machine has 2 cores:
 * past 2 processes the curves measure overhead (time-sharing), not
 * parallel speed-up.
 *
 *   queue_pc       64-byte messages, k producers -> k consumers, 1 -> k and
 *                  k -> 1, k = 1..8: M messages/s (put/get one by one, and
 *                  k -> k with put_many/get_many batches of 64)
 *   queue_size     1 -> 1 against the message size, 8 B .. 1 MiB: M
 *                  messages/s and MB/s (default 1 MiB ring)
 *   process_rss    start + join of a child that returns at once against
 *                  the parent's resident size, 0 .. 1 GiB (touched
 *                  anonymous memory): us per start + join for fork, spawn,
 *                  forkserver and a raw fork() + waitpid()
 *   pool_size      Pool(2) map against the item size, 8 B .. 1 MiB (each
 *                  task returns 8 bytes): items/s and MB/s of input
 *   pool_workers   map of 10^5 8-byte items against the number of workers,
 *                  1 .. 8: items/s
 *   pool_rss       resident and proportional set size (VmRSS, Pss of
 *                  /proc/PID/smaps_rollup) of each idle worker of Pool(4),
 *                  fork start method, in KiB, beside CPython 3.13's
 *                  (bench/py/curves_bench.py)
 *
 * Usage: bench_curves [-q] [-P]   (-q: fewer points and samples; -P: no
 * CPython). Environment: MPROC_BENCH_PYTHON (default ~/.pyenv/versions/
 * 3.13.0/bin/python), MPROC_BENCH_PY_DIR.
 */
#include <mproc.h>

#include "bench_util.h"

#include <errno.h>
#include <getopt.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_ARG "--bench-curves-exit"
#define BATCH    64

extern char **environ;

static bool quick;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_curves: %s failed: %d %s\n", what, rc,
            mproc_strerror(rc));
    exit(1);
}

/* ---- queues ------------------------------------------------------------ */

/* np producers and nc consumers move n messages of size bytes (batches of
 * BATCH when batch); returns messages per second from a start signal. */
static double queue_run(int np, int nc, long n, size_t size, bool batch)
{
    mproc_queue *q;
    int rc = mproc_queue_new(&q, 0);
    if (rc < 0)
        die("queue", rc);
    int go[2];
    if (pipe(go) < 0)
        die("pipe", -errno);
    pid_t pids[16];
    for (int i = 0; i < np + nc; i++) {
        pids[i] = fork();
        if (pids[i] < 0)
            die("fork", -errno);
        if (pids[i] > 0)
            continue;
        close(go[1]);
        char c;
        if (read(go[0], &c, 1) < 0)
            _exit(2);
        bool prod = i < np;
        long mine = prod ? n / np : n / nc;
        size_t bsz = batch ? BATCH : 1;
        unsigned char *buf = calloc(bsz, size ? size : 1);
        const void *msgs[BATCH];
        size_t lens[BATCH];
        for (size_t k = 0; k < bsz; k++) {
            msgs[k] = buf + k * size;
            lens[k] = size;
        }
        while (mine > 0) {
            size_t want = (size_t)mine < bsz ? (size_t)mine : bsz;
            int got;
            if (!batch) {
                size_t len;
                got = prod ? mproc_queue_put(q, buf, size, -1)
                           : mproc_queue_get(q, buf, size, &len, -1);
                got = got == 0 ? 1 : got;
            } else if (prod) {
                got = mproc_queue_put_many(q, msgs, lens, want, -1);
            } else {
                got = mproc_queue_get_many(q, buf, size * want, lens, want, -1);
            }
            if (got < 1)
                _exit(3);
            mine -= got;
        }
        _exit(0);
    }
    close(go[0]);
    double t0 = now();
    close(go[1]);
    bool ok = true;
    for (int i = 0; i < np + nc; i++) {
        int st;
        waitpid(pids[i], &st, 0);
        ok &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    double dt = now() - t0;
    mproc_queue_free(q);
    if (!ok)
        die("queue run", -1);
    return (double)n / dt;
}

static void curve_queue_pc(void)
{
    long n = quick ? 200000 : 800000;
    printf("# queue_pc\nk  kk_Mmsg_s  1k_Mmsg_s  k1_Mmsg_s  kk_batch_Mmsg_s\n");
    for (int k = 1; k <= 8; k++) {
        long nk = n / (k * BATCH) * (k * BATCH); /* divisible */
        printf("%d %.3f %.3f %.3f %.3f\n", k,
               queue_run(k, k, nk, 64, false) / 1e6,
               queue_run(1, k, nk, 64, false) / 1e6,
               queue_run(k, 1, nk, 64, false) / 1e6,
               queue_run(k, k, nk, 64, true) / 1e6);
        fflush(stdout);
    }
    printf("\n\n");
}

/* The sizes of the size curves: 8 B, 32 B, ... 512 KiB, then 1 MiB. */
static size_t next_size(size_t s)
{
    return s == ((size_t)1 << 19) ? s * 2 : s * 4;
}

/* Items of s bytes to move about `bytes` in all, within [lo, hi]. */
static long count_for(size_t s, double bytes, long lo, long hi)
{
    long n = (long)(bytes / (double)s);
    return n < lo ? lo : n > hi ? hi : n;
}

static void curve_queue_size(void)
{
    printf("# queue_size\nbytes  Mmsg_s  MB_s\n");
    for (size_t s = 8; s <= ((size_t)1 << 20); s = next_size(s)) {
        long n = count_for(s, quick ? 64e6 : 256e6, 200, 1000000);
        double r = queue_run(1, 1, n, s, false);
        printf("%zu %.4f %.1f\n", s, r / 1e6, r * (double)s / 1e6);
        fflush(stdout);
    }
    printf("\n\n");
}

/* ---- process start against the parent's size ----------------------------- */

static int t_return(const mproc_args *a)
{
    (void)a;
    return 0;
}

static double start_join_us(mproc_start_method m, int ops)
{
    double t0 = now();
    for (int i = 0; i < ops; i++) {
        mproc_process *p;
        int rc = mproc_process_new(&p, t_return, NULL);
        if (rc == 0)
            rc = mproc_process_set_start_method(p, m);
        if (rc == 0)
            rc = mproc_process_start(p);
        if (rc == 0)
            rc = mproc_process_join(p, -1);
        if (rc < 0)
            die("start", rc);
        mproc_process_free(p);
    }
    return (now() - t0) / ops * 1e6;
}

static double raw_fork_us(int ops)
{
    double t0 = now();
    for (int i = 0; i < ops; i++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        waitpid(pid, NULL, 0);
    }
    return (now() - t0) / ops * 1e6;
}

static double raw_spawn_us(int ops)
{
    char *argv[] = {(char *)"/proc/self/exe", (char *)EXIT_ARG, NULL};
    double t0 = now();
    for (int i = 0; i < ops; i++) {
        pid_t pid;
        if (posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ))
            die("posix_spawn", -errno);
        waitpid(pid, NULL, 0);
    }
    return (now() - t0) / ops * 1e6;
}

static void curve_process_rss(void)
{
    printf("# process_rss\nrss_MiB  fork_us  spawn_us  forkserver_us  "
           "raw_fork_us  raw_spawn_us\n");
    size_t sizes[] = {0, 64, 256, 512, 1024};
    int ops = quick ? 10 : 40;
    unsigned char *mem = NULL;
    size_t have = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t want = sizes[i] << 20;
        if (want > have) {
            if (mem)
                munmap(mem, have);
            mem = mmap(NULL, want, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (mem == MAP_FAILED)
                die("mmap", -errno);
            memset(mem, 1, want); /* resident */
            have = want;
        }
        printf("%zu %.1f %.1f %.1f %.1f %.1f\n", sizes[i],
               start_join_us(MPROC_START_FORK, ops),
               start_join_us(MPROC_START_SPAWN, ops / 2),
               start_join_us(MPROC_START_FORKSERVER, ops), raw_fork_us(ops),
               raw_spawn_us(ops / 2));
        fflush(stdout);
    }
    if (mem)
        munmap(mem, have);
    printf("\n\n");
}

/* ---- pool ------------------------------------------------------------------
 */

static int t_len(const void *in, size_t len, mproc_out *out)
{
    (void)in;
    uint64_t v = len;
    return mproc_out_write(out, &v, sizeof v);
}

/* Items per second of a map of n items of size bytes on pool. */
static double map_rate(mproc_pool *pool, size_t size, size_t n)
{
    unsigned char *data = calloc(1, size);
    mproc_iov *items = malloc(n * sizeof *items);
    if (!data || !items)
        die("malloc", -ENOMEM);
    for (size_t i = 0; i < n; i++)
        items[i] = (mproc_iov){data, size};
    mproc_results *r;
    double t0 = now();
    int rc = mproc_pool_map(pool, t_len, items, n, NULL, &r);
    double dt = now() - t0;
    if (rc < 0)
        die("map", rc);
    mproc_results_free(r);
    free(items);
    free(data);
    return (double)n / dt;
}

static mproc_pool *pool_of(int workers)
{
    mproc_pool_opts o = {.processes = workers, .method = MPROC_START_FORK};
    mproc_pool *pool;
    int rc = mproc_pool_new(&pool, &o);
    if (rc < 0)
        die("pool", rc);
    return pool;
}

static void curve_pool_size(void)
{
    printf("# pool_size\nbytes  items_s  MB_s\n");
    mproc_pool *pool = pool_of(2);
    for (size_t s = 8; s <= ((size_t)1 << 20); s = next_size(s)) {
        size_t n = (size_t)count_for(s, quick ? 32e6 : 128e6, 64, 200000);
        map_rate(pool, s, n < 1000 ? n : 1000); /* warm */
        double r = map_rate(pool, s, n);
        printf("%zu %.0f %.2f\n", s, r, r * (double)s / 1e6);
        fflush(stdout);
    }
    mproc_pool_free(pool);
    printf("\n\n");
}

static void curve_pool_workers(void)
{
    printf("# pool_workers\nworkers  items_s\n");
    size_t n = quick ? 20000 : 100000;
    for (int w = 1; w <= 8; w++) {
        mproc_pool *pool = pool_of(w);
        map_rate(pool, 8, 1000);
        printf("%d %.0f\n", w, map_rate(pool, 8, n));
        fflush(stdout);
        mproc_pool_free(pool);
    }
    printf("\n\n");
}

/* VmRSS and Pss of pid in KiB (-1 when unreadable). */
static void rss_of(pid_t pid, long *rss, long *pss)
{
    char path[64], line[256];
    *rss = *pss = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (f) {
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "VmRSS: %ld", rss) == 1)
                break;
        fclose(f);
    }
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    f = fopen(path, "re");
    if (f) {
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "Pss: %ld", pss) == 1)
                break;
        fclose(f);
    }
}

static void curve_pool_rss(const char *py, const char *script)
{
    printf("# pool_rss\nwho  rss_KiB  pss_KiB\n");
    mproc_pool *pool = pool_of(4);
    map_rate(pool, 8, 1000); /* every worker has run tasks */
    pid_t pids[4];
    int n = mproc_pool_pids(pool, pids, 4);
    long sr = 0, sp = 0;
    for (int i = 0; i < n; i++) {
        long r, p;
        rss_of(pids[i], &r, &p);
        sr += r;
        sp += p;
    }
    mproc_pool_free(pool);
    printf("mproc %ld %ld\n", n > 0 ? sr / n : -1, n > 0 ? sp / n : -1);
    if (py && script) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "%s %s rss", py, script);
        FILE *f = popen(cmd, "r");
        long r, p;
        if (f && fscanf(f, "%ld %ld", &r, &p) == 2)
            printf("cpython %ld %ld\n", r, p);
        if (f)
            pclose(f);
    }
    printf("\n\n");
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], EXIT_ARG) == 0)
        _exit(0);
    bool with_py = true;
    int c;
    while ((c = getopt(argc, argv, "qP")) != -1) {
        if (c == 'q')
            quick = true;
        else if (c == 'P')
            with_py = false;
        else {
            fprintf(stderr, "usage: bench_curves [-q] [-P]\n");
            return 2;
        }
    }
    const char *py = NULL, *script = NULL;
    if (with_py) {
        static char buf[1024];
        py = getenv("MPROC_BENCH_PYTHON");
        if (!py) {
            const char *home = getenv("HOME");
            snprintf(buf, sizeof buf, "%s/.pyenv/versions/3.13.0/bin/python",
                     home ? home : "/root");
            py = buf;
        }
        if (access(py, X_OK) != 0)
            py = NULL;
        script = py ? bench_py_script("bench_curves", "curves_bench.py") : NULL;
    }
    printf("# bench_curves: 2 cores; past 2 processes the curves measure "
           "time-sharing overhead%s\n\n\n",
           quick ? " (quick)" : "");
    curve_pool_rss(py, script); /* first: while this process is small */
    curve_queue_pc();
    curve_queue_size();
    curve_pool_size();
    curve_pool_workers();
    curve_process_rss();
    return 0;
}
