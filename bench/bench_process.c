/*
 * bench_process.c - process start + join per start method (issue 2, §6).
 *
 * For each start method mproc's new + start + join + free of a target that
 * returns at once is timed against its floor, measured in the same run:
 *   fork        vs raw fork() + waitpid(), the child _exit(0)s at once;
 *   spawn       vs raw posix_spawn(/proc/self/exe) + waitpid(), the child
 *               being this binary run with EXIT_ARG (main() checks it
 *               first and _exit(0)s): same exec, same dynamic loading;
 *   forkserver  vs raw fork() + waitpid();
 * and against CPython 3.11's Process with the same start method
 * (bench/py/process_bench.py, run through popen once per round).
 *
 * Rounds are interleaved (every contender once per round, the order
 * rotating) and each figure is the median over rounds of the round's mean
 * in microseconds per start + join. Targets are reported, never asserted.
 *
 * Then the fork server's preload (issue 9, section 3): forkserver start +
 * join of a target that loads a library whose constructor does real work
 * (preload_lib.c, as a plugin: dlopen + dlsym + call), with the library in
 * mproc_set_forkserver_preload (the server loads it once, each child
 * starts with it) and without (each child loads it and runs the
 * constructor). The server is restarted between the two (untimed).
 *
 * Usage: bench_process [-r rounds] [-n ops] [-s spawn_ops] [-P]
 *        bench_process -x raw|fork|spawn|forkserver [-n ops]
 *   -n  ops per round for fork-like contenders (default 200)
 *   -s  ops per round for spawn-like contenders (default 60)
 *   -P  skip CPython
 *   -x  only ops starts + joins of that contender (after 5 untimed), no
 *       report: for CPU time and context switches of every process of
 *       the run, e.g. perf stat -e task-clock,context-switches
 *       bench_process -x forkserver -n 2000
 * Environment: MPROC_BENCH_PYTHON (interpreter, default
 * ~/.pyenv/versions/3.11.7/bin/python), MPROC_BENCH_PY_DIR (where
 * process_bench.py lives, default bench/py beside this source file).
 */
#include <mproc.h>

#include "bench_util.h"

#include <dlfcn.h>
#include <errno.h>
#include <libgen.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_ARG   "--bench-exit-at-once"
#define MAX_ROUNDS 64

extern char **environ;

enum {
    C_RAW_FORK,
    C_RAW_SPAWN,
    C_FORK,
    C_SPAWN,
    C_FORKSERVER,
    C_PY_FORK,
    C_PY_SPAWN,
    C_PY_FORKSERVER,
    C_COUNT
};

static const char *const names[C_COUNT] = {
    "raw fork+waitpid", "raw posix_spawn+waitpid", "mproc fork",
    "mproc spawn",      "mproc forkserver",        "CPython fork",
    "CPython spawn",    "CPython forkserver"};

static double samples[C_COUNT][MAX_ROUNDS];
static int nsamples[C_COUNT];

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int noop(const mproc_args *args)
{
    (void)args;
    return 0;
}

/* ---- contenders: each runs n start + join and returns 0 or -errno ---- */

static int raw_fork(int n)
{
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0)
            return -errno;
        if (pid == 0)
            _exit(0);
        int st;
        if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
            return -ECHILD;
    }
    return 0;
}

static int raw_spawn(int n)
{
    char *argv[] = {program_invocation_name, EXIT_ARG, NULL};
    for (int i = 0; i < n; i++) {
        pid_t pid;
        int e = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ);
        if (e != 0)
            return -e;
        int st;
        if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
            return -ECHILD;
    }
    return 0;
}

/* n starts + joins of target under m. */
static int mproc_run_target(mproc_target target, mproc_start_method m, int n)
{
    for (int i = 0; i < n; i++) {
        mproc_process *p;
        int r = mproc_process_new(&p, target, NULL);
        if (r < 0)
            return r;
        r = mproc_process_set_start_method(p, m);
        if (r == 0)
            r = mproc_process_start(p);
        if (r == 0)
            r = mproc_process_join(p, -1);
        if (r == 0 && mproc_process_exitcode(p) != 0)
            r = -ECHILD;
        mproc_process_free(p);
        if (r < 0)
            return r;
    }
    return 0;
}

static int run_starts(mproc_start_method m, int n)
{
    return mproc_run_target(noop, m, n);
}

/* ---- the fork server's preload --------------------------------------- */

/* The target: loads the plugin and runs its entry. */
static int preload_target(const mproc_args *args)
{
    void *h = dlopen(MPROC_BENCH_PRELOAD, RTLD_NOW);
    void *sym = h ? dlsym(h, "bench_preload_target") : NULL;
    if (!sym)
        return 2;
    mproc_target fn;
    memcpy(&fn, &sym, sizeof sym);
    return fn(args);
}

/* n forkserver starts + joins of the library's target; with the library
 * preloaded by a server started anew, or not. Returns us per op, or a
 * negative code. */
static double preload_round(bool preload, int n)
{
    const char *libs[] = {MPROC_BENCH_PRELOAD};
    int r = mproc_set_forkserver_preload(libs, preload ? 1 : 0);
    mproc_shutdown(); /* the next start brings up a server with the list */
    if (r == 0)       /* the new server, untimed */
        r = mproc_run_target(preload_target, MPROC_START_FORKSERVER, 2);
    if (r < 0)
        return r;
    double t0 = now_us();
    r = mproc_run_target(preload_target, MPROC_START_FORKSERVER, n);
    if (r < 0)
        return r;
    return (now_us() - t0) / n;
}

static int preload_bench(int rounds, int n)
{
    double with[MAX_ROUNDS], without[MAX_ROUNDS];
    for (int round = 0; round < rounds; round++) {
        for (int k = 0; k < 2; k++) {
            bool pre = (round + k) % 2;
            double us = preload_round(pre, n);
            if (us < 0)
                return (int)us;
            (pre ? with : without)[round] = us;
        }
    }
    mproc_set_forkserver_preload(NULL, 0);
    double a = bench_median(without, rounds), b = bench_median(with, rounds);
    printf("forkserver start+join of a target that loads a library whose "
           "constructor sieves 2^23 (median of %d interleaved rounds, %d "
           "ops/round)\n",
           rounds, n);
    printf("  without preload  %9.1f us  (each child dlopens it, constructor "
           "included)\n",
           a);
    printf("  preloaded        %9.1f us  (the server loaded it once)   "
           "%6.1fx faster\n",
           b, a / b);
    return 0;
}

/* ---- CPython peer ------------------------------------------------------ */

static char py_cmd[8192];

static int python_setup(int nfork, int nspawn, int nfs)
{
    const char *py = bench_python("bench_process");
    const char *script =
        py ? bench_py_script("bench_process", "process_bench.py") : NULL;
    if (!script)
        return -ENOENT;
    snprintf(py_cmd, sizeof py_cmd, "'%s' '%s' fork:%d spawn:%d forkserver:%d",
             py, script, nfork, nspawn, nfs);
    return 0;
}

/* One CPython round: all three methods, one interpreter. */
static int python_round(void)
{
    fflush(NULL);
    FILE *f = popen(py_cmd, "r");
    if (!f)
        return -errno;
    char method[32];
    double us;
    int got = 0;
    while (fscanf(f, "%31s %lf", method, &us) == 2) {
        int c = strcmp(method, "fork") == 0         ? C_PY_FORK
                : strcmp(method, "spawn") == 0      ? C_PY_SPAWN
                : strcmp(method, "forkserver") == 0 ? C_PY_FORKSERVER
                                                    : -1;
        if (c >= 0 && nsamples[c] < MAX_ROUNDS) {
            samples[c][nsamples[c]++] = us;
            got++;
        }
    }
    int st = pclose(f);
    return got == 3 && st == 0 ? 0 : -ECHILD;
}

/* ---- driver ------------------------------------------------------------ */

static int run_one(int c, int nfast, int nslow)
{
    int n = c == C_RAW_SPAWN || c == C_SPAWN ? nslow : nfast;
    double t0 = now_us();
    int r;
    switch (c) {
    case C_RAW_FORK:
        r = raw_fork(n);
        break;
    case C_RAW_SPAWN:
        r = raw_spawn(n);
        break;
    case C_FORK:
        r = run_starts(MPROC_START_FORK, n);
        break;
    case C_SPAWN:
        r = run_starts(MPROC_START_SPAWN, n);
        break;
    default:
        r = run_starts(MPROC_START_FORKSERVER, n);
        break;
    }
    if (r == 0 && nsamples[c] < MAX_ROUNDS)
        samples[c][nsamples[c]++] = (now_us() - t0) / n;
    return r;
}

static double median(int c)
{
    return bench_median(samples[c], nsamples[c]);
}

/* One line: figure, peer, ratio, target. */
static void report(const char *method, int mine, int peer, bool peer_over,
                   double target)
{
    double a = median(mine), b = median(peer);
    if (a < 0 || b < 0) {
        printf("%-10s %-17s %9.1f us  %-24s       n/a\n", method, names[mine],
               a, names[peer]);
        return;
    }
    /* peer_over: ratio is peer/mine (CPython is slower); else mine/peer. */
    double ratio = peer_over ? b / a : a / b;
    bool ok = peer_over ? ratio >= target : ratio <= target;
    printf("%-10s %-17s %9.1f us  %-24s %9.1f us  %s %6.2fx  (target %s "
           "%.1fx: %s)\n",
           method, names[mine], a, names[peer], b,
           peer_over ? "CPython/mproc" : "mproc/raw    ", ratio,
           peer_over ? ">=" : "<=", target, ok ? "met" : "MISSED");
}

int main(int argc, char **argv)
{
    /* The raw posix_spawn contender's child: exit before anything else. */
    if (argc > 1 && strcmp(argv[1], EXIT_ARG) == 0)
        _exit(0);

    int rounds = 7, nfast = 200, nslow = 60, opt;
    bool python = true;
    const char *only = NULL;
    while ((opt = getopt(argc, argv, "r:n:s:Px:")) != -1) {
        switch (opt) {
        case 'r':
            rounds = atoi(optarg);
            break;
        case 'n':
            nfast = atoi(optarg);
            break;
        case 's':
            nslow = atoi(optarg);
            break;
        case 'P':
            python = false;
            break;
        case 'x':
            only = optarg;
            break;
        default:
            fprintf(stderr,
                    "usage: %s [-r rounds] [-n ops] [-s spawn_ops] "
                    "[-P]\n       %s -x raw|fork|spawn|forkserver [-n ops]\n",
                    argv[0], argv[0]);
            return 2;
        }
    }
    if (rounds < 1 || rounds > MAX_ROUNDS || nfast < 1 || nslow < 1) {
        fprintf(stderr, "bench_process: bad -r/-n/-s\n");
        return 2;
    }
    if (only) {
        static const char *const which[] = {"raw", NULL, "fork", "spawn",
                                            "forkserver"};
        int c = -1;
        for (int i = 0; i < 5; i++)
            if (which[i] && strcmp(only, which[i]) == 0)
                c = i;
        int r = c < 0 ? -EINVAL : run_one(c, 5, 5);
        if (r == 0)
            r = run_one(c, nfast, nfast);
        if (r < 0)
            fprintf(stderr, "bench_process -x %s: %s\n", only,
                    mproc_strerror(r));
        return r < 0;
    }
    /* CPython's per-op cost is ~10x ours: fewer ops keep rounds short. */
    if (python && python_setup(nfast / 4 > 0 ? nfast / 4 : 1,
                               nslow / 12 > 0 ? nslow / 12 : 1,
                               nfast / 4 > 0 ? nfast / 4 : 1) < 0)
        python = false;

    /* Warm-up, untimed: page cache, the fork server, lazy binding. */
    for (int c = C_RAW_FORK; c <= C_FORKSERVER; c++) {
        int r = run_one(c, 5, 2);
        if (r < 0) {
            fprintf(stderr, "bench_process: %s: %s\n", names[c],
                    mproc_strerror(r));
            return 1;
        }
        nsamples[c] = 0;
    }

    const int ncontenders = python ? 6 : 5;
    for (int round = 0; round < rounds; round++) {
        for (int k = 0; k < ncontenders; k++) {
            int c = (round + k) % ncontenders; /* rotate the order */
            int r = c == 5 ? python_round() : run_one(c, nfast, nslow);
            if (r < 0) {
                fprintf(stderr, "bench_process: %s: %s\n",
                        c == 5 ? "CPython" : names[c], mproc_strerror(r));
                return 1;
            }
        }
    }

    printf("process start+join, median of %d interleaved rounds "
           "(%d ops/round, spawn %d), us per op\n",
           rounds, nfast, nslow);
    report("fork", C_FORK, C_RAW_FORK, false, 1.3);
    report("spawn", C_SPAWN, C_RAW_SPAWN, false, 1.5);
    report("forkserver", C_FORKSERVER, C_RAW_FORK, false, 1.5);
    if (python) {
        report("fork", C_FORK, C_PY_FORK, true, 20);
        report("spawn", C_SPAWN, C_PY_SPAWN, true, 20);
        report("forkserver", C_FORKSERVER, C_PY_FORKSERVER, true, 20);
    }
    /* Speeds (1 / time) against the floor and CPython, for the charts. */
    static const int fig[3][3] = {{C_FORK, C_RAW_FORK, C_PY_FORK},
                                  {C_SPAWN, C_RAW_SPAWN, C_PY_SPAWN},
                                  {C_FORKSERVER, C_RAW_FORK, C_PY_FORKSERVER}};
    static const char *const fname[3] = {"fork start+join", "spawn start+join",
                                         "forkserver start+join"};
    for (int i = 0; i < 3; i++) {
        double a = median(fig[i][0]);
        double py = python ? median(fig[i][2]) : 0;
        bench_ratio_row(fname[i], a > 0 ? median(fig[i][1]) / a : 0,
                        a > 0 && py > 0 ? py / a : 0);
    }
    int r = preload_bench(rounds, nslow);
    if (r < 0) {
        fprintf(stderr, "bench_process: preload: %s\n", mproc_strerror(r));
        return 1;
    }
    return 0;
}
