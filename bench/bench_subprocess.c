/*
 * bench_subprocess.c - running other programs (issue 12, section 4).
 *
 *   start    mproc_run(["true"]) against its floor, raw posix_spawnp +
 *            waitpid, and CPython 3.11's subprocess.run(["true"]); then
 *            the same from a parent with 1 GiB resident (mproc, the raw
 *            posix_spawn floor, raw fork + exec + waitpid for contrast,
 *            CPython with a 1 GiB bytearray): the cost must stay flat.
 *            The 1 GiB rounds follow the others: "flat" compares mproc's
 *            two figures, and the floor's two say what the machine did
 *            meanwhile.
 *   capture  200 MB of stdout (head -c from /dev/zero) in MB/s: mproc_run
 *            with capture_output against reading the same pipe raw (a
 *            read loop into a buffer malloc'd for the whole output), with
 *            the default 64 KiB pipe and with the 1 MiB one mproc makes
 *            for output (F_SETPIPE_SZ), and CPython's check_output.
 *   comm     100 MB in and 100 MB out through cat: communicate, MB/s,
 *            beside CPython's Popen.communicate.
 *
 * Rounds are interleaved (every contender once per round) and each figure
 * is the median over rounds; mproc's starts and the floor's alternate one
 * by one, and their figures are the medians over every single start. Targets
 * are reported, never asserted.
 *
 * Usage: bench_subprocess [-r rounds] [-n starts per round] [-P]
 *   -P  skip CPython
 * Environment: MPROC_BENCH_PYTHON, MPROC_BENCH_PY_DIR (bench_util.h).
 */
#include <mproc.h>

#include "bench_util.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUNDS 64
#define CAPTURE    (200 * 1000 * 1000)
#define COMM       (100 * 1000 * 1000)

extern char **environ;

enum {
    S_RAW,   /* posix_spawnp + waitpid */
    S_MPROC, /* mproc_run */
    S_PY,    /* CPython run */
    B_RAW,   /* the same, 1 GiB resident */
    B_FORK,  /* fork + execvp + waitpid, 1 GiB resident */
    B_MPROC,
    B_PY,
    K_RAW,   /* capture, MB/s */
    K_RAW1M, /* the same with the pipe mproc makes: 1 MiB */
    K_MPROC,
    K_PY,
    M_MPROC, /* communicate, MB/s */
    M_PY,
    NC
};

static double samples[NC][MAX_ROUNDS];
static int nsamples[NC];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void add(int c, double v)
{
    if (nsamples[c] < MAX_ROUNDS)
        samples[c][nsamples[c]++] = v;
}

static double med(int c)
{
    return bench_median(samples[c], nsamples[c]);
}

static char *const true_argv[] = {"true", NULL};

static int raw_spawn(void)
{
    pid_t pid;
    int r = posix_spawnp(&pid, "true", NULL, NULL, true_argv, environ);
    if (r != 0)
        return -r;
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

static int raw_fork(void)
{
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        execvp("true", true_argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

static int mproc_true(void)
{
    mproc_completed res;
    int r = mproc_run(&res, (const char *[]){"true", NULL}, NULL, -1);
    if (r == 0 && res.returncode != 0)
        r = -EIO;
    mproc_completed_free(&res);
    return r;
}

/* Starts per second of one kind, as microseconds per start. */
static int time_starts(int c, int (*fn)(void), int n)
{
    double t0 = now();
    for (int i = 0; i < n; i++) {
        int r = fn();
        if (r < 0)
            return r;
    }
    add(c, (now() - t0) / n * 1e6);
    return 0;
}

/* mproc and the raw floor alternating start by start, so that both see
 * the same moments of a busy machine. Every start's time is kept: their
 * median (over all rounds) is the figure, which a burst of load on the
 * shared machine moves far less than a round's mean. */
#define MAX_OPS 65536
static double g_ops[NC][MAX_OPS];
static int g_nops[NC];

static int time_pair(int raw, int mine, int n)
{
    for (int i = 0; i < 2 * n; i++) {
        int c = i % 2 ? mine : raw;
        double t0 = now();
        int r = i % 2 ? mproc_true() : raw_spawn();
        if (r < 0)
            return r;
        if (g_nops[c] < MAX_OPS)
            g_ops[c][g_nops[c]++] = (now() - t0) * 1e6;
    }
    return 0;
}

/* The median start of contender c, into its one sample. */
static void ops_median(int c)
{
    if (g_nops[c] == 0)
        return;
    qsort(g_ops[c], (size_t)g_nops[c], sizeof(double), bench_cmp_double);
    nsamples[c] = 0;
    add(c, g_ops[c][g_nops[c] / 2]);
}

static const char *head_argv[] = {"head", "-c", "200000000", "/dev/zero", NULL};

/* The floor: the same child, its pipe read raw into a buffer allocated
 * (not yet touched) for the whole output, as a capture must. */
static int raw_capture(int c, int pipe_size)
{
    char *buf = malloc(CAPTURE + 1);
    if (!buf)
        return -ENOMEM;
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        free(buf);
        return -errno;
    }
    if (pipe_size)
        fcntl(p[0], F_SETPIPE_SZ, pipe_size);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    pid_t pid;
    double t0 = now();
    int r = posix_spawnp(&pid, "head", &fa, NULL, (char *const *)head_argv,
                         environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (r != 0) {
        close(p[0]);
        free(buf);
        return -r;
    }
    size_t got = 0;
    for (;;) {
        ssize_t n = read(p[0], buf + got, CAPTURE + 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(p[0]);
    waitpid(pid, NULL, 0);
    double dt = now() - t0;
    free(buf);
    if (got != CAPTURE)
        return -EIO;
    add(c, CAPTURE / dt / 1e6);
    return 0;
}

static int mproc_capture(void)
{
    mproc_completed res;
    mproc_run_opts o = {.capture_output = true};
    double t0 = now();
    int r = mproc_run(&res, head_argv, &o, -1);
    double dt = now() - t0;
    if (r == 0 && (res.out_len != CAPTURE || res.returncode != 0))
        r = -EIO;
    mproc_completed_free(&res);
    if (r == 0)
        add(K_MPROC, CAPTURE / dt / 1e6);
    return r;
}

static int mproc_comm(const char *in)
{
    mproc_popen *p;
    mproc_popen_opts o = {.in = {MPROC_STDIO_PIPE}, .out = {MPROC_STDIO_PIPE}};
    double t0 = now();
    int r = mproc_popen_new(&p, (const char *[]){"cat", NULL}, &o, NULL);
    if (r < 0)
        return r;
    char *out;
    size_t n;
    r = mproc_popen_communicate(p, in, COMM, &out, &n, NULL, NULL, -1);
    double dt = now() - t0;
    if (r == 0 && (n != COMM || memcmp(out, in, COMM) != 0 ||
                   mproc_popen_returncode(p) != 0))
        r = -EIO;
    if (r == 0)
        free(out);
    mproc_popen_free(p);
    if (r == 0)
        add(M_MPROC, COMM / dt / 1e6);
    return r;
}

/* One CPython run of spec; its figure goes to sample c. */
static int python(const char *py, const char *script, const char *spec, int c)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' '%s' %s", py, script, spec);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -errno;
    char name[32];
    double v;
    int ok = fscanf(f, "%31s %lf", name, &v) == 2;
    int st = pclose(f);
    if (!ok || st != 0)
        return -EIO;
    add(c, v);
    return 0;
}

/* What the rounds need: the CPython interpreter and script, the input. */
static const char *g_py, *g_script;
static const char *g_in;

/* Runs contender c once (n starts for the start figures). */
static int one(int c, int n)
{
    char spec[64];
    int npy = n / 4 > 0 ? n / 4 : 1; /* CPython: a few times slower */
    switch (c) {
    case S_RAW:
    case B_RAW:
        return time_pair(c, c == S_RAW ? S_MPROC : B_MPROC, n);
    case S_MPROC:
    case B_MPROC:
        return 0; /* with its floor, in time_pair */
    case B_FORK:
        return time_starts(c, raw_fork, n / 40 > 0 ? n / 40 : 1);
    case K_RAW:
        return raw_capture(c, 0);
    case K_RAW1M:
        return raw_capture(c, 1 << 20);
    case K_MPROC:
        return mproc_capture();
    case M_MPROC:
        return mproc_comm(g_in);
    default:
        break;
    }
    if (!g_py)
        return 0;
    if (c == S_PY || c == B_PY)
        snprintf(spec, sizeof spec, "%s:%d", c == S_PY ? "run" : "runbig", npy);
    else
        snprintf(spec, sizeof spec, "%s:%d", c == K_PY ? "capture" : "comm",
                 c == K_PY ? CAPTURE : COMM);
    return python(g_py, g_script, spec, c);
}

/* Round number round of the contenders cs[0..k), the order rotating from
 * round to round. */
static int round_of(const int *cs, int k, int round, int n)
{
    for (int j = 0; j < k; j++) {
        int r = one(cs[(round + j) % k], n);
        if (r < 0)
            return r;
    }
    return 0;
}

/* All rounds of cs[0..k) with 1 GiB of this process resident: mapped and
 * written first, then a pause for the kernel's background work on fresh
 * memory (it would otherwise slow the first rounds, floor and mproc
 * alike), unmapped after. */
static int rounds_big(const int *cs, int k, int rounds, int n)
{
    size_t big = (size_t)1 << 30;
    char *mem = mmap(NULL, big, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return -ENOMEM;
    memset(mem, 1, big);
    sleep(1);
    int r = 0;
    for (int round = 0; round < rounds && r == 0; round++)
        r = round_of(cs, k, round, n);
    munmap(mem, big);
    return r;
}

static void line(const char *what, double a, const char *unit, const char *peer,
                 double b, double ratio, const char *rel, const char *target,
                 bool met)
{
    printf("%-34s %10.1f %-5s %-26s %10.1f  %s %6.2fx", what, a, unit, peer, b,
           rel, ratio);
    if (target)
        printf("  (target %s: %s)", target, met ? "met" : "MISSED");
    printf("\n");
}

int main(int argc, char **argv)
{
    int rounds = 7, n = 200, opt;
    bool want_py = true;
    while ((opt = getopt(argc, argv, "r:n:P")) != -1) {
        switch (opt) {
        case 'r':
            rounds = atoi(optarg);
            break;
        case 'n':
            n = atoi(optarg);
            break;
        case 'P':
            want_py = false;
            break;
        default:
            fprintf(stderr, "usage: %s [-r rounds] [-n starts] [-P]\n",
                    argv[0]);
            return 2;
        }
    }
    if (rounds < 1 || rounds > MAX_ROUNDS || n < 1) {
        fprintf(stderr, "bench_subprocess: bad -r/-n\n");
        return 2;
    }
    const char *py = want_py ? bench_python("bench_subprocess") : NULL;
    const char *script =
        py ? bench_py_script("bench_subprocess", "subprocess_bench.py") : NULL;
    if (!script)
        py = NULL;
    int npy = n / 4 > 0 ? n / 4 : 1;
    g_py = py;
    g_script = script;

    char *in = malloc(COMM);
    if (!in)
        return 1;
    for (size_t i = 0; i < COMM; i++)
        in[i] = (char)('a' + i % 26);
    g_in = in;

    /* Warm-up, untimed. */
    if (raw_spawn() < 0 || mproc_true() < 0) {
        fprintf(stderr, "bench_subprocess: cannot run true\n");
        return 1;
    }
    const int small[] = {S_RAW,   S_MPROC, S_PY,    K_RAW, K_MPROC,
                         K_RAW1M, K_PY,    M_MPROC, M_PY};
    const int large[] = {B_RAW, B_MPROC, B_FORK, B_PY};
    int r = 0;
    for (int round = 0; round < rounds && r == 0; round++)
        r = round_of(small, 9, round, n);
    if (r == 0)
        r = rounds_big(large, 4, rounds, n);
    free(in);
    if (r < 0) {
        fprintf(stderr, "bench_subprocess: %s\n", mproc_strerror(r));
        return 1;
    }

    ops_median(S_RAW);
    ops_median(S_MPROC);
    ops_median(B_RAW);
    ops_median(B_MPROC);
    printf("subprocess, median of %d interleaved rounds (%d starts/round, "
           "CPython %d)\n",
           rounds, n, npy);
    line("run([true]) us", med(S_MPROC), "us", "posix_spawnp+waitpid",
         med(S_RAW), med(S_MPROC) / med(S_RAW), "mproc/raw", "<= 1.1x",
         med(S_MPROC) <= 1.1 * med(S_RAW));
    if (py)
        line("run([true]) us", med(S_MPROC), "us", "CPython run", med(S_PY),
             med(S_PY) / med(S_MPROC), "CPython/mproc", ">= 5x",
             med(S_PY) >= 5 * med(S_MPROC));
    if (py)
        printf("%-34s %10.1f us    %-26s %10.1f us  (above the floor)\n",
               "overhead: mproc run", med(S_MPROC) - med(S_RAW), "CPython run",
               med(S_PY) - med(S_RAW));
    line("run([true]) us, 1 GiB parent", med(B_MPROC), "us",
         "posix_spawnp+waitpid", med(B_RAW), med(B_MPROC) / med(B_RAW),
         "mproc/raw", NULL, false);
    line("run([true]) us, 1 GiB parent", med(B_MPROC), "us",
         "same, small parent", med(S_MPROC), med(B_MPROC) / med(S_MPROC),
         "big/small", "flat", med(B_MPROC) <= 1.2 * med(S_MPROC));
    line("posix_spawnp us, 1 GiB parent", med(B_RAW), "us",
         "same, small parent", med(S_RAW), med(B_RAW) / med(S_RAW), "big/small",
         NULL, false);
    line("fork+exec us, 1 GiB parent", med(B_FORK), "us", "mproc, 1 GiB parent",
         med(B_MPROC), med(B_FORK) / med(B_MPROC), "fork/mproc", NULL, false);
    if (py)
        line("CPython run us, 1 GiB parent", med(B_PY), "us",
             "CPython, small parent", med(S_PY), med(B_PY) / med(S_PY),
             "big/small", NULL, false);
    line("capture 200 MB, MB/s", med(K_MPROC), "MB/s", "raw read, 64 KiB pipe",
         med(K_RAW), med(K_MPROC) / med(K_RAW), "mproc/raw", ">= 0.9x",
         med(K_MPROC) >= 0.9 * med(K_RAW));
    line("capture 200 MB, MB/s", med(K_MPROC), "MB/s", "raw read, 1 MiB pipe",
         med(K_RAW1M), med(K_MPROC) / med(K_RAW1M), "mproc/raw", ">= 0.9x",
         med(K_MPROC) >= 0.9 * med(K_RAW1M));
    if (py)
        line("capture 200 MB, MB/s", med(K_MPROC), "MB/s",
             "CPython check_output", med(K_PY), med(K_MPROC) / med(K_PY),
             "mproc/CPython", NULL, false);
    if (py)
        line("communicate 100+100 MB, MB/s", med(M_MPROC), "MB/s",
             "CPython communicate", med(M_PY), med(M_MPROC) / med(M_PY),
             "mproc/CPython", NULL, false);
    else
        printf("%-34s %10.1f MB/s\n", "communicate 100+100 MB, MB/s",
               med(M_MPROC));
    /* For bench/plot.sh's ratio chart: mproc's speed over the floor's and
     * over CPython's (0: not measured, shown as "-"). */
    bench_ratio_row("subprocess run([true])", med(S_RAW) / med(S_MPROC),
                    py ? med(S_PY) / med(S_MPROC) : 0);
    bench_ratio_row("subprocess capture 200MB", med(K_MPROC) / med(K_RAW1M),
                    py ? med(K_MPROC) / med(K_PY) : 0);
    return 0;
}
