/*
 * bench_shm.c - shared values and segments (issue 4, §5).
 *
 * Contended increment: two processes (raw fork) each add one to a shared
 * counter n times, started together by closing a pipe; the figure is the
 * time from the start signal to the last one done, per increment:
 *   mproc Value   acquire; get; set(x + 1); release  (the tutorial's
 *                 `with v.get_lock(): v.value += 1`)
 *   floors        a raw atomic fetch_add on a MAP_SHARED word (no lock at
 *                 all), and a raw process-shared pthread mutex around ++
 *   CPython 3.11  the same with Value('i') and get_lock() (bench/py/
 *                 shm_bench.py), two fork processes, started by an Event.
 * Also single-process costs against CPython: creating and freeing a Value
 * (the shared heap against multiprocessing.heap), and creating, closing
 * and unlinking a 4 KiB SharedMemory (both register with their tracker).
 *
 * Rounds are interleaved (every contender once per round, CPython through
 * one popen per round) and figures are medians over rounds. Targets are
 * reported, never asserted.
 *
 * Usage: bench_shm [-r rounds] [-n increments] [-P]
 *   -r rounds (default 7), -n increments per process (default 200000),
 *   -P skip CPython.
 * Environment: MPROC_BENCH_PYTHON (interpreter, default
 * ~/.pyenv/versions/3.11.7/bin/python), MPROC_BENCH_PY_DIR (where
 * shm_bench.py lives, default bench/py beside this source file).
 */
#include <mproc.h>

#include "bench_util.h"

#include <errno.h>
#include <libgen.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUNDS 64
#define PY_INCR    20000
#define PY_NEW     2000
#define PY_SHM     500
#define N_NEW      200000
#define N_SHM      2000

enum {
    C_VALUE,
    C_ATOMIC,
    C_MUTEX,
    C_PY_INCR,
    C_NEW,
    C_PY_NEW,
    C_SHM,
    C_PY_SHM,
    C_COUNT
};

static double fig[C_COUNT][MAX_ROUNDS];
static int nfig[C_COUNT];

typedef struct area {
    double start, end[2];
    long counter;
    pthread_mutex_t mu;
} area;

static area *A;
static mproc_value *V;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int r)
{
    fprintf(stderr, "bench_shm: %s: %s\n", what, mproc_strerror(r));
    exit(1);
}

static void body_value(long n)
{
    for (long i = 0; i < n; i++) {
        int64_t x;
        mproc_value_acquire(V, -1);
        mproc_value_get_i64(V, &x);
        mproc_value_set_i64(V, x + 1);
        mproc_value_release(V);
    }
}

static void body_atomic(long n)
{
    for (long i = 0; i < n; i++)
        __atomic_fetch_add(&A->counter, 1, __ATOMIC_SEQ_CST);
}

static void body_mutex(long n)
{
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&A->mu);
        A->counter++;
        pthread_mutex_unlock(&A->mu);
    }
}

/* Two processes run body(n) from one start signal; ns per operation. */
static double pair(void (*body)(long), long n, int64_t (*total)(void))
{
    int gate[2];
    if (pipe(gate) < 0)
        die("pipe", -errno);
    fflush(NULL);
    pid_t pid[2];
    for (int i = 0; i < 2; i++) {
        pid[i] = fork();
        if (pid[i] < 0)
            die("fork", -errno);
        if (pid[i] == 0) {
            char c;
            close(gate[1]);
            if (read(gate[0], &c, 1) < 0)
                _exit(1);
            body(n);
            A->end[i] = now();
            _exit(0);
        }
    }
    close(gate[0]);
    usleep(20000); /* both are blocked on the pipe */
    A->start = now();
    close(gate[1]);
    for (int i = 0; i < 2; i++) {
        int st = 0;
        if (waitpid(pid[i], &st, 0) < 0 || !WIFEXITED(st) ||
            WEXITSTATUS(st) != 0) {
            fprintf(stderr, "bench_shm: a child failed (status 0x%x)\n", st);
            exit(1);
        }
    }
    if (total() != 2 * n) {
        fprintf(stderr, "bench_shm: lost increments (%lld of %ld)\n",
                (long long)total(), 2 * n);
        exit(1);
    }
    double end = A->end[0] > A->end[1] ? A->end[0] : A->end[1];
    return (end - A->start) / (double)(2 * n) * 1e9;
}

static int64_t total_value(void)
{
    int64_t x = -1;
    mproc_value_get_i64(V, &x);
    mproc_value_set_i64(V, 0);
    return x;
}

static int64_t total_area(void)
{
    long x = A->counter;
    A->counter = 0;
    return x;
}

static double bench_new(void)
{
    static mproc_value *v[64];
    double t0 = now();
    for (int i = 0; i < N_NEW; i += 64) {
        /* a few live at once, as a program holding several values */
        for (int k = 0; k < 64; k++) {
            int r = mproc_value_new(&v[k], 'i');
            if (r < 0)
                die("mproc_value_new", r);
        }
        for (int k = 0; k < 64; k++)
            mproc_value_free(v[k]);
    }
    return (now() - t0) / (N_NEW / 64 * 64) * 1e9;
}

static double bench_shm(void)
{
    double t0 = now();
    for (int i = 0; i < N_SHM; i++) {
        mproc_shm *s;
        int r = mproc_shm_create(&s, NULL, 4096, 0);
        if (r < 0)
            die("mproc_shm_create", r);
        mproc_shm_close(s);
        mproc_shm_unlink(s);
        mproc_shm_free(s);
    }
    return (now() - t0) / N_SHM * 1e9;
}

static char py_cmd[4096];

static bool python_setup(void)
{
    const char *py = bench_python("bench_shm");
    const char *script =
        py ? bench_py_script("bench_shm", "shm_bench.py") : NULL;
    if (!script)
        return false;
    snprintf(py_cmd, sizeof py_cmd, "'%s' '%s' incr:%d new:%d shm:%d", py,
             script, PY_INCR, PY_NEW, PY_SHM);
    return true;
}

static void python_round(void)
{
    fflush(NULL);
    FILE *f = popen(py_cmd, "r");
    if (!f)
        die("popen", -errno);
    char mode[16];
    double ns;
    while (fscanf(f, "%15s %lf", mode, &ns) == 2) {
        int c = strcmp(mode, "incr") == 0  ? C_PY_INCR
                : strcmp(mode, "new") == 0 ? C_PY_NEW
                : strcmp(mode, "shm") == 0 ? C_PY_SHM
                                           : -1;
        if (c >= 0 && nfig[c] < MAX_ROUNDS)
            fig[c][nfig[c]++] = ns;
    }
    if (pclose(f) != 0)
        fprintf(stderr, "bench_shm: CPython round failed\n");
}

static double median(int c)
{
    return bench_median(fig[c], nfig[c]);
}

static void add(int c, double x)
{
    if (nfig[c] < MAX_ROUNDS)
        fig[c][nfig[c]++] = x;
}

static void line_vs(const char *what, int mine, int peer, const char *unit,
                    double scale, const char *target)
{
    double a = median(mine) / scale, b = median(peer) / scale;
    if (nfig[peer] == 0) {
        printf("%-44s mproc %9.1f %s   CPython n/a\n", what, a, unit);
        return;
    }
    printf("%-44s mproc %9.1f %s   CPython 3.11 %9.1f %s   %6.1fx faster%s\n",
           what, a, unit, b, unit, b / a, target);
}

int main(int argc, char **argv)
{
    int rounds = 7, opt;
    long n = 200000;
    bool py = true;
    while ((opt = getopt(argc, argv, "r:n:P")) != -1) {
        if (opt == 'r')
            rounds = atoi(optarg);
        else if (opt == 'n')
            n = atol(optarg);
        else if (opt == 'P')
            py = false;
        else
            return 2;
    }
    if (rounds < 1 || rounds > MAX_ROUNDS || n < 1) {
        fprintf(stderr, "bench_shm: bad -r/-n\n");
        return 2;
    }
    A = mmap(NULL, sizeof *A, PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (A == MAP_FAILED)
        die("mmap", -errno);
    pthread_mutexattr_t at;
    pthread_mutexattr_init(&at);
    pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&A->mu, &at);
    int r = mproc_value_new(&V, 'i');
    if (r < 0)
        die("mproc_value_new", r);
    py = py && python_setup();

    for (int round = 0; round < rounds; round++) {
        /* rotate the order so no contender always runs first */
        for (int k = 0; k < 4; k++) {
            switch ((k + round) % 4) {
            case 0:
                add(C_VALUE, pair(body_value, n, total_value));
                break;
            case 1:
                add(C_ATOMIC, pair(body_atomic, n, total_area));
                break;
            case 2:
                add(C_MUTEX, pair(body_mutex, n, total_area));
                break;
            case 3:
                if (py)
                    python_round();
                break;
            }
        }
        add(C_NEW, bench_new());
        add(C_SHM, bench_shm());
    }

    printf("shm, median of %d interleaved rounds (%ld increments per "
           "process; CPython %d)\n",
           rounds, n, PY_INCR);
    line_vs("Value += 1 under the lock, 2 processes", C_VALUE, C_PY_INCR,
            "ns/op", 1, "  (target >= 20x)");
    printf("%-44s raw   %9.1f ns/op   mproc/raw %6.2fx\n",
           "  floor: atomic fetch_add, 2 processes", median(C_ATOMIC),
           median(C_VALUE) / median(C_ATOMIC));
    printf("%-44s raw   %9.1f ns/op   mproc/raw %6.2fx\n",
           "  floor: pshared pthread mutex ++, 2 procs", median(C_MUTEX),
           median(C_VALUE) / median(C_MUTEX));
    line_vs("Value create + free (with lock)", C_NEW, C_PY_NEW, "ns/op", 1, "");
    line_vs("SharedMemory 4 KiB create+close+unlink", C_SHM, C_PY_SHM, "us/op",
            1000, "");
    /* For bench/plot.sh's ratio chart (0: not measured, shown as "-"). */
    double val = median(C_VALUE), pyv = median(C_PY_INCR);
    bench_ratio_row("Value += 1 under lock",
                    val > 0 ? median(C_MUTEX) / val : 0,
                    val > 0 && pyv > 0 ? pyv / val : 0);
    double sh = median(C_SHM), pys = median(C_PY_SHM);
    bench_ratio_row("SharedMemory create", 0, sh > 0 && pys > 0 ? pys / sh : 0);
    mproc_value_free(V);
    return 0;
}
