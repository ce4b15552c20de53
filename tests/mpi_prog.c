/*
 * mpi_prog.c - the program test_mpi runs under mpirun: one scenario per
 * run (argv[1]), under a start method (argv[2]); argv[3] "spawnN" uses
 * mproc_pool_backend_mpi_spawn(N) (run alone or under mpirun -n 1: the N
 * copies it spawns are the other ranks). Every rank runs main();
 * in mproc_pool_new the other ranks become servers. Rank 0 checks what
 * the MPI pool returns against a local pool and against what it expects,
 * prints "mpi_prog: FAIL ..." for every mismatch and exits 1 if there
 * was one, "mpi_prog: OK <scenario>" and 0 otherwise.
 */
#include "mproc.h"
#include "mproc/mpi.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;
mproc_pool *mpi_prog_kept; /* the "noexit" scenario's pool */

#define EXPECT(c)                                                              \
    do {                                                                       \
        if (!(c)) {                                                            \
            printf("mpi_prog: FAIL %s:%d: %s\n", __FILE__, __LINE__, #c);      \
            failures++;                                                        \
        }                                                                      \
    } while (0)

#define EXPECT_EQ(a, b)                                                        \
    do {                                                                       \
        long long a_ = (long long)(a), b_ = (long long)(b);                    \
        if (a_ != b_) {                                                        \
            printf("mpi_prog: FAIL %s:%d: %s == %s: %lld != %lld (%s)\n",      \
                   __FILE__, __LINE__, #a, #b, a_, b_,                         \
                   mproc_errname((int)a_));                                    \
            failures++;                                                        \
        }                                                                      \
    } while (0)

/* The rank the task runs on (its worker inherited mpirun's variable). */
/* The rank in the pool: a copy spawned by rank 0 (OMPI_PARENT_PORT) is
 * rank 1 + its rank among the copies; a program started alone is rank 0. */
static int64_t my_rank(void)
{
    const char *r = getenv("OMPI_COMM_WORLD_RANK");
    return (r ? atoll(r) : 0) + (getenv("OMPI_PARENT_PORT") ? 1 : 0);
}

/* x -> {x * x + 1, rank}; x = -3 segfaults, -4 aborts, -5 hangs, -6
 * exits, -7 fails with a message. */
static int square(const void *in, size_t len, mproc_out *out)
{
    int64_t x = 0;
    memcpy(&x, in, len < sizeof x ? len : sizeof x);
    if (x == -3)
        raise(SIGSEGV);
    if (x == -4)
        abort();
    if (x == -5)
        sleep(60);
    if (x == -6)
        _exit(3);
    if (x == -7)
        return mproc_out_fail(out, MPROC_EUSER(7), "bad item %lld",
                              (long long)x);
    int64_t r[2] = {x * x + 1, my_rank()};
    if (x % 97 == 0)
        usleep(2000); /* spread the work over the ranks */
    return mproc_out_write(out, r, sizeof r);
}

/* a + b, rank; a string argument appended. */
static int add(const mproc_args *a, mproc_out *out)
{
    int64_t r[2] = {mproc_args_int(a, 0) + mproc_args_int(a, 1), my_rank()};
    int rc = mproc_out_write(out, r, sizeof r);
    const char *s = mproc_args_str(a, 2);
    return rc < 0 ? rc : mproc_out_write(out, s, strlen(s));
}

static int kernel(const void *in, void *out, size_t count, size_t first)
{
    const double *x = in;
    double *y = out;
    for (size_t i = 0; i < count; i++)
        y[i] = x[i] * 2.0 + (double)(first + i);
    return 0;
}

/* xs[i] = i, and it[i] the bytes of xs[i]. */
static void iota(int64_t *xs, mproc_iov *it, int n)
{
    for (int i = 0; i < n; i++) {
        xs[i] = i;
        it[i] = (mproc_iov){&xs[i], sizeof xs[i]};
    }
}

/* Results of f over xs from pool p: values (first word) into v, ranks
 * seen counted in seen[]. */
static void run_map(mproc_pool *p, const int64_t *xs, size_t n, int64_t *v,
                    int *seen, size_t chunk)
{
    mproc_iov *it = calloc(n, sizeof *it);
    for (size_t i = 0; i < n; i++)
        it[i] = (mproc_iov){&xs[i], sizeof xs[i]};
    mproc_results *r = NULL;
    mproc_call_opts o = {.chunksize = chunk};
    EXPECT_EQ(mproc_pool_map(p, square, it, n, &o, &r), 0);
    for (size_t i = 0; r && i < n; i++) {
        const int64_t *d;
        size_t len;
        EXPECT_EQ(mproc_results_get(r, i, (const void **)&d, &len), 0);
        EXPECT_EQ(len, 16);
        v[i] = d[0];
        if (seen && d[1] >= 0 && d[1] < 16)
            seen[d[1]]++;
    }
    mproc_results_free(r);
    free(it);
}

static size_t last_done, last_total;
static void on_progress(size_t done, size_t total, void *arg)
{
    (void)arg;
    EXPECT(done >= last_done); /* on the pool's thread, in order */
    last_done = done;
    last_total = total;
}

static int cb_count;
static void on_done(mproc_future *f, void *arg)
{
    (void)f;
    (void)arg;
    __atomic_add_fetch(&cb_count, 1, __ATOMIC_SEQ_CST);
}

/* The MPI pool gives what a local pool gives, through every call. */
static void equal(mproc_pool *mp, int size)
{
    mproc_pool *lp;
    mproc_pool_opts lo = {.processes = 2};
    EXPECT_EQ(mproc_pool_new(&lp, &lo), 0);
    enum { N = 3000 };
    int64_t *xs = malloc(N * sizeof *xs), *a = malloc(N * sizeof *a),
            *b = malloc(N * sizeof *b);
    for (int i = 0; i < N; i++)
        xs[i] = i;
    int seen[16] = {0};
    mproc_iov *it = calloc(N, sizeof *it), *it0 = it;
    for (int i = 0; i < N; i++)
        it[i] = (mproc_iov){&xs[i], sizeof xs[i]};
    /* map, several chunk sizes */
    for (size_t chunk = 0; chunk <= 64; chunk += 32) {
        run_map(mp, xs, N, a, seen, chunk);
        run_map(lp, xs, N, b, NULL, chunk);
        EXPECT(memcmp(a, b, N * sizeof *a) == 0);
    }
    for (int r = 0; r < size && r < 16; r++)
        if (seen[r] == 0) {
            printf("mpi_prog: FAIL rank %d ran no task\n", r);
            failures++;
        }
    /* progress reports, up to the last task */
    mproc_results *pr = NULL;
    mproc_call_opts po = {.progress = on_progress};
    EXPECT_EQ(mproc_pool_map(mp, square, it0, N, &po, &pr), 0);
    EXPECT_EQ(last_done, N);
    EXPECT_EQ(last_total, N);
    mproc_results_free(pr);
    /* imap and imap_unordered */
    for (int un = 0; un < 2; un++) {
        mproc_imap *im;
        mproc_call_opts o = {.window = 256};
        EXPECT_EQ(un ? mproc_pool_imap_unordered(mp, square, it, N, &o, &im)
                     : mproc_pool_imap(mp, square, it, N, &o, &im),
                  0);
        int64_t sum = 0;
        size_t got = 0, idx;
        const int64_t *d;
        int r;
        while ((r = mproc_imap_next(im, 30, (const void **)&d, NULL, &idx)) ==
               1) {
            EXPECT(un || idx == got);
            EXPECT_EQ(d[0], b[idx]);
            sum += d[0];
            got++;
        }
        EXPECT_EQ(r, 0);
        EXPECT_EQ(got, N);
        mproc_imap_free(im);
    }
    /* starmap */
    enum { NS = 200 };
    mproc_args *argv[NS];
    for (int i = 0; i < NS; i++)
        argv[i] = mproc_args_of("lls", (int64_t)i, (int64_t)(2 * i), "xyz");
    mproc_results *rs = NULL;
    EXPECT_EQ(mproc_pool_starmap(mp, add, argv, NS, NULL, &rs), 0);
    for (int i = 0; rs && i < NS; i++) {
        const unsigned char *d;
        size_t len;
        EXPECT_EQ(mproc_results_get(rs, i, (const void **)&d, &len), 0);
        int64_t v;
        memcpy(&v, d, 8);
        EXPECT_EQ(v, 3 * i);
        EXPECT(len == 19 && memcmp(d + 16, "xyz", 3) == 0);
    }
    mproc_results_free(rs);
    for (int i = 0; i < NS; i++)
        mproc_args_free(argv[i]);
    /* apply_async with callbacks */
    enum { NA = 100 };
    mproc_future *f[NA];
    mproc_call_opts co = {.callback = on_done};
    for (int i = 0; i < NA; i++)
        EXPECT_EQ(mproc_pool_apply_async(mp, square, &xs[i], 8, &co, &f[i]), 0);
    for (int i = 0; i < NA; i++) {
        const int64_t *d;
        EXPECT_EQ(mproc_future_get(f[i], 30, (const void **)&d, NULL), 0);
        EXPECT_EQ(d[0], b[i]);
        mproc_future_free(f[i]);
    }
    EXPECT_EQ(cb_count, NA);
    /* a big input and result travel whole */
    size_t big = 1 << 20;
    unsigned char *bin = malloc(big);
    memset(bin, 7, big);
    memcpy(bin, &xs[5], 8);
    mproc_future *bf;
    EXPECT_EQ(mproc_pool_apply_async(mp, square, bin, big, NULL, &bf), 0);
    EXPECT_EQ(mproc_future_get(bf, 30, NULL, NULL), 0);
    mproc_future_free(bf);
    free(bin);
    /* records, from plain arrays and from the pool's shared memory */
    enum { NR = 100000 };
    double *x = malloc(NR * sizeof *x), *y1 = calloc(NR, sizeof *y1),
           *y2 = calloc(NR, sizeof *y2);
    for (int i = 0; i < NR; i++)
        x[i] = i * 0.5;
    mproc_call_opts ro = {.chunksize = 5000};
    mproc_task_error err;
    EXPECT_EQ(mproc_pool_map_records(mp, kernel, x, 8, y1, 8, NR, &ro, &err),
              0);
    EXPECT_EQ(mproc_pool_map_records(lp, kernel, x, 8, y2, 8, NR, &ro, &err),
              0);
    EXPECT(memcmp(y1, y2, NR * sizeof *y1) == 0);
    double *sx = mproc_pool_shm_alloc(mp, NR * sizeof *sx);
    double *sy = mproc_pool_shm_alloc(mp, NR * sizeof *sy);
    EXPECT(sx && sy);
    if (sx && sy) {
        memcpy(sx, x, NR * sizeof *x);
        EXPECT_EQ(
            mproc_pool_map_records(mp, kernel, sx, 8, sy, 8, NR, &ro, &err), 0);
        EXPECT(memcmp(sy, y2, NR * sizeof *sy) == 0);
    }
    mproc_pool_shm_free(mp, sx);
    mproc_pool_shm_free(mp, sy);
    free(x);
    free(y1);
    free(y2);
    free(it);
    free(xs);
    free(a);
    free(b);
    mproc_pool_free(lp);
}

/* Crashes, aborts, exits, hangs past their timeout and failures fail
 * alone, wherever they run; every rank serves on. */
static void crash(mproc_pool *mp, int size)
{
    enum { N = 400 };
    int64_t xs[N];
    mproc_iov it[N];
    iota(xs, it, N);
    /* One bad task in every chunk of 20, so that each rank gets some. */
    static const int64_t bad[] = {-3, -4, -5, -6, -7};
    static const int want[] = {MPROC_EWORKER, MPROC_EWORKER, MPROC_ETASKTIMEOUT,
                               MPROC_EWORKER, MPROC_EUSER(7)};
    for (int i = 5; i < N; i += 40)
        xs[i] = bad[(i / 40) % 5];
    mproc_results *r = NULL;
    /* Long enough for a crash report of ASan under load (a crashing task
     * must fail as a crash, not time out first). */
    mproc_call_opts o = {.chunksize = 20, .timeout = 4.0};
    int rc = mproc_pool_map(mp, square, it, N, &o, &r);
    EXPECT(rc != 0);
    for (int i = 0; r && i < N; i++) {
        const int64_t *d;
        int c = mproc_results_get(r, i, (const void **)&d, NULL);
        if (xs[i] < 0) {
            EXPECT_EQ(c, want[(i / 40) % 5]);
            const mproc_task_error *e = mproc_results_error(r, i);
            EXPECT(e && e->message[0]);
        } else {
            EXPECT_EQ(c, 0);
            if (c == 0)
                EXPECT_EQ(d[0], xs[i] * xs[i] + 1);
        }
    }
    EXPECT_EQ(mproc_results_failed(r), N / 40);
    mproc_results_free(r);
    /* Everyone still serves. */
    int64_t v[N];
    int seen[16] = {0};
    for (int i = 0; i < N; i++)
        xs[i] = i;
    run_map(mp, xs, N, v, seen, 4);
    for (int r2 = 0; r2 < size && r2 < 16; r2++)
        if (seen[r2] == 0) {
            printf("mpi_prog: FAIL rank %d serves no more\n", r2);
            failures++;
        }
}

/* x == 7 on rank 1 kills that rank's server (its worker's parent under
 * fork): the rank is lost mid-map. */
static int lose(const void *in, size_t len, mproc_out *out)
{
    int64_t x = 0;
    memcpy(&x, in, len < sizeof x ? len : sizeof x);
    if (x == 7 && my_rank() == 1)
        kill(getppid(), SIGKILL);
    usleep(20000);
    return mproc_out_write(out, &x, sizeof x);
}

/* A lost rank fails what it held with MPROC_ERANKLOST, naming it; the
 * others finish theirs and serve on. */
static void lost(mproc_pool *mp)
{
    enum { N = 200 };
    int64_t xs[N];
    mproc_iov it[N];
    iota(xs, it, N);
    for (int round = 0; round < 2; round++) {
        mproc_results *r = NULL;
        mproc_call_opts o = {.chunksize = 2};
        int rc = mproc_pool_map(mp, lose, it, N, &o, &r);
        size_t nlost = 0;
        for (int i = 0; r && i < N; i++) {
            const int64_t *d;
            int c = mproc_results_get(r, i, (const void **)&d, NULL);
            if (c == 0) {
                EXPECT_EQ(d[0], i);
                continue;
            }
            EXPECT_EQ(c, MPROC_ERANKLOST);
            const mproc_task_error *e = mproc_results_error(r, i);
            EXPECT(e && strstr(e->message, "rank 1 ") != NULL);
            if (nlost++ == 0 && e)
                printf("mpi_prog: lost: %s\n", e->message);
        }
        /* Round 0 loses rank 1's tasks (x = 7 among them); round 1 runs
         * on the others alone. */
        EXPECT(round == 0 ? nlost >= 1 && rc == MPROC_ERANKLOST : nlost == 0);
        mproc_results_free(r);
    }
}

/* The "initfail" scenario's initializer: fails on rank 1 only. */
static int init_fails_on_1(const mproc_args *a)
{
    (void)a;
    return my_rank() == 1 ? 5 : 0;
}

/* A rank whose initializer fails fails the tasks it gets with
 * MPROC_EINIT; rank 0 and the others go on. */
static void initfail(mproc_pool *mp)
{
    enum { N = 200 };
    int64_t xs[N];
    mproc_iov it[N];
    iota(xs, it, N);
    mproc_results *r = NULL;
    mproc_call_opts o = {.chunksize = 2};
    mproc_pool_map(mp, square, it, N, &o, &r);
    size_t ok = 0, bad = 0;
    for (int i = 0; r && i < N; i++) {
        const int64_t *d;
        int c = mproc_results_get(r, i, (const void **)&d, NULL);
        if (c == 0) {
            ok++;
            EXPECT_EQ(d[0], xs[i] * xs[i] + 1);
            EXPECT(d[1] != 1);
        } else {
            bad++;
            EXPECT_EQ(c, MPROC_EINIT);
            const mproc_task_error *e = mproc_results_error(r, i);
            EXPECT(e && strstr(e->message, "rank 1 ") != NULL);
        }
    }
    EXPECT(ok > 0 && bad > 0);
    mproc_results_free(r);
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "equal";
    for (int m = MPROC_START_FORK; argc > 2 && m <= MPROC_START_FORKSERVER; m++)
        if (strcmp(argv[2], mproc_start_method_name(m)) == 0)
            mproc_set_start_method(m);
    mproc_pool *mp;
    mproc_pool_opts o = {.processes = 2, .backend = mproc_pool_backend_mpi()};
    int spawn = 0;
    if (argc > 3 && strncmp(argv[3], "spawn", 5) == 0) {
        spawn = atoi(argv[3] + 5);
        o.backend = mproc_pool_backend_mpi_spawn(spawn);
    }
    if (strcmp(what, "initfail") == 0)
        o.initializer = init_fails_on_1;
    int rc = mproc_pool_new(&mp, &o);
    /* Only rank 0 comes here. */
    if (rc == -EIO && spawn) {
        printf("mpi_prog: SKIP Open MPI would not spawn\n");
        return 77;
    }
    if (rc < 0) {
        printf("mpi_prog: FAIL mproc_pool_new: %s\n", mproc_strerror(rc));
        return 1;
    }
    const char *sz = getenv("OMPI_COMM_WORLD_SIZE");
    int size = sz && atoi(sz) > 1 ? atoi(sz) : 1 + spawn;
    if (strcmp(what, "equal") == 0)
        equal(mp, size);
    else if (strcmp(what, "crash") == 0)
        crash(mp, size);
    else if (strcmp(what, "lost") == 0)
        lost(mp);
    else if (strcmp(what, "initfail") == 0)
        initfail(mp);
    else if (strcmp(what, "noexit") != 0)
        failures++;
    if (strcmp(what, "noexit") == 0) {
        /* Never freed (kept reachable for LeakSanitizer): terminated at
         * exit, and the servers stopped. */
        mpi_prog_kept = mp;
        printf("mpi_prog: OK %s\n", what);
        return 0;
    }
    /* close + join: queued work finishes, every rank's slots end. */
    EXPECT_EQ(mproc_pool_close(mp), 0);
    EXPECT_EQ(mproc_pool_join(mp, 60), 0);
    mproc_pool_free(mp);
    if (failures == 0)
        printf("mpi_prog: OK %s\n", what);
    return failures ? 1 : 0;
}
