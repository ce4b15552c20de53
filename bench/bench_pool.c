/*
 * bench_pool.c - the process pool against its peers (issue 5, §6).
 *
 *  1. map of 10^6 int squares, ns per item: mproc's bytes path
 *     (mproc_pool_map over an iov per int), its records path
 *     (mproc_pool_map_records, arrays copied through the pool's scratch
 *     memory, and in place on mproc_pool_shm_alloc arrays), a serial C
 *     loop, an OpenMP `parallel for` (the threads floor), and CPython
 *     3.11's Pool(2).map (default chunksize). Then a CPU-bound kernel (an
 *     LCG of K steps per record) through the records path vs OpenMP.
 *     The bytes path also in CPU time (ns of CPU per item, every thread
 *     of this process and the workers, from schedstat), beside its floor:
 *     the least work the general path must do per item, in one thread
 *     (pack the item into a buffer with an offset table, call the task
 *     through a pointer, store its result and offset), halved for the
 *     2 workers. CPython 3.13's Pool.map beside 3.11's when found.
 *  2. apply_async of 10^5 tiny tasks, then get() of each: tasks/s (and
 *     CPU us per task), vs CPython 3.11 and 3.13.
 *  3. Pool(2) start -> first result (apply) -> shutdown (free): ms, vs
 *     CPython's `with Pool(2) as p: p.apply(...)` (mean of 5). mproc's
 *     figure per round is the median of 9 (this VM's wake-ups now and then
 *     stall one of them by a 4 ms tick). Measured first, while the
 *     benchmark process is still small (its own rounds, CPython
 *     interleaved).
 *  4. The tutorial's CPU-bound example, 10 tasks of 10^7 increments:
 *     serial, 10 threads, a pool of cpu_count workers (chunksize 1), and
 *     CPython's pool for reference; speedup against the core count.
 *
 * Every contender runs once per round (rounds interleaved); each figure is
 * the median over rounds. Pools are created outside the timed region
 * except in (3). Targets are reported, never asserted.
 *
 * Usage: bench_pool [-r rounds] [-P]   (-P: skip CPython)
 * Environment: MPROC_BENCH_PYTHON, MPROC_BENCH_PY_DIR as bench_process.
 */
#include <mproc.h>

#include "bench_util.h"

#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef MPROC_HAVE_OPENMP
#include <omp.h>
#endif

#define MAX_ROUNDS 32
#define N_MAP      1000000
#define N_APPLY    100000
#define LCG_STEPS  400
#define N_CPU      200000

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

/* ---- tasks ------------------------------------------------------------- */

static int t_square(const void *in, size_t len, mproc_out *out)
{
    unsigned x = *(const unsigned *)in;
    unsigned *o = mproc_out_alloc(out, sizeof(unsigned));
    (void)len;
    if (!o)
        return -1;
    *o = x * x;
    return 0;
}

static int k_square(const void *in, void *out, size_t count, size_t first)
{
    const unsigned *a = in;
    unsigned *b = out;
    (void)first;
    for (size_t i = 0; i < count; i++)
        b[i] = a[i] * a[i];
    return 0;
}

static inline uint32_t lcg(uint32_t x)
{
    for (int k = 0; k < LCG_STEPS; k++)
        x = x * 1103515245u + 12345u;
    return x;
}

static int k_lcg(const void *in, void *out, size_t count, size_t first)
{
    const uint32_t *a = in;
    uint32_t *b = out;
    (void)first;
    for (size_t i = 0; i < count; i++)
        b[i] = lcg(a[i]);
    return 0;
}

#ifdef MPROC_HAVE_OPENMP
/* The same kernel over the same array, on 2 OpenMP threads, static split
 * (what `#pragma omp parallel for schedule(static)` does). */
static void omp_split(mproc_records_fn k, const void *in, void *out,
                      size_t size, size_t n)
{
#pragma omp parallel num_threads(2)
    {
        size_t t = (size_t)omp_get_thread_num();
        size_t nt = (size_t)omp_get_num_threads();
        size_t lo = n * t / nt, hi = n * (t + 1) / nt;
        k((const char *)in + lo * size, (char *)out + lo * size, hi - lo, lo);
    }
}
#endif

static long cpu_bound(long n)
{
    long result = 0;
    for (long i = 0; i < n; i++) {
        result += 1;
        __asm__ volatile("" : "+r"(result));
    }
    return result;
}

static int t_cpu(const void *in, size_t len, mproc_out *out)
{
    long n = *(const long *)in, r = cpu_bound(n);
    (void)len;
    return mproc_out_write(out, &r, sizeof r);
}

static void *thread_cpu(void *arg)
{
    long *n = arg;
    *n = cpu_bound(*n);
    return NULL;
}

/* ---- CPU time ----------------------------------------------------------- */

/* ns on a CPU so far of one task (/proc/<path>/schedstat); 0 if gone. */
static double sched_ns(const char *path)
{
    FILE *f = fopen(path, "r");
    double v = 0;
    if (f) {
        unsigned long long ns;
        if (fscanf(f, "%llu", &ns) == 1)
            v = (double)ns;
        fclose(f);
    }
    return v;
}

/* CPU ns of every thread of this process and of pool's workers. */
static double cpu_ns(mproc_pool *pool)
{
    double t = 0;
    char path[300];
    DIR *dir = opendir("/proc/self/task");
    struct dirent *e;
    while (dir && (e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/schedstat", e->d_name);
        t += sched_ns(path);
    }
    if (dir)
        closedir(dir);
    pid_t pids[16];
    int n = mproc_pool_pids(pool, pids, 16);
    for (int i = 0; i < n && i < 16; i++) {
        snprintf(path, sizeof path, "/proc/%d/schedstat", (int)pids[i]);
        t += sched_ns(path);
    }
    return t;
}

/* ---- the floor of the bytes path ---------------------------------------- */

/* What a task of the bytes path does at the least, as a plain function:
 * read its input, write its 4-byte result. */
static void floor_task(const void *in, unsigned char *out)
{
    unsigned x;
    memcpy(&x, in, 4);
    x *= x;
    memcpy(out, &x, 4);
}

static void (*volatile floor_fn)(const void *, unsigned char *) = floor_task;

/* CPU time of the calling thread, s. */
static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One thread doing the per-item work the general path cannot avoid: the
 * caller's item into a buffer with an offset table, the task called
 * through a pointer on it, its result stored with its offset. CPU ns per
 * item (the machine is shared: CPU time is steadier than wall). */
static double bytes_floor(const mproc_iov *iov, size_t n, unsigned char *in,
                          unsigned char *res)
{
    double t = thread_cpu_s();
    uint64_t *tab = (uint64_t *)(void *)in;
    unsigned char *d = in + 8 * n;
    uint32_t *rtab = (uint32_t *)(void *)res;
    unsigned char *rd = res + 4 * n;
    for (size_t i = 0; i < n; i++) {
        uint64_t x = 0;
        memcpy(&x, iov[i].data, iov[i].len <= 8 ? iov[i].len : 8);
        memcpy(d + 8 * i, &x, 8);
        tab[i] = 8 * i + iov[i].len;
    }
    for (size_t i = 0; i < n; i++) {
        floor_fn(d + (tab[i] & ~(uint64_t)7), rd + 8 * i);
        rtab[i] = (uint32_t)(8 * i + 4);
    }
    __asm__ volatile("" : : "r"(res) : "memory");
    return (thread_cpu_s() - t) * 1e9 / (double)n;
}

/* ---- CPython ------------------------------------------------------------ */

static const char *py, *py2, *pyscript;

/* Runs the CPython peer on spec; stores the figures named key and key2
 * (key2 may be NULL). */
static bool run_py_with2(const char *interp, const char *spec, const char *key,
                         double *out, const char *key2, double *out2)
{
    char cmd[1400], line[256];
    snprintf(cmd, sizeof cmd, "%s %s %s", interp, pyscript, spec);
    FILE *f = popen(cmd, "r");
    if (!f)
        return false;
    bool ok = false;
    while (fgets(line, sizeof line, f)) {
        char k[32];
        double v;
        if (sscanf(line, "%31s %lf", k, &v) != 2)
            continue;
        if (strcmp(k, key) == 0) {
            *out = v;
            ok = true;
        } else if (key2 && strcmp(k, key2) == 0) {
            *out2 = v;
        }
    }
    return pclose(f) == 0 && ok;
}

static bool run_py_with(const char *interp, const char *spec, const char *key,
                        double *out)
{
    return run_py_with2(interp, spec, key, out, NULL, NULL);
}

static bool run_py(const char *spec, const char *key, double *out)
{
    return run_py_with(py, spec, key, out);
}

/* ---- figures ------------------------------------------------------------ */

enum {
    F_SERIAL,
    F_OMP,
    F_BYTES,
    F_REC_COPY,
    F_REC_SHM,
    F_PY_MAP,
    F_LCG_SERIAL,
    F_LCG_OMP,
    F_LCG_REC,
    F_APPLY,
    F_PY_APPLY,
    F_START_FORK,
    F_START_SPAWN,
    F_START_FS,
    F_PY_START,
    F_CPU_SERIAL,
    F_CPU_THREADS,
    F_CPU_POOL,
    F_PY_CPU,
    F_BYTES_CPU,
    F_FLOOR,
    F_PY2_MAP,
    F_APPLY_CPU,
    F_PY2_APPLY,
    F_PY_MAPCPU,
    F_PY2_MAPCPU,
    F_PY_APPLYCPU,
    F_PY2_APPLYCPU,
    F_COUNT
};

static double fig[F_COUNT][MAX_ROUNDS];
static int nfig[F_COUNT];

static void add(int f, double v)
{
    if (nfig[f] < MAX_ROUNDS)
        fig[f][nfig[f]++] = v;
}

static double med(int f)
{
    return median(fig[f], nfig[f]);
}

/* a / b, or 0 (shown as "-") when either is missing. */
static double ratio_of(double a, double b)
{
    return a > 0 && b > 0 ? a / b : 0;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_pool: %s: %s\n", what, mproc_strerror(rc));
    exit(1);
}

/* 3: run first, while this process is small (fork copies its page
 * tables: a big parent forks slower, see docs/process.md). */
static void bench_start(int rounds, bool with_py)
{
    mproc_start_method ms[3] = {MPROC_START_FORK, MPROC_START_SPAWN,
                                MPROC_START_FORKSERVER};
    for (int round = 0; round < rounds; round++) {
        for (int m = 0; m < 3; m++) {
            enum { REPS = 9 };
            double per[REPS];
            for (int k = 0; k < REPS; k++) {
                double t = now();
                mproc_pool *p2;
                int rc = mproc_pool_new(
                    &p2, &(mproc_pool_opts){.processes = 2, .method = ms[m]});
                if (rc < 0)
                    die("pool start", rc);
                unsigned x = 3;
                void *res;
                rc = mproc_pool_apply(p2, t_square, &x, 4, &res, NULL, NULL);
                if (rc < 0 || *(unsigned *)res != 9)
                    die("first result", rc);
                free(res);
                mproc_pool_free(p2);
                per[k] = (now() - t) * 1e3;
            }
            add(F_START_FORK + m, median(per, REPS));
        }
        double v;
        if (with_py && run_py("start:5", "start", &v))
            add(F_PY_START, v);
    }
}

int main(int argc, char **argv)
{
    int rounds = 7;
    bool with_py = true;
    /* Idle OpenMP threads must sleep, not spin on the cores the pool's
     * workers need. */
    setenv("OMP_WAIT_POLICY", "passive", 0);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-r") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "-P") == 0)
            with_py = false;
    }
    if (rounds < 1 || rounds > MAX_ROUNDS)
        rounds = 7;
    if (with_py) {
        py = bench_python("bench_pool");
        pyscript = py ? bench_py_script("bench_pool", "pool_bench.py") : NULL;
        with_py = pyscript != NULL;
        /* a second CPython (3.13 by default) for the map and apply rows */
        static char py2buf[1024];
        const char *p2 = getenv("MPROC_BENCH_PYTHON2");
        if (!p2) {
            const char *home = getenv("HOME");
            snprintf(py2buf, sizeof py2buf,
                     "%s/.pyenv/versions/3.13.0/bin/python",
                     home ? home : "/root");
            p2 = py2buf;
        }
        py2 = with_py && access(p2, X_OK) == 0 ? p2 : NULL;
    }
    int ncpu = mproc_cpu_count_usable();
    bench_start(rounds, with_py);

    unsigned *in = malloc(N_MAP * sizeof *in),
             *out = malloc(N_MAP * sizeof *out);
    mproc_iov *iov = malloc(N_MAP * sizeof *iov);
    /* zeroed: no page faults in the floor's timed loops */
    unsigned char *fl_in = calloc(N_MAP, 16), *fl_res = calloc(N_MAP, 12);
    if (!fl_in || !fl_res)
        die("malloc", -ENOMEM);
    memset(fl_in, 1, N_MAP * 16);
    memset(fl_res, 1, N_MAP * 12);
    uint32_t *lin = malloc(N_CPU * 4), *lout = malloc(N_CPU * 4);
    if (!in || !out || !iov || !lin || !lout)
        die("malloc", -ENOMEM);
    for (int i = 0; i < N_MAP; i++) {
        in[i] = (unsigned)i;
        iov[i] = (mproc_iov){&in[i], sizeof in[i]};
    }
    for (int i = 0; i < N_CPU; i++)
        lin[i] = (uint32_t)i * 2654435761u;

    mproc_pool *pool;
    int rc = mproc_pool_new(&pool, &(mproc_pool_opts){.processes = 2});
    if (rc < 0)
        die("pool", rc);
    mproc_pool *cpool; /* cpu_count workers, for the tutorial's example */
    rc = mproc_pool_new(&cpool, NULL);
    if (rc < 0)
        die("pool", rc);
    unsigned *sin = mproc_pool_shm_alloc(pool, N_MAP * sizeof(unsigned));
    unsigned *sout = mproc_pool_shm_alloc(pool, N_MAP * sizeof(unsigned));
    if (!sin || !sout)
        die("shm", -ENOMEM);
    memcpy(sin, in, N_MAP * sizeof(int));
    /* warm up: workers know the functions, shared arrays are mapped */
    mproc_results *r;
    rc = mproc_pool_map(pool, t_square, iov, 1000, NULL, &r);
    if (rc < 0)
        die("map", rc);
    mproc_results_free(r);
    mproc_pool_map_records(pool, k_square, in, 4, out, 4, N_MAP, NULL, NULL);
    mproc_pool_map_records(pool, k_square, sin, 4, sout, 4, N_MAP, NULL, NULL);
    mproc_pool_map_records(pool, k_lcg, lin, 4, lout, 4, N_CPU, NULL, NULL);

    /* Every contender runs the same out-of-line kernels. */
    mproc_records_fn volatile ks = k_square, kl = k_lcg;
    for (int round = 0; round < rounds; round++) {
        double t;
        /* 1. squares */
        t = now();
        ks(in, out, N_MAP, 0);
        __asm__ volatile("" : : "r"(out) : "memory");
        add(F_SERIAL, (now() - t) * 1e9 / N_MAP);
#ifdef MPROC_HAVE_OPENMP
        t = now();
        omp_split(ks, in, out, 4, N_MAP);
        add(F_OMP, (now() - t) * 1e9 / N_MAP);
#endif
        add(F_FLOOR, bytes_floor(iov, N_MAP, fl_in, fl_res));
        double c0 = cpu_ns(pool);
        t = now();
        rc = mproc_pool_map(pool, t_square, iov, N_MAP, NULL, &r);
        add(F_BYTES, (now() - t) * 1e9 / N_MAP);
        add(F_BYTES_CPU, (cpu_ns(pool) - c0) / N_MAP);
        if (rc < 0)
            die("map", rc);
        const void *d;
        mproc_results_get(r, N_MAP - 1, &d, NULL);
        if (*(const unsigned *)d != (unsigned)(N_MAP - 1) * (N_MAP - 1))
            die("map result", MPROC_ETASK);
        mproc_results_free(r);
        t = now();
        rc = mproc_pool_map_records(pool, k_square, in, 4, out, 4, N_MAP, NULL,
                                    NULL);
        add(F_REC_COPY, (now() - t) * 1e9 / N_MAP);
        if (rc < 0 || out[1000] != 1000000)
            die("records", rc);
        t = now();
        rc = mproc_pool_map_records(pool, k_square, sin, 4, sout, 4, N_MAP,
                                    NULL, NULL);
        add(F_REC_SHM, (now() - t) * 1e9 / N_MAP);
        if (rc < 0 || sout[1000] != 1000000)
            die("records shm", rc);
        double v;
        double vc = 0;
        if (with_py &&
            run_py_with2(py, "map:1000000", "map", &v, "mapcpu", &vc)) {
            add(F_PY_MAP, v);
            add(F_PY_MAPCPU, vc);
        }
        if (py2 && run_py_with2(py2, "map:1000000", "map", &v, "mapcpu", &vc)) {
            add(F_PY2_MAP, v);
            add(F_PY2_MAPCPU, vc);
        }
        /* CPU-bound kernel */
        t = now();
        kl(lin, lout, N_CPU, 0);
        __asm__ volatile("" : : "r"(lout) : "memory");
        add(F_LCG_SERIAL, (now() - t) * 1e3);
#ifdef MPROC_HAVE_OPENMP
        t = now();
        omp_split(kl, lin, lout, 4, N_CPU);
        add(F_LCG_OMP, (now() - t) * 1e3);
#endif
        t = now();
        rc = mproc_pool_map_records(pool, k_lcg, lin, 4, lout, 4, N_CPU, NULL,
                                    NULL);
        add(F_LCG_REC, (now() - t) * 1e3);
        if (rc < 0)
            die("records lcg", rc);

        /* 2. apply_async */
        static mproc_future *fs[N_APPLY];
        static unsigned args[N_APPLY];
        c0 = cpu_ns(pool);
        t = now();
        for (int i = 0; i < N_APPLY; i++) {
            args[i] = (unsigned)i;
            rc = mproc_pool_apply_async(pool, t_square, &args[i], 4, NULL,
                                        &fs[i]);
            if (rc < 0)
                die("apply_async", rc);
        }
        for (int i = 0; i < N_APPLY; i++) {
            rc = mproc_future_get(fs[i], -1, &d, NULL);
            if (rc < 0 || *(const unsigned *)d != (unsigned)i * (unsigned)i)
                die("get", rc);
        }
        add(F_APPLY, N_APPLY / (now() - t));
        add(F_APPLY_CPU, (cpu_ns(pool) - c0) / N_APPLY / 1e3);
        for (int i = 0; i < N_APPLY; i++)
            mproc_future_free(fs[i]);
        if (with_py &&
            run_py_with2(py, "apply:100000", "apply", &v, "applycpu", &vc)) {
            add(F_PY_APPLY, v);
            add(F_PY_APPLYCPU, vc);
        }
        if (py2 &&
            run_py_with2(py2, "apply:100000", "apply", &v, "applycpu", &vc)) {
            add(F_PY2_APPLY, v);
            add(F_PY2_APPLYCPU, vc);
        }

        /* 4. the tutorial's CPU-bound example */
        long n = 10000000;
        t = now();
        for (int k = 0; k < 10; k++)
            if (cpu_bound(n) != n)
                die("cpu", MPROC_ETASK);
        add(F_CPU_SERIAL, now() - t);
        pthread_t th[10];
        long tn[10];
        t = now();
        for (int k = 0; k < 10; k++) {
            tn[k] = n;
            pthread_create(&th[k], NULL, thread_cpu, &tn[k]);
        }
        for (int k = 0; k < 10; k++)
            pthread_join(th[k], NULL);
        add(F_CPU_THREADS, now() - t);
        mproc_iov ci[10];
        for (int k = 0; k < 10; k++)
            ci[k] = (mproc_iov){&n, sizeof n};
        t = now();
        rc = mproc_pool_map(cpool, t_cpu, ci, 10,
                            &(mproc_call_opts){.chunksize = 1}, &r);
        add(F_CPU_POOL, now() - t);
        if (rc < 0)
            die("cpu pool", rc);
        mproc_results_free(r);
        if (with_py && round < 3 && run_py("cpu:10:10000000", "cpu", &v))
            add(F_PY_CPU, v);
    }

    printf("bench_pool: %d rounds, %d CPUs, medians\n", rounds, ncpu);
    printf("map of 10^6 int squares (ns/item):\n");
    double py_map = med(F_PY_MAP);
    printf("  serial C loop              %8.2f\n", med(F_SERIAL));
#ifdef MPROC_HAVE_OPENMP
    printf("  OpenMP, 2 threads          %8.2f\n", med(F_OMP));
#endif
    printf("  mproc map (bytes)          %8.2f   CPython/mproc %.1fx "
           "(target >= 50x), bytes/records(copy) %.1fx (target <= 10x)\n",
           med(F_BYTES), py_map / med(F_BYTES), med(F_BYTES) / med(F_REC_COPY));
    printf("    CPU ns/item, all threads %8.2f   floor %.2f (the least work "
           "per item, one thread): %.1fx it; CPython's CPU/mproc's %.1fx "
           "(3.13: %.1fx)\n",
           med(F_BYTES_CPU), med(F_FLOOR), med(F_BYTES_CPU) / med(F_FLOOR),
           med(F_PY_MAPCPU) / med(F_BYTES_CPU),
           med(F_PY2_MAPCPU) / med(F_BYTES_CPU));
    printf("  mproc map_records (copy)   %8.2f   CPython/mproc %.1fx\n",
           med(F_REC_COPY), py_map / med(F_REC_COPY));
    printf("  mproc map_records (shm)    %8.2f   CPython/mproc %.1fx\n",
           med(F_REC_SHM), py_map / med(F_REC_SHM));
    printf("  CPython Pool(2).map        %8.2f   CPU ns/item %.1f\n", py_map,
           med(F_PY_MAPCPU));
    if (nfig[F_PY2_MAP])
        printf("  CPython 3.13 Pool(2).map   %8.2f   CPython/mproc %.1fx\n",
               med(F_PY2_MAP), med(F_PY2_MAP) / med(F_BYTES));
    printf("CPU-bound kernel (%d records x %d LCG steps, ms):\n", N_CPU,
           LCG_STEPS);
    printf("  serial C loop              %8.2f\n", med(F_LCG_SERIAL));
#ifdef MPROC_HAVE_OPENMP
    printf("  OpenMP, 2 threads          %8.2f\n", med(F_LCG_OMP));
    printf("  mproc map_records          %8.2f   mproc/OpenMP %.2fx "
           "(target <= 1.5x)\n",
           med(F_LCG_REC), med(F_LCG_REC) / med(F_LCG_OMP));
#else
    printf("  mproc map_records          %8.2f\n", med(F_LCG_REC));
#endif
    printf("apply_async of 10^5 tiny tasks (tasks/s):\n");
    printf("  mproc                      %10.0f   mproc/CPython %.1fx "
           "(targets >= 4e6/s, >= 150x)\n",
           med(F_APPLY), med(F_APPLY) / med(F_PY_APPLY));
    printf("    CPU us/task, all         %10.3f   CPython's CPU/mproc's %.1fx "
           "(3.13: %.1fx)\n",
           med(F_APPLY_CPU), med(F_PY_APPLYCPU) / med(F_APPLY_CPU),
           med(F_PY2_APPLYCPU) / med(F_APPLY_CPU));
    printf("  CPython                    %10.0f   CPU us/task %.2f\n",
           med(F_PY_APPLY), med(F_PY_APPLYCPU));
    if (nfig[F_PY2_APPLY])
        printf("  CPython 3.13               %10.0f   mproc/CPython %.1fx\n",
               med(F_PY2_APPLY), med(F_APPLY) / med(F_PY2_APPLY));
    printf("Pool(2) start -> first result -> shutdown (ms):\n");
    printf("  mproc fork                 %8.3f   CPython/mproc %.1fx "
           "(target <= 1 ms)\n",
           med(F_START_FORK), med(F_PY_START) / med(F_START_FORK));
    printf("  mproc spawn                %8.3f\n", med(F_START_SPAWN));
    printf("  mproc forkserver           %8.3f\n", med(F_START_FS));
    printf("  CPython (fork)             %8.3f\n", med(F_PY_START));
    printf("CPU-bound tutorial, 10 tasks of 10^7 increments (s):\n");
    printf("  serial                     %8.4f\n", med(F_CPU_SERIAL));
    printf("  10 threads                 %8.4f   speedup %.2f on %d CPUs\n",
           med(F_CPU_THREADS), med(F_CPU_SERIAL) / med(F_CPU_THREADS), ncpu);
    printf("  pool (%d workers)           %8.4f   speedup %.2f on %d CPUs\n",
           mproc_pool_processes(cpool), med(F_CPU_POOL),
           med(F_CPU_SERIAL) / med(F_CPU_POOL), ncpu);
    printf("  CPython pool (reference)   %8.4f\n", med(F_PY_CPU));
    /* For bench/plot.sh's ratio chart: mproc's speed over the floor's
     * (its cost over mproc's) and over CPython's. */
    bench_ratio_row("Pool map bytes (CPU)",
                    ratio_of(med(F_FLOOR), med(F_BYTES_CPU)),
                    ratio_of(med(F_PY_MAP), med(F_BYTES)));
#ifdef MPROC_HAVE_OPENMP
    bench_ratio_row("Pool map records", ratio_of(med(F_OMP), med(F_REC_COPY)),
                    ratio_of(med(F_PY_MAP), med(F_REC_COPY)));
    bench_ratio_row("Pool LCG records vs OpenMP",
                    ratio_of(med(F_LCG_OMP), med(F_LCG_REC)), 0);
#endif
    bench_ratio_row("apply_async 10^5", 0,
                    ratio_of(med(F_APPLY), med(F_PY_APPLY)));
    bench_ratio_row("Pool start+apply+free", 0,
                    ratio_of(med(F_PY_START), med(F_START_FORK)));

    mproc_pool_shm_free(pool, sin);
    mproc_pool_shm_free(pool, sout);
    mproc_pool_free(pool);
    mproc_pool_free(cpool);
    free(in);
    free(out);
    free(iov);
    free(fl_in);
    free(fl_res);
    free(lin);
    free(lout);
    return 0;
}
