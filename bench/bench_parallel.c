/*
 * bench/bench_parallel.c - mproc-parallel against GNU parallel, xargs -P
 * and the floor (a serial posix_spawn + waitpid loop of /bin/true).
 *
 * Per-job overhead: the wall time of N `true` jobs at -j2, divided by N,
 * for N = 1,000 and 10,000; the floor spawns the same command lines
 * (`true 1`...) and, in brackets, bare `true`. Startup: one job, start to
 * end. --pipe: MB/s through `wc -c` (in) and `cat` (in and out, to
 * /dev/null) of a file of 100-byte lines in the page cache, from the file
 * and through a pipe, against one job fed by `cat` through one pipe (the
 * floor) and through `dd bs=4M` between (a relay that copies, as a runner
 * that reads stdin does). Each figure is the median of
 * BENCH_REPS runs (default 3; startup 11), all in the same run. GNU
 * parallel is skipped (and said so) when it is not installed.
 *
 *   bench_parallel [path/to/mproc-parallel]
 *   (BENCH_NO_GNU=1: without GNU parallel, for before/after runs)
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* Seconds to run a shell command line (its status must be 0). */
static double run(const char *cmd)
{
    char *argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    pid_t pid;
    double t = now();
    if (posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ) != 0)
        return -1;
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    t = now() - t;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "bench_parallel: failed: %s\n", cmd);
        return -1;
    }
    return t;
}

/* The floor: n times posix_spawn(/bin/true) + waitpid, one after the
 * other; with args, each with the argument the contenders give it
 * (`true 1`, `true 2`...: the same programs as theirs, and `true` with an
 * argument sets its locale up, which costs it more than all the rest). */
static double floor_run(int n, int args)
{
    char num[16];
    char *argv[] = {"true", args ? num : NULL, NULL};
    double t = now();
    for (int i = 0; i < n; i++) {
        pid_t pid;
        snprintf(num, sizeof num, "%d", i + 1);
        if (posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ) != 0)
            return -1;
        int st;
        waitpid(pid, &st, 0);
    }
    return now() - t;
}

static double med_of(const char *cmd, int reps)
{
    double v[64];
    for (int i = 0; i < reps; i++)
        v[i] = run(cmd);
    return median(v, reps);
}

int main(int argc, char **argv)
{
#ifdef MPROC_PARALLEL_EXE
    const char *mp = argc > 1 ? argv[1] : MPROC_PARALLEL_EXE;
#else
    if (argc < 2) {
        fprintf(stderr, "usage: bench_parallel path/to/mproc-parallel\n");
        return 2;
    }
    const char *mp = argv[1];
#endif
    int reps = getenv("BENCH_REPS") ? atoi(getenv("BENCH_REPS")) : 3;
    if (reps < 1 || reps > 63)
        reps = 3;
    int gnu =
        !getenv("BENCH_NO_GNU") && run("command -v parallel >/dev/null") >= 0;
    char cmd[4096];

    printf("## mproc-parallel: per-job overhead, `true` jobs at -j2 "
           "(median of %d)\n\n",
           reps);
    printf("| jobs | floor: `true N` (`true`) serial posix_spawn+wait | "
           "mproc-parallel | xargs -P 2 | GNU parallel |\n"
           "|---|---|---|---|---|\n");
    int ns[2] = {1000, 10000};
    for (int k = 0; k < 2; k++) {
        int n = ns[k];
        /* Rounds interleaved: every contender once per round. GNU
         * parallel (~5 ms a job) once for 10,000 jobs. */
        double f[64], f0[64], mv[64], xv[64], gv[64];
        int gn = 0;
        for (int i = 0; i < reps; i++) {
            f[i] = floor_run(n, 1);
            f0[i] = floor_run(n, 0);
            snprintf(cmd, sizeof cmd, "seq %d | %s -j2 true", n, mp);
            mv[i] = run(cmd);
            snprintf(cmd, sizeof cmd, "seq %d | xargs -P 2 -n 1 true", n);
            xv[i] = run(cmd);
            if (gnu && (n <= 1000 || i == 0)) {
                snprintf(cmd, sizeof cmd,
                         "seq %d | parallel --will-cite -j2 true", n);
                gv[gn++] = run(cmd);
            }
        }
        double fl = median(f, reps), fl0 = median(f0, reps),
               m = median(mv, reps), x = median(xv, reps),
               g = gn ? median(gv, gn) : -1;
        printf("| %d | %.1f µs (%.1f µs) | %.1f µs (%.2fx floor) | %.1f µs "
               "(%.2fx) | ",
               n, fl / n * 1e6, fl0 / n * 1e6, m / n * 1e6, m / fl, x / n * 1e6,
               x / fl);
        if (g >= 0)
            printf("%.1f µs%s |\n", g / n * 1e6, n > 1000 ? " (1 run)" : "");
        else
            printf("not installed |\n");
        fflush(stdout);
    }

    printf("\n## Startup: one job (median of 11, interleaved)\n\n| "
           "mproc-parallel | xargs | GNU parallel |\n|---|---|---|\n");
    double mv1[11], xv1[11], gv1[11];
    snprintf(cmd, sizeof cmd, "%s true ::: 1", mp);
    for (int i = 0; i < 11; i++) {
        mv1[i] = run(cmd);
        xv1[i] = run("echo 1 | xargs true");
        gv1[i] = gnu ? run("parallel --will-cite true ::: 1") : -1;
    }
    double m1 = median(mv1, 11), x1 = median(xv1, 11),
           g1 = gnu ? median(gv1, 11) : -1;
    printf("| %.2f ms | %.2f ms | ", m1 * 1e3, x1 * 1e3);
    if (g1 >= 0)
        printf("%.2f ms |\n", g1 * 1e3);
    else
        printf("not installed |\n");

    /* --pipe: a file of 100-byte lines, 256 MiB, in the page cache. */
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[512];
    snprintf(path, sizeof path, "%s/bench_parallel.XXXXXX", tmp);
    int fd = mkstemp(path);
    if (fd < 0)
        return 1;
    char line[100];
    memset(line, 'x', sizeof line - 1);
    line[99] = '\n';
    static char chunk[1 << 20];
    for (size_t i = 0; i < sizeof chunk; i += sizeof line)
        memcpy(chunk + i, line,
               sizeof chunk - i < sizeof line ? sizeof chunk - i : sizeof line);
    size_t mb = 256;
    for (size_t i = 0; i < mb; i++)
        if (write(fd, chunk, sizeof chunk) != (ssize_t)sizeof chunk)
            return 1;
    close(fd);
    snprintf(cmd, sizeof cmd, "cat %s >/dev/null", path);
    run(cmd); /* into the page cache */
    printf("\n## --pipe throughput, %zu MiB of 100-byte lines, --block 4M, "
           "-j2 (median of %d)\n\n| | floor: one job, `cat file \\| job` | "
           "floor: a copying relay, `cat file \\| dd bs=4M \\| job` | "
           "mproc-parallel, `<file` | mproc-parallel, `cat file \\|` | "
           "GNU parallel |\n|---|---|---|---|---|---|\n",
           mb, reps);
    const char *jobs[2] = {"wc -c", "cat"};
    const char *what[2] = {"in (`wc -c`)", "in and out (`cat`)"};
    for (int k = 0; k < 2; k++) {
        /* Rounds interleaved: floor, from the file, through a pipe. */
        double fv[64], dv[64], mfv[64], mpv[64];
        for (int i = 0; i < reps; i++) {
            snprintf(cmd, sizeof cmd, "cat %s | %s >/dev/null", path, jobs[k]);
            fv[i] = run(cmd);
            snprintf(cmd, sizeof cmd,
                     "cat %s | dd bs=4M status=none | %s >/dev/null", path,
                     jobs[k]);
            dv[i] = run(cmd);
            snprintf(cmd, sizeof cmd,
                     "%s -j2 --pipe --block 4M %s <%s >/dev/null", mp, jobs[k],
                     path);
            mfv[i] = run(cmd);
            snprintf(cmd, sizeof cmd,
                     "cat %s | %s -j2 --pipe --block 4M %s >/dev/null", path,
                     mp, jobs[k]);
            mpv[i] = run(cmd);
        }
        double fl = median(fv, reps), m = median(mfv, reps),
               mp2 = median(mpv, reps);
        double g = -1;
        if (gnu) {
            snprintf(cmd, sizeof cmd,
                     "parallel --will-cite -j2 --pipe --block 4M %s <%s "
                     ">/dev/null",
                     jobs[k], path);
            g = med_of(cmd, 1);
        }
        double bytes = (double)(mb << 20);
        double dd = median(dv, reps);
        printf("| %s | %.0f MB/s | %.0f MB/s | %.0f MB/s | %.0f MB/s | ",
               what[k], bytes / fl / 1e6, bytes / dd / 1e6, bytes / m / 1e6,
               bytes / mp2 / 1e6);
        if (g > 0)
            printf("%.0f MB/s (1 run) |\n", (double)(mb << 20) / g / 1e6);
        else
            printf("not installed |\n");
        fflush(stdout);
    }
    unlink(path);
    return 0;
}
