/*
 * bench_sync.c - process-shared Lock and Event against their floors and
 * CPython (issue 4, §5). Three figures, each measured in the same run:
 *
 *  1. uncontended acquire + release of an mproc Lock (and RLock) against a
 *     raw pair of atomic compare-and-swaps on a shared word (lock: CAS 0->1
 *     acquire, unlock: CAS 1->0 release) and CPython's multiprocessing.Lock
 *     (target: mproc <= 2x raw CAS);
 *  2. a counter += 1 under the lock from 2 processes at once, ns per
 *     increment (wall time / total increments), against CPython's
 *     `with v.get_lock(): v.value += 1` on a Value('i') from 2 processes
 *     (target: CPython/mproc >= 20x);
 *  3. Event ping-pong between two processes (A: set e1, wait e2, clear e2;
 *     B: wait e1, clear e1, set e2), ns per round trip, against the same
 *     ping-pong on two raw futex words with FUTEX_WAIT/FUTEX_WAKE (target:
 *     mproc <= 1.3x raw futex); CPython's Event for information. Within a
 *     round the two alternate in PP_SPLIT short runs (one sample each).
 *
 * Rounds are interleaved (every contender once per round, the order
 * rotating) and each figure is the median over rounds. Targets are
 * reported, never asserted. CPython runs bench/py/sync_bench.py once per
 * round through popen.
 *
 * Usage: bench_sync [-r rounds] [-n ops] [-c incs] [-p pings] [-P]
 *   -r  rounds (default 9)            -n  uncontended pairs (default 2e7)
 *   -c  increments per process (default 1e6; CPython 1e5)
 *   -p  ping-pong round trips (default 20000)   -P  skip CPython
 * Environment: MPROC_BENCH_PYTHON (interpreter, default
 * ~/.pyenv/versions/3.11.7/bin/python), MPROC_BENCH_PY_DIR (where
 * sync_bench.py lives, default bench/py beside this source file).
 */
#include <mproc.h>

#include "bench_util.h"

#include <libgen.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUNDS  64
#define MAX_SAMPLES 512

enum {
    C_CAS,
    C_LOCK,
    C_RLOCK,
    C_PY_LOCK,
    C_INC,
    C_PY_INC,
    C_FUTEX_PP,
    C_EVENT_PP,
    C_PY_EVENT,
    C_COUNT
};

static const char *const names[C_COUNT] = {
    "raw CAS pair",  "mproc Lock",       "mproc RLock",
    "CPython Lock",  "mproc Lock +1 x2", "CPython Value +1 x2",
    "raw futex p-p", "mproc Event p-p",  "CPython Event p-p"};

static double samples[C_COUNT][MAX_SAMPLES];
static int nsamples[C_COUNT];

static double run_futex_pp(void);
static double run_event_pp1(void);

static long n_pairs = 20000000, n_incs = 1000000, n_py_incs = 100000,
            n_pings = 20000, n_py_pings = 5000;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* The uncontended loops run on one thread and share the CPU with nobody
 * of theirs: they are timed in that thread's CPU time, which a busy
 * machine's time-slicing does not inflate (wall time did, by 2-5x). */
static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void *shared_alloc(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void add(int c, double v)
{
    if (nsamples[c] < MAX_SAMPLES)
        samples[c][nsamples[c]++] = v;
}

/* ---- 1. uncontended --------------------------------------------------- */

static uint32_t *cas_word;

static double run_cas(void)
{
    uint32_t *w = cas_word;
    double t0 = cpu_ns();
    for (long i = 0; i < n_pairs; i++) {
        uint32_t e = 0;
        while (!__atomic_compare_exchange_n(w, &e, 1, false, __ATOMIC_ACQUIRE,
                                            __ATOMIC_RELAXED))
            e = 0;
        e = 1;
        __atomic_compare_exchange_n(w, &e, 0, false, __ATOMIC_RELEASE,
                                    __ATOMIC_RELAXED);
    }
    return (cpu_ns() - t0) / (double)n_pairs;
}

static mproc_lock *ulock;
static mproc_rlock *urlock;

static double run_lock(void)
{
    double t0 = cpu_ns();
    for (long i = 0; i < n_pairs; i++) {
        mproc_lock_acquire(ulock, -1);
        mproc_lock_release(ulock);
    }
    return (cpu_ns() - t0) / (double)n_pairs;
}

static double run_rlock(void)
{
    double t0 = cpu_ns();
    for (long i = 0; i < n_pairs; i++) {
        mproc_rlock_acquire(urlock, -1);
        mproc_rlock_release(urlock);
    }
    return (cpu_ns() - t0) / (double)n_pairs;
}

/* ---- 2. contended increment ------------------------------------------- */

struct inc_area {
    uint32_t go;
    uint32_t ready;
    char pad[56];
    int64_t counter;
};

static struct inc_area *inc_area;
static mproc_lock *inc_lock;

static double run_inc(void)
{
    struct inc_area *a = inc_area;
    a->counter = 0;
    __atomic_store_n(&a->go, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&a->ready, 0, __ATOMIC_SEQ_CST);
    pid_t kids[2];
    fflush(NULL);
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] < 0)
            return -1;
        if (kids[k] == 0) {
            __atomic_add_fetch(&a->ready, 1, __ATOMIC_SEQ_CST);
            while (!__atomic_load_n(&a->go, __ATOMIC_ACQUIRE))
                ;
            for (long i = 0; i < n_incs; i++) {
                if (mproc_lock_acquire(inc_lock, -1) != 0)
                    _exit(1);
                a->counter++;
                mproc_lock_release(inc_lock);
            }
            _exit(0);
        }
    }
    while (__atomic_load_n(&a->ready, __ATOMIC_ACQUIRE) < 2)
        ;
    double t0 = now_ns();
    __atomic_store_n(&a->go, 1, __ATOMIC_RELEASE);
    int bad = 0;
    for (int k = 0; k < 2; k++) {
        int st;
        waitpid(kids[k], &st, 0);
        bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    }
    double dt = now_ns() - t0;
    if (bad || a->counter != 2 * n_incs) {
        fprintf(stderr, "bench_sync: counter %lld != %ld\n",
                (long long)a->counter, 2 * n_incs);
        return -1;
    }
    return dt / (double)(2 * n_incs);
}

/* ---- 3. ping-pong ----------------------------------------------------- */

static uint32_t *fx; /* fx[0], fx[16]: two futex words on separate lines */

static void futex_wait(uint32_t *w, uint32_t v)
{
    syscall(SYS_futex, w, FUTEX_WAIT, v, NULL, NULL, 0);
}

static void futex_wake(uint32_t *w)
{
    syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static double run_futex_pp(void)
{
    uint32_t *w1 = &fx[0], *w2 = &fx[16];
    *w1 = *w2 = 0;
    fflush(NULL);
    pid_t kid = fork();
    if (kid < 0)
        return -1;
    if (kid == 0) {
        for (long i = 0; i < n_pings + 100; i++) {
            while (__atomic_load_n(w1, __ATOMIC_ACQUIRE) == 0)
                futex_wait(w1, 0);
            __atomic_store_n(w1, 0, __ATOMIC_RELAXED);
            __atomic_store_n(w2, 1, __ATOMIC_RELEASE);
            futex_wake(w2);
        }
        _exit(0);
    }
    double t0 = 0;
    for (long i = 0; i < n_pings + 100; i++) {
        if (i == 100)
            t0 = now_ns();
        __atomic_store_n(w1, 1, __ATOMIC_RELEASE);
        futex_wake(w1);
        while (__atomic_load_n(w2, __ATOMIC_ACQUIRE) == 0)
            futex_wait(w2, 0);
        __atomic_store_n(w2, 0, __ATOMIC_RELAXED);
    }
    double dt = now_ns() - t0;
    waitpid(kid, NULL, 0);
    return dt / (double)n_pings;
}

static mproc_event *e1, *e2;

static double run_event_pp1(void)
{
    mproc_event_clear(e1);
    mproc_event_clear(e2);
    fflush(NULL);
    pid_t kid = fork();
    if (kid < 0)
        return -1;
    if (kid == 0) {
        for (long i = 0; i < n_pings + 100; i++) {
            if (mproc_event_wait(e1, -1) != 0)
                _exit(1);
            mproc_event_clear(e1);
            mproc_event_set(e2);
        }
        _exit(0);
    }
    double t0 = 0;
    for (long i = 0; i < n_pings + 100; i++) {
        if (i == 100)
            t0 = now_ns();
        mproc_event_set(e1);
        mproc_event_wait(e2, -1);
        mproc_event_clear(e2);
    }
    double dt = now_ns() - t0;
    int st;
    waitpid(kid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return -1;
    return dt / (double)n_pings;
}

/* Wake-ups drift a lot on this machine: alternate short runs of both
 * ping-pongs PP_SPLIT times per round, each run one sample. */
#define PP_SPLIT 8

static double run_pingpongs(void)
{
    long total = n_pings;
    n_pings = total / PP_SPLIT > 0 ? total / PP_SPLIT : 1;
    double ok = 0;
    for (int k = 0; k < PP_SPLIT && ok == 0; k++) {
        double a = k % 2 ? run_event_pp1() : run_futex_pp();
        double b = k % 2 ? run_futex_pp() : run_event_pp1();
        if (a < 0 || b < 0)
            ok = -1;
        add(C_FUTEX_PP, k % 2 ? b : a);
        add(C_EVENT_PP, k % 2 ? a : b);
    }
    n_pings = total;
    return ok;
}

/* ---- CPython ---------------------------------------------------------- */

static char py_cmd[PATH_MAX * 2 + 128];

static bool python_setup(void)
{
    const char *py = bench_python("bench_sync");
    const char *script =
        py ? bench_py_script("bench_sync", "sync_bench.py") : NULL;
    if (!script)
        return false;
    snprintf(py_cmd, sizeof py_cmd, "'%s' '%s' lock:%ld counter:%ld event:%ld",
             py, script, n_pairs / 10, n_py_incs, n_py_pings);
    return true;
}

static int run_python(void)
{
    fflush(NULL);
    FILE *f = popen(py_cmd, "r");
    if (!f)
        return -1;
    char mode[32];
    double v;
    int got = 0;
    while (fscanf(f, "%31s %lf", mode, &v) == 2) {
        if (strcmp(mode, "lock") == 0)
            add(C_PY_LOCK, v);
        else if (strcmp(mode, "counter") == 0)
            add(C_PY_INC, v);
        else if (strcmp(mode, "event") == 0)
            add(C_PY_EVENT, v);
        got++;
    }
    return pclose(f) == 0 && got == 3 ? 0 : -1;
}

/* ---- report ----------------------------------------------------------- */

static double median(int c)
{
    return bench_median(samples[c], nsamples[c]);
}

/* One line: mine, the peer, and mine/peer (or peer/mine when inverse). */
static void report(const char *what, int mine, int peer, bool inverse,
                   const char *target, double limit)
{
    double a = median(mine), b = median(peer);
    if (b == 0) {
        printf("%-26s %-20s %10.1f ns  %-20s        n/a\n", what, names[mine],
               a, names[peer]);
        return;
    }
    double r = inverse ? b / a : a / b;
    bool met = inverse ? r >= limit : r <= limit;
    printf("%-26s %-20s %10.1f ns  %-20s %10.1f ns  %s %7.2fx  (target %s "
           "%s)\n",
           what, names[mine], a, names[peer], b,
           inverse ? "peer/mproc" : "mproc/peer", r, target,
           met ? "met" : "missed");
}

int main(int argc, char **argv)
{
    int rounds = 9;
    bool use_py = true;
    int opt;
    while ((opt = getopt(argc, argv, "r:n:c:p:P")) != -1) {
        switch (opt) {
        case 'r':
            rounds = atoi(optarg);
            break;
        case 'n':
            n_pairs = atol(optarg);
            break;
        case 'c':
            n_incs = atol(optarg);
            break;
        case 'p':
            n_pings = atol(optarg);
            break;
        case 'P':
            use_py = false;
            break;
        default:
            fprintf(stderr, "usage: bench_sync [-r rounds] [-n pairs] "
                            "[-c incs] [-p pings] [-P]\n");
            return 2;
        }
    }
    if (rounds < 1 || rounds > MAX_ROUNDS || n_pairs < 10 || n_incs < 1 ||
        n_pings < 1) {
        fprintf(stderr, "bench_sync: bad -r/-n/-c/-p\n");
        return 2;
    }
    if (use_py)
        use_py = python_setup();

    unsigned char *area = shared_alloc(4096);
    int err = 0;
    if (!area || (err = mproc_lock_new(&ulock)) < 0 ||
        (err = mproc_rlock_new(&urlock)) < 0 ||
        (err = mproc_lock_new(&inc_lock)) < 0 ||
        (err = mproc_event_new(&e1)) < 0 || (err = mproc_event_new(&e2)) < 0) {
        fprintf(stderr, "bench_sync: setup: %s\n", mproc_strerror(err));
        return 1;
    }
    cas_word = (uint32_t *)area;
    inc_area = (struct inc_area *)(area + 64);
    fx = (uint32_t *)(area + 1024);

    double (*const fns[])(void) = {run_cas, run_lock, run_rlock, run_inc,
                                   run_pingpongs};
    const int ids[] = {C_CAS, C_LOCK, C_RLOCK, C_INC, -1};
    const int nf = (int)(sizeof ids / sizeof ids[0]);
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < nf + 1; k++) {
            int i = (k + r) % (nf + 1);
            if (i == nf) {
                if (use_py && run_python() < 0) {
                    fprintf(stderr, "bench_sync: CPython run failed\n");
                    return 1;
                }
                continue;
            }
            double v = fns[i]();
            if (v < 0) {
                fprintf(stderr, "bench_sync: %s failed\n",
                        ids[i] >= 0 ? names[ids[i]] : "ping-pong");
                return 1;
            }
            if (ids[i] >= 0)
                add(ids[i], v);
        }
    }

    printf("sync, median of %d interleaved rounds (pairs %ld, increments "
           "2x%ld, CPython 2x%ld, ping-pongs %ld, CPython %ld)\n",
           rounds, n_pairs, n_incs, n_py_incs, n_pings, n_py_pings);
    report("uncontended acq+rel", C_LOCK, C_CAS, false, "<= 2x", 2.0);
    report("uncontended acq+rel", C_RLOCK, C_CAS, false, "<= 2x", 2.0);
    report("uncontended acq+rel", C_LOCK, C_PY_LOCK, true, "info", 0);
    report("counter +1, 2 processes", C_INC, C_PY_INC, true, ">= 20x", 20.0);
    report("Event set -> wake, p-p", C_EVENT_PP, C_FUTEX_PP, false, "<= 1.3x",
           1.3);
    report("Event set -> wake, p-p", C_EVENT_PP, C_PY_EVENT, true, "info", 0);
    /* Speeds (1 / time) against the floor and CPython, for the charts. */
    double lk = median(C_LOCK), inc = median(C_INC), ev = median(C_EVENT_PP);
    bench_ratio_row("Lock acq+rel", lk > 0 ? median(C_CAS) / lk : 0,
                    lk > 0 ? median(C_PY_LOCK) / lk : 0);
    bench_ratio_row("counter under Lock", 0,
                    inc > 0 ? median(C_PY_INC) / inc : 0);
    bench_ratio_row("Event ping-pong", ev > 0 ? median(C_FUTEX_PP) / ev : 0,
                    ev > 0 ? median(C_PY_EVENT) / ev : 0);

    mproc_lock_free(ulock);
    mproc_rlock_free(urlock);
    mproc_lock_free(inc_lock);
    mproc_event_free(e1);
    mproc_event_free(e2);
    munmap(area, 4096);
    return 0;
}
