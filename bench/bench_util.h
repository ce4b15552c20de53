/*
 * bench_util.h - what every benchmark shares: the median of a round's
 * samples, and where CPython and the peer scripts in bench/py are.
 * MPROC_BENCH_PYTHON overrides the interpreter (default
 * ~/.pyenv/versions/3.11.7/bin/python), MPROC_BENCH_PY_DIR the scripts'
 * folder (default bench/py beside this file).
 */
#ifndef MPROC_BENCH_UTIL_H
#define MPROC_BENCH_UTIL_H

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (n <= 1024; v is not modified); 0 when n is 0. */
static inline double bench_median(const double *v, int n)
{
    double s[1024];
    if (n <= 0)
        return 0;
    if (n > 1024)
        n = 1024;
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof s[0], bench_cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* The CPython to compare with, or NULL (and a note on stderr naming prog)
 * when it is not there. Static storage. */
static inline const char *bench_python(const char *prog)
{
    static char buf[1024];
    const char *py = getenv("MPROC_BENCH_PYTHON");
    if (!py) {
        const char *home = getenv("HOME");
        snprintf(buf, sizeof buf, "%s/.pyenv/versions/3.11.7/bin/python",
                 home ? home : "/root");
        py = buf;
    }
    if (access(py, X_OK) != 0) {
        fprintf(stderr, "%s: no CPython at %s (skipped)\n", prog, py);
        return NULL;
    }
    return py;
}

/* Path of a peer script in bench/py, or NULL (with a note) when missing.
 * Static storage. */
static inline const char *bench_py_script(const char *prog, const char *name)
{
    static char buf[2048];
    char here[1024];
    const char *dir = getenv("MPROC_BENCH_PY_DIR");
    snprintf(here, sizeof here, "%s", __FILE__);
    if (dir)
        snprintf(buf, sizeof buf, "%s/%s", dir, name);
    else
        snprintf(buf, sizeof buf, "%s/py/%s", dirname(here), name);
    if (access(buf, R_OK) != 0) {
        fprintf(stderr, "%s: no %s (CPython skipped)\n", prog, buf);
        return NULL;
    }
    return buf;
}

/*
 * One row of the ratio chart bench/plot.sh draws: how fast mproc is on a
 * figure against its floor and against CPython, each as mproc's speed
 * divided by the peer's (> 1: mproc is faster; for times that is the
 * peer's time over mproc's). A ratio <= 0 (not measured) prints as "-".
 */
static inline void bench_ratio_row(const char *figure, double vs_floor,
                                   double vs_cpython)
{
    printf("RATIO\t%s", figure);
    if (vs_floor > 0)
        printf("\t%.4g", vs_floor);
    else
        printf("\t-");
    if (vs_cpython > 0)
        printf("\t%.4g\n", vs_cpython);
    else
        printf("\t-\n");
}

#endif
