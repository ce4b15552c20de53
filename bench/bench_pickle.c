/*
 * bench_pickle.c - values to pickles and back (issue 10, §4).
 *
 * Encode (mproc_pickle_dumps, protocol 4, the buffer freed each time) and
 * decode (mproc_pickle_loads, the value dropped each time) of
 *   dict   1,000 str -> int items ('key0': 0 ... 'key999': 999)
 *   list   10^5 ints (0 .. 99999)
 *   bytes  one 1 MiB bytes
 *   shared t = (1, 2), then t = (t, t) 40 times: 41 tuples, 2^40 leaves
 *          (each tuple written once, fetched from the memo after)
 * against CPython 3.11's pickle.dumps / pickle.loads (its C accelerator,
 * the default protocol 4, bench/py/pickle_bench.py) on the same data, and
 * for bytes against memcpy of the 1 MiB: into a buffer kept warm, and
 * into a fresh malloc'ed one (freed each time), as dumps and loads must.
 *
 * Rounds are interleaved (every contender once per round, CPython through
 * one popen per round) and figures are medians over rounds. Targets (3x
 * CPython for dict and list, within 1.2x of memcpy for bytes) are
 * reported, never asserted.
 *
 * Usage: bench_pickle [-r rounds] [-P]
 *   -r rounds (default 9), -P skip CPython.
 * Environment: MPROC_BENCH_PYTHON, MPROC_BENCH_PY_DIR (bench_util.h).
 */
#include <mproc.h>

#include "bench_util.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUNDS 64
#define MIB        (1 << 20)

enum { D_DICT, D_LIST, D_BYTES, D_SHARED, D_COUNT };
static const char *const dnames[D_COUNT] = {"dict", "list", "bytes", "shared"};
static const int iters[D_COUNT] = {2000, 60, 400, 20000};
static const int py_iters[D_COUNT] = {1000, 20, 200, 10000};

/* figures: [data][0 mproc dumps, 1 mproc loads, 2 py dumps, 3 py loads] */
static double fig[D_COUNT][4][MAX_ROUNDS];
static int nfig[D_COUNT][4];
static double memcpy_warm[MAX_ROUNDS], memcpy_fresh[MAX_ROUNDS];
static int nwarm, nfresh;

static mproc_obj *data[D_COUNT];
static void *pk[D_COUNT];
static size_t pklen[D_COUNT];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int r)
{
    fprintf(stderr, "bench_pickle: %s: %s\n", what, mproc_strerror(r));
    exit(1);
}

static void add(double *v, int *n, double x)
{
    if (*n < MAX_ROUNDS)
        v[(*n)++] = x;
}

static void make_data(void)
{
    data[D_DICT] = mproc_obj_dict_new();
    for (int i = 0; i < 1000; i++) {
        char k[16];
        snprintf(k, sizeof k, "key%d", i);
        int r = mproc_obj_dict_set(data[D_DICT], mproc_obj_str_c(k),
                                   mproc_obj_int(i));
        if (r < 0)
            die("dict_set", r);
    }
    data[D_LIST] = mproc_obj_list_new();
    for (int i = 0; i < 100000; i++) {
        int r = mproc_obj_list_append(data[D_LIST], mproc_obj_int(i));
        if (r < 0)
            die("list_append", r);
    }
    unsigned char *b = malloc(MIB);
    if (!b)
        die("malloc", -ENOMEM);
    for (int i = 0; i < MIB; i++)
        b[i] = (unsigned char)(i * 2654435761u >> 13);
    data[D_BYTES] = mproc_obj_bytes(b, MIB);
    free(b);
    mproc_obj *t = mproc_obj_tuple_of(2, mproc_obj_int(1), mproc_obj_int(2));
    for (int i = 0; i < 40; i++)
        t = mproc_obj_tuple_of(2, t, mproc_obj_ref(t));
    data[D_SHARED] = t;
    for (int d = 0; d < D_COUNT; d++) {
        if (!data[d])
            die("data", -ENOMEM);
        int r = mproc_pickle_dumps(data[d], 4, &pk[d], &pklen[d]);
        if (r < 0)
            die("dumps", r);
    }
}

static double time_dumps(int d)
{
    double t0 = now();
    for (int i = 0; i < iters[d]; i++) {
        void *b;
        size_t n;
        int r = mproc_pickle_dumps(data[d], 4, &b, &n);
        if (r < 0)
            die("dumps", r);
        free(b);
    }
    return (now() - t0) / iters[d] * 1e9;
}

static double time_loads(int d)
{
    char err[200];
    double t0 = now();
    for (int i = 0; i < iters[d]; i++) {
        mproc_obj *o;
        int r = mproc_pickle_loads(pk[d], pklen[d], NULL, &o, err, sizeof err);
        if (r < 0) {
            fprintf(stderr, "bench_pickle: loads: %s\n", err);
            exit(1);
        }
        /* (Two copies of the shared tuple compare in 2^40 steps.) */
        if (i == 0 && d != D_SHARED && mproc_obj_eq(o, data[d]) != 1)
            die("loads gave another value", -EINVAL);
        mproc_obj_unref(o);
    }
    return (now() - t0) / iters[d] * 1e9;
}

static double time_memcpy(bool fresh)
{
    const unsigned char *src = mproc_obj_bytes_value(data[D_BYTES], NULL);
    static unsigned char *warm;
    if (!warm && !(warm = malloc(MIB)))
        die("malloc", -ENOMEM);
    int n = iters[D_BYTES];
    double t0 = now();
    for (int i = 0; i < n; i++) {
        unsigned char *dst = fresh ? malloc(MIB) : warm;
        if (!dst)
            die("malloc", -ENOMEM);
        memcpy(dst, src, MIB);
        __asm__ volatile("" : : "r"(dst) : "memory");
        if (fresh)
            free(dst);
    }
    return (now() - t0) / n * 1e9;
}

static char py_cmd[4096];

static bool python_setup(void)
{
    const char *py = bench_python("bench_pickle");
    const char *script =
        py ? bench_py_script("bench_pickle", "pickle_bench.py") : NULL;
    if (!script)
        return false;
    snprintf(py_cmd, sizeof py_cmd,
             "'%s' '%s' dict:%d list:%d bytes:%d shared:%d", py, script,
             py_iters[D_DICT], py_iters[D_LIST], py_iters[D_BYTES],
             py_iters[D_SHARED]);
    return true;
}

static void python_round(void)
{
    fflush(NULL);
    FILE *f = popen(py_cmd, "r");
    if (!f)
        die("popen", -errno);
    char mode[32];
    double ns;
    while (fscanf(f, "%31s %lf", mode, &ns) == 2)
        for (int d = 0; d < D_COUNT; d++) {
            char want[32];
            snprintf(want, sizeof want, "%s_dumps", dnames[d]);
            if (strcmp(mode, want) == 0)
                add(fig[d][2], &nfig[d][2], ns);
            snprintf(want, sizeof want, "%s_loads", dnames[d]);
            if (strcmp(mode, want) == 0)
                add(fig[d][3], &nfig[d][3], ns);
        }
    if (pclose(f) != 0)
        fprintf(stderr, "bench_pickle: CPython round failed\n");
}

static double med(int d, int k)
{
    return bench_median(fig[d][k], nfig[d][k]);
}

int main(int argc, char **argv)
{
    int rounds = 9, opt;
    bool py = true;
    while ((opt = getopt(argc, argv, "r:P")) != -1) {
        if (opt == 'r')
            rounds = atoi(optarg);
        else if (opt == 'P')
            py = false;
        else
            return 2;
    }
    if (rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "bench_pickle: bad -r\n");
        return 2;
    }
    make_data();
    py = py && python_setup();
    for (int round = 0; round < rounds; round++) {
        int order = round % D_COUNT;
        for (int k = 0; k < D_COUNT; k++) {
            int d = (k + order) % D_COUNT;
            add(fig[d][0], &nfig[d][0], time_dumps(d));
            add(fig[d][1], &nfig[d][1], time_loads(d));
        }
        add(memcpy_warm, &nwarm, time_memcpy(false));
        add(memcpy_fresh, &nfresh, time_memcpy(true));
        if (py)
            python_round();
    }
    printf("pickle, protocol 4, median of %d rounds (us per operation)\n",
           rounds);
    printf("%-22s %10s %10s %8s %10s %10s %8s\n", "", "mproc", "CPython",
           "faster", "mproc", "CPython", "faster");
    printf("%-22s %10s %10s %8s %10s %10s %8s\n", "", "dumps", "dumps", "",
           "loads", "loads", "");
    static const char *const what[D_COUNT] = {"dict 1000 str->int",
                                              "list 10^5 ints", "bytes 1 MiB",
                                              "shared t=(t,t) x40"};
    for (int d = 0; d < D_COUNT; d++) {
        double md = med(d, 0) / 1e3, ml = med(d, 1) / 1e3;
        double pd = med(d, 2) / 1e3, pl = med(d, 3) / 1e3;
        if (nfig[d][2])
            printf("%-22s %10.2f %10.2f %7.1fx %10.2f %10.2f %7.1fx\n", what[d],
                   md, pd, pd / md, ml, pl, pl / ml);
        else
            printf("%-22s %10.2f %10s %8s %10.2f %10s %8s\n", what[d], md,
                   "n/a", "", ml, "n/a", "");
    }
    double w = bench_median(memcpy_warm, nwarm) / 1e3;
    double fr = bench_median(memcpy_fresh, nfresh) / 1e3;
    printf("memcpy 1 MiB: warm buffer %.2f us, fresh malloc+free %.2f us\n", w,
           fr);
    printf("bytes 1 MiB vs memcpy: dumps %.2fx / %.2fx, loads %.2fx / "
           "%.2fx (warm / fresh; target <= 1.2x)\n",
           med(D_BYTES, 0) / 1e3 / w, med(D_BYTES, 0) / 1e3 / fr,
           med(D_BYTES, 1) / 1e3 / w, med(D_BYTES, 1) / 1e3 / fr);
    printf("targets: dict and list at least 3x faster than CPython both "
           "ways\n");
    /* For bench/plot.sh's ratio chart: the floor of bytes is memcpy. */
    static const char *const rname[D_COUNT][2] = {
        {"pickle dumps dict", "pickle loads dict"},
        {"pickle dumps list", "pickle loads list"},
        {"pickle dumps bytes 1MiB", "pickle loads bytes 1MiB"},
        {"pickle dumps shared t40", "pickle loads shared t40"}};
    for (int d = 0; d < D_COUNT; d++)
        for (int k = 0; k < 2; k++) {
            double m = med(d, k);
            double pyk = nfig[d][2 + k] ? med(d, 2 + k) : 0;
            bench_ratio_row(rname[d][k],
                            d == D_BYTES && m > 0 ? w * 1e3 / m : 0,
                            m > 0 && pyk > 0 ? pyk / m : 0);
        }
    for (int d = 0; d < D_COUNT; d++) {
        mproc_obj_unref(data[d]);
        free(pk[d]);
    }
    return 0;
}
