/*
 * test_pool.c - the process pool: results equal to the serial computation
 * under fork, spawn and forkserver (10^6 items); map / starmap / apply /
 * imap / imap_unordered semantics; chunksize edges; the records path (zero
 * copy and copied); workers crashing at random points of a large map (only
 * the crashing tasks fail, each naming its worker and signal); per-task
 * timeouts; maxtasksperchild; callbacks exactly once; terminate with stuck
 * workers; failing and crashing initializers; lazy imap over a huge
 * source; progress; fd exhaustion.
 */
#include "harness.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>

/* ---- tasks (found again in spawn/forkserver workers) ------------------- */

static int t_square(const void *in, size_t len, mproc_out *out)
{
    if (len != sizeof(int64_t))
        return mproc_out_fail(out, -EINVAL, "bad length %zu", len);
    int64_t x = *(const int64_t *)in;
    int64_t y = x * x;
    return mproc_out_write(out, &y, sizeof y);
}

static int t_pid(const void *in, size_t len, mproc_out *out)
{
    (void)in;
    (void)len;
    int64_t pid = getpid();
    return mproc_out_write(out, &pid, sizeof pid);
}

/* Sleeps the given number of milliseconds, returns the input. */
static int t_sleep_ms(const void *in, size_t len, mproc_out *out)
{
    int64_t ms = *(const int64_t *)in;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    return mproc_out_write(out, in, len);
}

/* Fails odd inputs with a message. */
static int t_fail_odd(const void *in, size_t len, mproc_out *out)
{
    int64_t x = *(const int64_t *)in;
    if (x % 2)
        return mproc_out_fail(out, -EDOM, "odd input %lld", (long long)x);
    return mproc_out_write(out, in, len);
}

/* A task that dies in the way its input says. */
typedef struct crash_in {
    int64_t x;
    int32_t action; /* 0 square, 1 SIGKILL, 2 abort, 3 exit 3, 4 SEGV */
    int32_t pad;
} crash_in;

static int t_crash(const void *in, size_t len, mproc_out *out)
{
    const crash_in *c = in;
    (void)len;
    switch (c->action) {
    case 1:
        kill(getpid(), SIGKILL);
        break;
    case 2:
        signal(SIGABRT, SIG_DFL);
        abort();
    case 3:
        mproc_test_exit(3);
    case 4:
        signal(SIGSEGV, SIG_DFL);
        raise(SIGSEGV);
        break;
    }
    int64_t y = c->x * c->x;
    return mproc_out_write(out, &y, sizeof y);
}

/* Blocks in a system call forever (SIGTERM ignored). */
static int t_stuck(const void *in, size_t len, mproc_out *out)
{
    (void)in;
    (void)len;
    (void)out;
    signal(SIGTERM, SIG_IGN);
    int fds[2];
    if (pipe(fds) == 0) {
        char c;
        ssize_t r = read(fds[0], &c, 1); /* nobody writes */
        (void)r;
    }
    return 0;
}

/* Echoes n bytes produced from the input: big in, bigger out. */
static int t_big(const void *in, size_t len, mproc_out *out)
{
    unsigned char *o = mproc_out_alloc(out, 2 * len);
    if (!o)
        return -ENOMEM;
    const unsigned char *p = in;
    for (size_t i = 0; i < len; i++)
        o[2 * i] = o[2 * i + 1] = (unsigned char)(p[i] ^ 0x5a);
    return 0;
}

/* starmap: (a, b, s) -> a * b + strlen(s) */
static int t_star(const mproc_args *a, mproc_out *out)
{
    if (mproc_args_count(a) != 3 || mproc_args_type(a, 2) != MPROC_ARG_STR)
        return mproc_out_fail(out, -EINVAL, "bad args");
    int64_t r = mproc_args_int(a, 0) * mproc_args_int(a, 1) +
                (int64_t)strlen(mproc_args_str(a, 2));
    return mproc_out_write(out, &r, sizeof r);
}

static int64_t g_init_value = -1;

static int init_set(const mproc_args *a)
{
    g_init_value = mproc_args_int(a, 0);
    return 0;
}

static int init_fail(const mproc_args *a)
{
    (void)a;
    return -42;
}

static int init_crash(const mproc_args *a)
{
    (void)a;
    kill(getpid(), SIGKILL);
    return 0;
}

static int t_init_value(const void *in, size_t len, mproc_out *out)
{
    (void)in;
    (void)len;
    return mproc_out_write(out, &g_init_value, sizeof g_init_value);
}

/* Records kernels. */
static int k_square(const void *in, void *out, size_t count, size_t first)
{
    const int64_t *a = in;
    int64_t *b = out;
    (void)first;
    for (size_t i = 0; i < count; i++)
        b[i] = a[i] * a[i];
    return 0;
}

/* No input: out[i] = 3 * index; fails the chunk holding index 777. */
static int k_index(const void *in, void *out, size_t count, size_t first)
{
    int64_t *b = out;
    (void)in;
    for (size_t i = 0; i < count; i++) {
        if (first + i == 777)
            return -EDOM;
        b[i] = 3 * (int64_t)(first + i);
    }
    return 0;
}

/* ---- helpers ------------------------------------------------------------ */

static mproc_pool *new_pool(int procs, mproc_start_method m)
{
    mproc_pool_opts o = {.processes = procs, .method = m};
    mproc_pool *p = NULL;
    CHECK_OK(mproc_pool_new(&p, &o));
    return p;
}

static int64_t res_i64(mproc_results *r, size_t i)
{
    const void *d;
    size_t n;
    int rc = mproc_results_get(r, i, &d, &n);
    if (rc != 0 || n != sizeof(int64_t))
        mproc_test_fail(__FILE__, __LINE__, "result %zu: rc %d len %zu", i, rc,
                        n);
    return *(const int64_t *)d;
}

static void make_items(int64_t *v, mproc_iov *it, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        v[i] = (int64_t)i - 1000;
        it[i] = (mproc_iov){&v[i], sizeof v[i]};
    }
}

/* ---- results equal to serial under each start method ------------------- */

static void test_million_each_method(void)
{
    enum { N = 1000000 };
    int64_t *v = malloc(N * sizeof *v);
    mproc_iov *it = malloc(N * sizeof *it);
    int64_t *out = malloc(N * sizeof *out);
    CHECK(v && it && out);
    make_items(v, it, N);
    for (int m = 0; m < 3; m++) {
        mproc_pool *p = new_pool(2, mproc_test_methods[m]);
        mproc_results *r;
        CHECK_OK(mproc_pool_map(p, t_square, it, N, NULL, &r));
        CHECK_EQ(mproc_results_count(r), N);
        CHECK_EQ(mproc_results_failed(r), 0);
        for (size_t i = 0; i < N; i++)
            if (res_i64(r, i) != v[i] * v[i])
                mproc_test_fail(__FILE__, __LINE__, "item %zu wrong", i);
        mproc_results_free(r);
        /* The records path over the same data. */
        memset(out, 0, N * sizeof *out);
        mproc_task_error err;
        CHECK_OK(mproc_pool_map_records(p, k_square, v, sizeof *v, out,
                                        sizeof *out, N, NULL, &err));
        for (size_t i = 0; i < N; i++)
            if (out[i] != v[i] * v[i])
                mproc_test_fail(__FILE__, __LINE__, "record %zu wrong", i);
        mproc_pool_free(p);
    }
    free(v);
    free(it);
    free(out);
}

/* Every API once under each method, with initializer arguments. */
static void test_api_each_method(void)
{
    for (int m = 0; m < 3; m++) {
        mproc_args *ia = mproc_args_of("i", 4242);
        mproc_pool_opts o = {.processes = 2,
                             .method = mproc_test_methods[m],
                             .initializer = init_set,
                             .initargs = ia};
        mproc_pool *p;
        CHECK_OK(mproc_pool_new(&p, &o));
        mproc_args_free(ia); /* the pool copied it */
        void *res;
        size_t n;
        CHECK_OK(mproc_pool_apply(p, t_init_value, NULL, 0, &res, &n, NULL));
        CHECK_EQ(n, 8);
        CHECK_EQ(*(int64_t *)res, 4242);
        free(res);
        /* starmap */
        mproc_args *argv[3];
        for (int i = 0; i < 3; i++)
            argv[i] = mproc_args_of("iis", i, 10, "abc");
        mproc_results *r;
        CHECK_OK(mproc_pool_starmap(p, t_star, argv, 3, NULL, &r));
        for (int i = 0; i < 3; i++)
            CHECK_EQ(res_i64(r, (size_t)i), i * 10 + 3);
        mproc_results_free(r);
        /* apply_args_async */
        mproc_future *f;
        CHECK_OK(mproc_pool_apply_args_async(p, t_star, argv[2], NULL, &f));
        const void *d;
        CHECK_OK(mproc_future_get(f, 10, &d, &n));
        CHECK_EQ(*(const int64_t *)d, 23);
        mproc_future_free(f);
        for (int i = 0; i < 3; i++)
            mproc_args_free(argv[i]);
        /* a big input and result travel out of line */
        size_t big = 300000;
        unsigned char *b = malloc(big);
        for (size_t i = 0; i < big; i++)
            b[i] = (unsigned char)(i * 7);
        CHECK_OK(mproc_pool_apply(p, t_big, b, big, &res, &n, NULL));
        CHECK_EQ(n, 2 * big);
        for (size_t i = 0; i < big; i++)
            CHECK(((unsigned char *)res)[2 * i + 1] == (b[i] ^ 0x5a));
        free(res);
        free(b);
        mproc_pool_free(p);
    }
}

/* ---- semantics ---------------------------------------------------------- */

static void test_chunksize_edges(void)
{
    mproc_pool *p = new_pool(3, MPROC_START_FORK);
    int64_t v[50];
    mproc_iov it[50];
    make_items(v, it, 50);
    size_t sizes[] = {0, 1, 7, 50};
    size_t chunks[] = {0, 1, 3, 4, 49, 50, 1000};
    for (size_t a = 0; a < sizeof sizes / sizeof sizes[0]; a++)
        for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
            mproc_call_opts o = {.chunksize = chunks[c]};
            mproc_results *r;
            CHECK_OK(mproc_pool_map(p, t_square, it, sizes[a], &o, &r));
            CHECK_EQ(mproc_results_count(r), sizes[a]);
            for (size_t i = 0; i < sizes[a]; i++)
                CHECK_EQ(res_i64(r, i), v[i] * v[i]);
            CHECK_ERR(mproc_results_get(r, sizes[a], NULL, NULL), -ERANGE);
            mproc_results_free(r);
            int64_t out[50] = {0};
            CHECK_OK(mproc_pool_map_records(p, k_square, v, 8, out, 8, sizes[a],
                                            &o, NULL));
            for (size_t i = 0; i < sizes[a]; i++)
                CHECK_EQ(out[i], v[i] * v[i]);
        }
    mproc_pool_free(p);
}

static void test_task_errors(void)
{
    mproc_pool *p = new_pool(2, MPROC_START_FORK);
    int64_t v[20];
    mproc_iov it[20];
    for (int i = 0; i < 20; i++) {
        v[i] = i;
        it[i] = (mproc_iov){&v[i], 8};
    }
    mproc_results *r;
    CHECK_ERR(mproc_pool_map(p, t_fail_odd, it, 20, NULL, &r), -EDOM);
    CHECK_EQ(mproc_results_failed(r), 10);
    for (size_t i = 0; i < 20; i++) {
        const mproc_task_error *e = mproc_results_error(r, i);
        if (i % 2) {
            CHECK(e);
            CHECK_ERR(mproc_results_get(r, i, NULL, NULL), -EDOM);
            char want[64];
            snprintf(want, sizeof want, "odd input %zu", i);
            CHECK_STR(e->message, want);
            CHECK(e->worker > 0);
        } else {
            CHECK(!e);
            CHECK_EQ(res_i64(r, i), (int64_t)i);
        }
    }
    mproc_results_free(r);
    /* apply: the error and its message reach the caller */
    mproc_task_error err;
    int64_t x = 5;
    CHECK_ERR(mproc_pool_apply(p, t_fail_odd, &x, 8, NULL, NULL, &err), -EDOM);
    CHECK_STR(err.message, "odd input 5");
    /* future states */
    mproc_future *f;
    int64_t ms = 300;
    CHECK_OK(mproc_pool_apply_async(p, t_sleep_ms, &ms, 8, NULL, &f));
    CHECK_EQ(mproc_future_ready(f), 0);
    CHECK_ERR(mproc_future_successful(f), -EAGAIN);
    CHECK_ERR(mproc_future_get(f, 0.05, NULL, NULL), -ETIMEDOUT);
    CHECK_OK(mproc_future_get(f, -1, NULL, NULL));
    CHECK_EQ(mproc_future_successful(f), 1);
    CHECK(mproc_future_error(f) == NULL);
    mproc_future_free(f);
    CHECK_OK(mproc_pool_apply_async(p, t_fail_odd, &x, 8, NULL, &f));
    CHECK_ERR(mproc_future_get(f, 10, NULL, NULL), -EDOM);
    CHECK_EQ(mproc_future_successful(f), 0);
    CHECK_STR(mproc_future_error(f)->message, "odd input 5");
    mproc_future_free(f);
    /* a kernel failing one chunk: the error names its first record */
    int64_t out[1000];
    mproc_call_opts o = {.chunksize = 100};
    CHECK_ERR(
        mproc_pool_map_records(p, k_index, NULL, 0, out, 8, 1000, &o, &err),
        -EDOM);
    CHECK_EQ(err.index, 700);
    for (int i = 0; i < 1000; i++)
        if (i < 700 || i >= 800)
            CHECK_EQ(out[i], 3 * i);
    /* bad arguments */
    CHECK_ERR(mproc_pool_map(p, NULL, it, 1, NULL, &r), -EINVAL);
    CHECK_ERR(mproc_pool_map(p, t_square, NULL, 3, NULL, &r), -EINVAL);
    CHECK_ERR(mproc_pool_join(p, 0), -EINVAL); /* still running */
    CHECK_OK(mproc_pool_close(p));
    CHECK_ERR(mproc_pool_apply_async(p, t_square, &x, 8, NULL, &f),
              MPROC_EPOOL);
    CHECK_OK(mproc_pool_join(p, 10));
    mproc_pool_free(p);
}

static void test_imap_order(void)
{
    mproc_pool *p = new_pool(2, MPROC_START_FORK);
    /* Task 0 is slow: ordered still starts with 0; unordered does not. */
    int64_t ms[6] = {400, 0, 0, 0, 0, 0};
    mproc_iov it[6];
    for (int i = 0; i < 6; i++)
        it[i] = (mproc_iov){&ms[i], 8};
    mproc_call_opts o = {.chunksize = 1};
    for (int unordered = 0; unordered < 2; unordered++) {
        mproc_imap *m;
        if (unordered)
            CHECK_OK(mproc_pool_imap_unordered(p, t_sleep_ms, it, 6, &o, &m));
        else
            CHECK_OK(mproc_pool_imap(p, t_sleep_ms, it, 6, &o, &m));
        size_t idx, seen = 0, first = 99;
        const void *d;
        size_t n;
        int r;
        while ((r = mproc_imap_next(m, 10, &d, &n, &idx)) == 1) {
            CHECK_EQ(n, 8);
            CHECK_EQ(*(const int64_t *)d, ms[idx]);
            if (first == 99)
                first = idx;
            if (!unordered)
                CHECK_EQ(idx, seen);
            seen++;
        }
        CHECK_EQ(r, 0);
        CHECK_EQ(seen, 6);
        if (unordered)
            CHECK(first != 0);
        else
            CHECK_EQ(first, 0);
        CHECK_EQ(mproc_imap_next(m, 0, NULL, NULL, NULL), 0);
        mproc_imap_free(m);
    }
    /* empty input */
    mproc_imap *m;
    CHECK_OK(mproc_pool_imap(p, t_square, NULL, 0, NULL, &m));
    CHECK_EQ(mproc_imap_next(m, 1, NULL, NULL, NULL), 0);
    mproc_imap_free(m);
    mproc_pool_free(p);
}

/* A source of 10^8 items that counts how many it produced. */
typedef struct counter_src {
    int64_t next, limit, v;
} counter_src;

static int src_next(void *ctx, mproc_iov *item)
{
    counter_src *c = ctx;
    if (c->next >= c->limit)
        return 0;
    c->v = c->next++;
    *item = (mproc_iov){&c->v, sizeof c->v};
    return 1;
}

static void test_imap_lazy(void)
{
    mproc_pool *p = new_pool(2, MPROC_START_FORK);
    counter_src c = {0, 100000000, 0};
    mproc_call_opts o = {.window = 500};
    mproc_imap *m;
    CHECK_OK(mproc_pool_imap_source(p, t_square, src_next, &c, 0, &o, &m));
    CHECK(c.next <= 500);
    const void *d;
    size_t idx;
    for (int64_t i = 0; i < 20000; i++) {
        CHECK_EQ(mproc_imap_next(m, 10, &d, NULL, &idx), 1);
        CHECK_EQ(idx, (size_t)i);
        CHECK_EQ(*(const int64_t *)d, i * i);
        /* never more than the window ahead of the reader */
        CHECK(c.next <= i + 1 + 500);
    }
    mproc_imap_free(m); /* drops the rest of the 10^8 */
    /* a short source ends the iteration; unordered sees each once */
    counter_src c2 = {0, 3000, 0};
    CHECK_OK(mproc_pool_imap_source(p, t_square, src_next, &c2, 1, NULL, &m));
    char *seen = calloc(3000, 1);
    int r, n = 0;
    while ((r = mproc_imap_next(m, 10, &d, NULL, &idx)) == 1) {
        CHECK(idx < 3000 && !seen[idx]);
        seen[idx] = 1;
        CHECK_EQ(*(const int64_t *)d, (int64_t)(idx * idx));
        n++;
    }
    CHECK_EQ(r, 0);
    CHECK_EQ(n, 3000);
    free(seen);
    mproc_imap_free(m);
    mproc_pool_free(p);
}

/* ---- the bytes map's inputs and results, every size -------------------- */

/* Sizes around every boundary of the bytes map: empty, a word, the
 * largest result a chunk takes, the largest inline item, one past each,
 * and more than a worker's result ring. */
static const size_t g_sizes[] = {0,    1,     3,     7,     8,     9,
                                 15,   16,    100,   4095,  4096,  4097,
                                 8192, 16384, 16385, 70000, 300000};
#define NSIZES (sizeof g_sizes / sizeof g_sizes[0])

/* Echoes its input: results are as long as the inputs. Fails when the
 * input is not aligned to 8 (the documented promise). */
static int t_echo(const void *in, size_t len, mproc_out *out)
{
    if ((uintptr_t)in % 8)
        return mproc_out_fail(out, -EINVAL, "input not aligned");
    return mproc_out_write(out, in, len);
}

/* Waits (up to 20 s) until the file named by its input exists. */
static int t_wait_file(const void *in, size_t len, mproc_out *out)
{
    char path[256];
    if (len == 0 || len >= sizeof path)
        return -EINVAL;
    memcpy(path, in, len);
    path[len] = 0;
    for (int k = 0; k < 20000 && access(path, F_OK) != 0; k++)
        usleep(1000);
    return mproc_out_write(out, "w", 1);
}

/* Items of every size in g_sizes, in turn, n of them; their bytes are
 * filled in from a pattern of their index. */
static void make_sized(mproc_iov *it, unsigned char **bufs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = g_sizes[i % NSIZES];
        bufs[i] = malloc(len ? len : 1);
        CHECK(bufs[i]);
        for (size_t b = 0; b < len; b++)
            bufs[i][b] = (unsigned char)(i * 31 + b * 7);
        it[i] = (mproc_iov){bufs[i], len};
    }
}

static void check_echoed(mproc_results *r, const mproc_iov *it, size_t n)
{
    CHECK_EQ(mproc_results_count(r), n);
    CHECK_EQ(mproc_results_failed(r), 0);
    for (size_t i = 0; i < n; i++) {
        const void *d;
        size_t len;
        CHECK_OK(mproc_results_get(r, i, &d, &len));
        if (len != it[i].len || (uintptr_t)d % 8 ||
            (len && memcmp(d, it[i].data, len) != 0))
            mproc_test_fail(__FILE__, __LINE__, "item %zu (%zu bytes) wrong", i,
                            it[i].len);
    }
}

/* Every size, through the shared input arena (a map alone) and through
 * messages (a map while another one holds the arena), under each start
 * method; the results come back byte for byte, in order. */
static void test_map_sizes(void)
{
    enum { N = 3 * NSIZES + 5 };
    mproc_iov it[N];
    unsigned char *bufs[N];
    make_sized(it, bufs, N);
    char path[64];
    snprintf(path, sizeof path, "/tmp/mproc-test-pool-%d", (int)getpid());
    unlink(path);
    for (int m = 0; m < 3; m++) {
        mproc_pool *p = new_pool(2, mproc_test_methods[m]);
        mproc_results *r;
        for (size_t chunk = 0; chunk <= 7; chunk += 7) {
            mproc_call_opts o = {.chunksize = chunk};
            CHECK_OK(mproc_pool_map(p, t_echo, it, N, &o, &r));
            check_echoed(r, it, N);
            mproc_results_free(r);
        }
        /* a map that waits holds the arena: the next one, submitted
         * meanwhile, goes by messages */
        mproc_iov w = {path, strlen(path)};
        mproc_future *held, *f;
        CHECK_OK(mproc_pool_map_async(p, t_wait_file, &w, 1, NULL, &held));
        CHECK_OK(mproc_pool_map_async(p, t_echo, it, N, NULL, &f));
        int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        CHECK(fd >= 0);
        close(fd);
        CHECK_OK(mproc_future_wait(held, 30));
        CHECK_OK(mproc_future_get(held, 0, NULL, NULL));
        CHECK_OK(mproc_future_wait(f, 30));
        check_echoed(mproc_future_results(f), it, N);
        mproc_future_free(f);
        mproc_future_free(held);
        unlink(path);
        /* empty maps, either way */
        CHECK_OK(mproc_pool_map(p, t_echo, it, 0, NULL, &r));
        CHECK_EQ(mproc_results_count(r), 0);
        mproc_results_free(r);
        mproc_pool_free(p);
    }
    for (size_t i = 0; i < N; i++)
        free(bufs[i]);
}

/* A process that may not make files as big as the pool's input arena
 * (RLIMIT_FSIZE): its maps go by messages, with the same results. */
static void test_map_without_arena(void)
{
    enum { N = 20000 };
    struct rlimit rl = {1 << 20, 1 << 20};
    CHECK_OK(setrlimit(RLIMIT_FSIZE, &rl));
    int64_t *v = malloc(N * sizeof *v);
    mproc_iov *it = malloc(N * sizeof *it);
    CHECK(v && it);
    make_items(v, it, N);
    for (int m = 0; m < 3; m++) {
        mproc_pool *p = new_pool(2, mproc_test_methods[m]);
        mproc_results *r;
        CHECK_OK(mproc_pool_map(p, t_square, it, N, NULL, &r));
        CHECK_EQ(mproc_results_failed(r), 0);
        for (size_t i = 0; i < N; i++)
            if (res_i64(r, i) != v[i] * v[i])
                mproc_test_fail(__FILE__, __LINE__, "item %zu wrong", i);
        mproc_results_free(r);
        mproc_pool_free(p);
    }
    free(v);
    free(it);
}

/* The square of x and the pid of the worker that computed it. */
typedef struct sq_pid {
    int64_t y;
    int64_t pid;
} sq_pid;

static int t_crash_pid(const void *in, size_t len, mproc_out *out)
{
    const crash_in *c = in;
    (void)len;
    if (c->action == 1)
        kill(getpid(), SIGKILL);
    if (c->action == 5)
        for (;;)
            pause(); /* until the task timeout kills the worker */
    sq_pid r = {c->x * c->x, (int64_t)getpid()};
    return mproc_out_write(out, &r, sizeof r);
}

/* A worker dies in the middle of a message (killed, or killed for its
 * timeout) while the results of the tasks before it are still in its
 * open chunk: those are kept (computed once, by it), the task it was
 * running fails, and the ones it never started run elsewhere. */
static void test_map_killed_mid_chunk(void)
{
    enum { N = 4000, HALF = N / 2 };
    crash_in *v = malloc(N * sizeof *v);
    mproc_iov *it = malloc(N * sizeof *it);
    CHECK(v && it);
    const int at[] = {1500, 0, HALF - 1, HALF + 700};
    for (int m = 0; m < 3; m++) {
        for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
            int x = at[k], hang = (int)k == 3;
            for (int i = 0; i < N; i++) {
                v[i] = (crash_in){i, 0, 0};
                it[i] = (mproc_iov){&v[i], sizeof v[i]};
            }
            v[x].action = hang ? 5 : 1;
            mproc_pool *p = new_pool(2, mproc_test_methods[m]);
            /* one message per worker: the whole half is one chunk */
            mproc_call_opts o = {.chunksize = HALF, .timeout = hang ? 1 : 0};
            mproc_results *r;
            CHECK_ERR(mproc_pool_map(p, t_crash_pid, it, N, &o, &r),
                      hang ? MPROC_ETASKTIMEOUT : MPROC_EWORKER);
            CHECK_EQ(mproc_results_failed(r), 1);
            const mproc_task_error *e = mproc_results_error(r, (size_t)x);
            CHECK(e && e->worker > 0);
            CHECK_EQ(e->exitcode, -SIGKILL);
            if (!hang)
                CHECK(strstr(e->message, "while running this task"));
            int first = x < HALF ? 0 : HALF;
            for (int i = 0; i < N; i++) {
                if (i == x)
                    continue;
                const void *d;
                size_t len;
                CHECK_OK(mproc_results_get(r, (size_t)i, &d, &len));
                CHECK_EQ(len, sizeof(sq_pid));
                sq_pid q;
                memcpy(&q, d, sizeof q);
                if (q.y != (int64_t)i * i)
                    mproc_test_fail(__FILE__, __LINE__, "item %d wrong", i);
                /* before it in its message: the dead worker's own */
                if (i >= first && i < x && q.pid != e->worker)
                    mproc_test_fail(__FILE__, __LINE__,
                                    "item %d ran again (pid %lld, dead %d)", i,
                                    (long long)q.pid, (int)e->worker);
            }
            mproc_results_free(r);
            mproc_pool_free(p);
        }
    }
    /* One worker: its replacement dies on the first task it gets (the
     * next one): the ring it inherits holds its predecessor's chunks, which
     * must not pass for its own. */
    for (int m = 0; m < 3; m++) {
        for (int i = 0; i < N; i++) {
            v[i] = (crash_in){i, i == 10 || i == 11, 0};
            it[i] = (mproc_iov){&v[i], sizeof v[i]};
        }
        mproc_pool_opts po = {.processes = 1, .method = mproc_test_methods[m]};
        mproc_pool *p;
        CHECK_OK(mproc_pool_new(&p, &po));
        mproc_call_opts o = {.chunksize = HALF};
        mproc_results *r;
        CHECK_ERR(mproc_pool_map(p, t_crash_pid, it, N, &o, &r), MPROC_EWORKER);
        CHECK_EQ(mproc_results_failed(r), 2);
        CHECK_ERR(mproc_results_get(r, 11, NULL, NULL), MPROC_EWORKER);
        for (int i = 0; i < N; i++) {
            const void *d;
            if (i != 10 && i != 11 &&
                (mproc_results_get(r, (size_t)i, &d, NULL) != 0 ||
                 ((const sq_pid *)d)->y != (int64_t)i * i))
                mproc_test_fail(__FILE__, __LINE__, "item %d wrong", i);
        }
        mproc_results_free(r);
        mproc_pool_free(p);
    }
    free(v);
    free(it);
}

/* ---- failures ----------------------------------------------------------- */

static void test_random_crashes(void)
{
    enum { N = 20000, K = 6 };
    crash_in *v = malloc(N * sizeof *v);
    mproc_iov *it = malloc(N * sizeof *it);
    srand((unsigned)getpid());
    for (int round = 0; round < 4; round++) {
        mproc_start_method m =
            round == 3 ? MPROC_START_SPAWN : MPROC_START_FORK;
        mproc_pool *p = new_pool(2, m);
        pid_t before[2];
        CHECK_EQ(mproc_pool_pids(p, before, 2), 2);
        int crash_at[K], action[K];
        for (int i = 0; i < N; i++) {
            v[i] = (crash_in){i, 0, 0};
            it[i] = (mproc_iov){&v[i], sizeof v[i]};
        }
        for (int k = 0; k < K; k++) {
            int idx;
            do
                idx = rand() % N;
            while (v[idx].action != 0);
            crash_at[k] = idx;
            action[k] = 1 + (k + round) % 4;
            v[idx].action = action[k];
        }
        mproc_call_opts o = {.chunksize = (size_t)(round == 1 ? 1 : 0)};
        mproc_results *r;
        CHECK_ERR(mproc_pool_map(p, t_crash, it, N, &o, &r), MPROC_EWORKER);
        CHECK_EQ(mproc_results_failed(r), K);
        for (int k = 0; k < K; k++) {
            const mproc_task_error *e = mproc_results_error(r, crash_at[k]);
            CHECK(e);
            CHECK_EQ(e->code, MPROC_EWORKER);
            CHECK(e->worker > 0);
            int want = action[k] == 1   ? -SIGKILL
                       : action[k] == 2 ? -SIGABRT
                       : action[k] == 3 ? 3
                                        : -SIGSEGV;
            /* ASan turns a SEGV into exit code 1 */
            CHECK(e->exitcode == want || (action[k] == 4 && e->exitcode == 1));
            CHECK(strstr(e->message, "while running this task"));
        }
        for (int i = 0; i < N; i++)
            if (v[i].action == 0 && res_i64(r, (size_t)i) != (int64_t)i * i)
                mproc_test_fail(__FILE__, __LINE__, "item %d wrong", i);
        mproc_results_free(r);
        /* the pool still works with replacement workers */
        pid_t after[2];
        CHECK_EQ(mproc_pool_pids(p, after, 2), 2);
        int64_t x = 9;
        void *res;
        CHECK_OK(mproc_pool_apply(p, t_square, &x, 8, &res, NULL, NULL));
        CHECK_EQ(*(int64_t *)res, 81);
        free(res);
        mproc_pool_free(p);
    }
    free(v);
    free(it);
}

static void test_timeout_kill(void)
{
    mproc_pool_opts po = {.processes = 2, .task_timeout = 0.3};
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &po));
    int64_t long_ms = 20000, short_ms = 10;
    mproc_future *slow, *quick, *own;
    double t0 = mproc_test_now();
    CHECK_OK(mproc_pool_apply_async(p, t_sleep_ms, &long_ms, 8, NULL, &slow));
    /* a per-call timeout wins over the pool's default */
    mproc_call_opts o = {.timeout = 0.1};
    CHECK_OK(mproc_pool_apply_async(p, t_sleep_ms, &long_ms, 8, &o, &own));
    CHECK_OK(mproc_pool_apply_async(p, t_sleep_ms, &short_ms, 8, NULL, &quick));
    CHECK_ERR(mproc_future_get(own, 10, NULL, NULL), MPROC_ETASKTIMEOUT);
    CHECK_ERR(mproc_future_get(slow, 10, NULL, NULL), MPROC_ETASKTIMEOUT);
    CHECK(mproc_test_now() - t0 < 5);
    const mproc_task_error *e = mproc_future_error(slow);
    CHECK(e && e->worker > 0 && e->exitcode == -SIGKILL);
    CHECK_OK(mproc_future_get(quick, 10, NULL, NULL));
    mproc_future_free(slow);
    mproc_future_free(quick);
    mproc_future_free(own);
    /* no timeout for this call: runs past the pool's default */
    int64_t ms = 500;
    mproc_call_opts none = {.timeout = -1};
    CHECK_OK(mproc_pool_apply_async(p, t_sleep_ms, &ms, 8, &none, &slow));
    CHECK_OK(mproc_future_get(slow, 10, NULL, NULL));
    mproc_future_free(slow);
    CHECK_EQ(mproc_pool_pids(p, NULL, 0), 2);
    mproc_pool_free(p);
}

static void test_maxtasksperchild(void)
{
    mproc_pool_opts po = {.processes = 2, .maxtasksperchild = 2};
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &po));
    pid_t pids[12];
    for (int i = 0; i < 12; i++) {
        void *res;
        CHECK_OK(mproc_pool_apply(p, t_pid, NULL, 0, &res, NULL, NULL));
        pids[i] = (pid_t) * (int64_t *)res;
        free(res);
    }
    int distinct = 0;
    for (int i = 0; i < 12; i++) {
        int dup = 0;
        for (int j = 0; j < i; j++)
            dup |= pids[j] == pids[i];
        distinct += !dup;
    }
    CHECK(distinct >= 6);
    /* a map recycles too and still gives every result */
    int64_t v[100];
    mproc_iov it[100];
    make_items(v, it, 100);
    mproc_results *r;
    CHECK_OK(mproc_pool_map(p, t_square, it, 100, NULL, &r));
    for (size_t i = 0; i < 100; i++)
        CHECK_EQ(res_i64(r, i), v[i] * v[i]);
    mproc_results_free(r);
    mproc_pool_free(p);
}

static atomic_int g_ok, g_err, g_map_cb;

static void cb_ok(mproc_future *f, void *arg)
{
    const void *d;
    (void)arg;
    if (mproc_future_get(f, 0, &d, NULL) == 0)
        atomic_fetch_add(&g_ok, 1);
}

static void cb_err(mproc_future *f, void *arg)
{
    (void)arg;
    if (mproc_future_error(f) && mproc_future_error(f)->code == -EDOM)
        atomic_fetch_add(&g_err, 1);
}

static void cb_map(mproc_future *f, void *arg)
{
    (void)arg;
    /* inside its callback the future reads as ready */
    mproc_results *r = mproc_future_results(f);
    if (r && mproc_results_count(r) == 10 && mproc_future_ready(f))
        atomic_fetch_add(&g_map_cb, 1);
}

static void test_callbacks_once(void)
{
    mproc_pool *p = new_pool(2, MPROC_START_FORK);
    enum { N = 500 };
    static int64_t v[N];
    mproc_call_opts o = {.callback = cb_ok, .error_callback = cb_err};
    for (int i = 0; i < N; i++) {
        v[i] = i;
        /* no future kept: only the callbacks see the results */
        CHECK_OK(mproc_pool_apply_async(p, t_fail_odd, &v[i], 8, &o, NULL));
    }
    mproc_iov it[10];
    for (int i = 0; i < 10; i++)
        it[i] = (mproc_iov){&v[i], 8};
    mproc_call_opts mo = {.callback = cb_map, .error_callback = cb_map};
    mproc_future *mf;
    CHECK_OK(mproc_pool_map_async(p, t_square, it, 10, &mo, &mf));
    CHECK_OK(mproc_future_wait(mf, 10));
    /* the callback ran before the future became ready */
    CHECK_EQ(atomic_load(&g_map_cb), 1);
    CHECK(mproc_future_results(mf));
    CHECK_EQ(mproc_results_count(mproc_future_results(mf)), 10);
    mproc_future_free(mf);
    CHECK_OK(mproc_pool_close(p));
    CHECK_OK(mproc_pool_join(p, 20));
    CHECK_EQ(atomic_load(&g_ok), N / 2);
    CHECK_EQ(atomic_load(&g_err), N / 2);
    CHECK_EQ(atomic_load(&g_map_cb), 1);
    CHECK_EQ(mproc_pool_pids(p, NULL, 0), 0);
    mproc_pool_free(p);
}

static atomic_int g_term_err;

static void cb_term(mproc_future *f, void *arg)
{
    (void)arg;
    if (mproc_future_error(f) && mproc_future_error(f)->code == MPROC_EPOOL)
        atomic_fetch_add(&g_term_err, 1);
}

static void test_terminate_stuck(void)
{
    mproc_pool *p = new_pool(2, MPROC_START_FORK);
    mproc_future *f[4];
    mproc_call_opts o = {.error_callback = cb_term};
    for (int i = 0; i < 4; i++)
        CHECK_OK(mproc_pool_apply_async(p, t_stuck, NULL, 0, &o, &f[i]));
    usleep(200000); /* both workers are now blocked in read() */
    double t0 = mproc_test_now();
    CHECK_OK(mproc_pool_terminate(p));
    CHECK(mproc_test_now() - t0 < 3);
    CHECK_EQ(mproc_pool_pids(p, NULL, 0), 0);
    for (int i = 0; i < 4; i++) {
        CHECK_ERR(mproc_future_get(f[i], 1, NULL, NULL), MPROC_EPOOL);
    }
    CHECK_EQ(atomic_load(&g_term_err), 4);
    CHECK_OK(mproc_pool_join(p, 1));
    mproc_pool_free(p);
    /* futures outlive the pool */
    CHECK_ERR(mproc_future_get(f[0], 0, NULL, NULL), MPROC_EPOOL);
    for (int i = 0; i < 4; i++)
        mproc_future_free(f[i]);
    /* freeing a busy pool terminates it */
    p = new_pool(2, MPROC_START_FORK);
    mproc_future *g;
    CHECK_OK(mproc_pool_apply_async(p, t_stuck, NULL, 0, NULL, &g));
    int64_t v[1000];
    mproc_iov it[1000];
    make_items(v, it, 1000);
    mproc_imap *m;
    CHECK_OK(mproc_pool_imap(p, t_stuck, it, 1000, NULL, &m));
    usleep(100000);
    mproc_pool_free(p);
    CHECK_ERR(mproc_future_get(g, 1, NULL, NULL), MPROC_EPOOL);
    mproc_future_free(g);
    CHECK_ERR(mproc_imap_next(m, 1, NULL, NULL, NULL), MPROC_EPOOL);
    mproc_imap_free(m);
}

/* An initializer slow enough for the test to SIGKILL its worker in it. */
/* An initializer that waits (up to 60 s) until the file its argument
 * names exists: a worker stays "starting" until the test says, however
 * slow the machine, so kills land in start-ups for sure. */
static int init_gated(const mproc_args *a)
{
    const char *gate = mproc_args_str(a, 0);
    for (int i = 0; gate && i < 30000 && access(gate, F_OK) != 0; i++)
        usleep(2000);
    return 0;
}

/* Kills every worker of the pool once (those still starting). */
static int kill_workers(mproc_pool *p)
{
    pid_t pids[8];
    int n = mproc_pool_pids(p, pids, 8);
    for (int i = 0; i < n; i++)
        kill(pids[i], SIGKILL);
    return n;
}

/* Workers SIGKILLed while starting (in the initializer, as an OOM killer
 * or an operator might) are replaced: the pool keeps working; only an
 * initializer that reports failure, or a run of deaths, breaks it. */
static void test_killed_while_starting(void)
{
    char gate[64];
    snprintf(gate, sizeof gate, "/tmp/mproc-test-gate-%d", (int)getpid());
    unlink(gate);
    mproc_args *ga = mproc_args_of("s", gate);
    CHECK(ga != NULL);
    for (int m = 0; m < 3; m++) {
        mproc_pool_opts o = {.processes = 2,
                             .initializer = init_gated,
                             .initargs = ga,
                             .method = mproc_test_methods[m]};
        mproc_pool *p;
        CHECK_OK(mproc_pool_new(&p, &o));
        int64_t v[40];
        mproc_iov it[40];
        make_items(v, it, 40);
        mproc_future *f;
        CHECK_OK(mproc_pool_map_async(p, t_square, it, 40, NULL, &f));
        int killed = 0;
        for (int round = 0; round < 3; round++) { /* 6 deaths < 10 */
            usleep(30000); /* replacements are starting */
            killed += kill_workers(p);
        }
        CHECK(killed >= 3);
        int fd = open(gate, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        CHECK(fd >= 0); /* the initializers may finish now */
        close(fd);
        CHECK_OK(mproc_future_wait(f, 30));
        mproc_results *r = mproc_future_results(f);
        CHECK_EQ(mproc_results_failed(r), 0);
        for (size_t i = 0; i < 40; i++)
            CHECK_EQ(res_i64(r, i), v[i] * v[i]);
        mproc_future_free(f);
        mproc_pool_free(p);
        unlink(gate);
    }
    /* Every new worker killed while starting: the budget runs out and the
     * pool gives up with a clear error instead of looping. */
    mproc_pool_opts o = {
        .processes = 1, .initializer = init_gated, .initargs = ga};
    mproc_pool *p;
    CHECK_OK(mproc_pool_new(&p, &o));
    mproc_future *f;
    int64_t x = 3;
    CHECK_OK(mproc_pool_apply_async(p, t_square, &x, 8, NULL, &f));
    double t0 = mproc_test_now();
    while (mproc_future_ready(f) == 0 && mproc_test_now() - t0 < 30) {
        usleep(20000);
        kill_workers(p);
    }
    CHECK_ERR(mproc_future_wait(f, 0), 0);
    CHECK_ERR(mproc_future_successful(f), 0);
    const mproc_task_error *e = mproc_future_error(f);
    CHECK(e && e->code == MPROC_EINIT);
    CHECK(strstr(e->message, "10 pool workers in a row died while starting"));
    mproc_future_free(f);
    mproc_pool_free(p);
    mproc_args_free(ga);
}

static void test_initializer_fails(void)
{
    mproc_init_fn inits[] = {init_fail, init_crash};
    for (int m = 0; m < 2; m++)
        for (int k = 0; k < 2; k++) {
            mproc_pool_opts o = {.processes = 2,
                                 .initializer = inits[k],
                                 .method = mproc_test_methods[m]};
            mproc_pool *p;
            CHECK_OK(mproc_pool_new(&p, &o));
            mproc_task_error err;
            int64_t x = 3;
            double t0 = mproc_test_now();
            CHECK_ERR(mproc_pool_apply(p, t_square, &x, 8, NULL, NULL, &err),
                      MPROC_EINIT);
            CHECK(mproc_test_now() - t0 < 10);
            CHECK(err.message[0]);
            if (k == 0 && !strstr(err.message, "returned -42"))
                mproc_test_fail(__FILE__, __LINE__, "message: %s", err.message);
            /* A crashing initializer: replaced until the budget is spent,
             * then the pool gives up and says why. */
            if (k == 1 && (!strstr(err.message, "10 pool workers in a row") ||
                           !strstr(err.message, "in its initializer")))
                mproc_test_fail(__FILE__, __LINE__, "message: %s", err.message);
            /* not restarted: the pool stays broken, and says so */
            mproc_future *f;
            CHECK_ERR(mproc_pool_apply_async(p, t_square, &x, 8, NULL, &f),
                      MPROC_EINIT);
            CHECK_EQ(mproc_pool_pids(p, NULL, 0), 0);
            CHECK_OK(mproc_pool_join(p, 5));
            mproc_pool_free(p);
        }
}

/* ---- records zero copy, progress, resources ---------------------------- */

static void test_records_shm(void)
{
    mproc_pool *p = new_pool(2, MPROC_START_SPAWN);
    enum { N = 100000 };
    int64_t *in = mproc_pool_shm_alloc(p, N * 8);
    int64_t *out = mproc_pool_shm_alloc(p, N * 8);
    CHECK(in && out);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++)
            in[i] = i + round;
        CHECK_OK(
            mproc_pool_map_records(p, k_square, in, 8, out, 8, N, NULL, NULL));
        for (int64_t i = 0; i < N; i++)
            CHECK_EQ(out[i], (i + round) * (i + round));
    }
    /* in place: in and out in one buffer */
    CHECK_OK(mproc_pool_map_records(p, k_square, in, 8, in, 8, N, NULL, NULL));
    CHECK_EQ(in[10], 144);
    mproc_pool_shm_free(p, in);
    mproc_pool_shm_free(p, out);
    mproc_pool_free(p);
}

static size_t g_last_done, g_last_total, g_prog_calls;

static void on_progress(size_t done, size_t total, void *arg)
{
    (void)arg;
    if (done < g_last_done)
        mproc_test_fail(__FILE__, __LINE__, "progress went back");
    g_last_done = done;
    g_last_total = total;
    g_prog_calls++;
}

static void test_progress(void)
{
    mproc_pool *p = new_pool(2, MPROC_START_FORK);
    enum { N = 20000 };
    int64_t *v = malloc(N * 8);
    mproc_iov *it = malloc(N * sizeof *it);
    make_items(v, it, N);
    int fds[2];
    CHECK(pipe(fds) == 0);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    int saved = dup(2);
    dup2(fds[1], 2);
    mproc_call_opts o = {.progress = on_progress, .progress_bar = 2};
    mproc_results *r;
    CHECK_OK(mproc_pool_map(p, t_square, it, N, &o, &r));
    mproc_results_free(r);
    /* bar on, but stderr (a pipe) is no terminal: quiet */
    o.progress_bar = 1;
    g_last_done = 0;
    CHECK_OK(mproc_pool_map(p, t_square, it, 10, &o, &r));
    mproc_results_free(r);
    dup2(saved, 2);
    close(saved);
    close(fds[1]);
    char buf[8192];
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    CHECK(n > 0);
    buf[n] = 0;
    CHECK(strstr(buf, "100% ["));
    CHECK(strstr(buf, "20000/20000"));
    CHECK(!strstr(buf, "10/10"));
    CHECK_EQ(g_last_done, 10);
    CHECK_EQ(g_last_total, 10);
    CHECK(g_prog_calls >= 2);
    free(v);
    free(it);
    mproc_pool_free(p);
}

static void test_fd_exhaustion(void)
{
    SKIP_UNDER_VALGRIND("it emulates RLIMIT_NOFILE only in part: some "
                        "calls get fds past a lowered limit");
    struct rlimit old, lim;
    getrlimit(RLIMIT_NOFILE, &old);
    int base = mproc_test_count_fds();
    int ok = 0, fail = 0;
    for (int extra = 0; extra < 14; extra++) {
        lim = old;
        lim.rlim_cur = (rlim_t)(base + 4 + extra);
        CHECK(setrlimit(RLIMIT_NOFILE, &lim) == 0);
        mproc_pool *p;
        int r = mproc_pool_new(&p, &(mproc_pool_opts){.processes = 2});
        setrlimit(RLIMIT_NOFILE, &old);
        if (r < 0) {
            fail++;
            CHECK_EQ(mproc_test_count_fds(), base);
            continue;
        }
        ok++;
        int64_t x = 4;
        void *res;
        CHECK_OK(mproc_pool_apply(p, t_square, &x, 8, &res, NULL, NULL));
        free(res);
        mproc_pool_free(p);
        CHECK_EQ(mproc_test_count_fds(), base);
    }
    CHECK(fail > 0 && ok > 0);
}

/* 1 KiB results: a worker fills its ring quickly when nobody reads it. */
static int t_kib(const void *in, size_t len, mproc_out *out)
{
    (void)in;
    (void)len;
    void *p = mproc_out_alloc(out, 1024);
    if (!p)
        return -ENOMEM;
    memset(p, 7, 1024);
    return 0;
}

static void slow_progress(size_t done, size_t total, void *arg)
{
    (void)done;
    (void)total;
    (void)arg;
    usleep(300000); /* the pool's thread reads nothing meanwhile */
}

static void test_terminate_full_ring(void)
{
    mproc_pool *p = new_pool(2, MPROC_START_FORK);
    enum { N = 200000 };
    static mproc_iov it[N];
    static char z[N];
    for (int i = 0; i < N; i++)
        it[i] = (mproc_iov){&z[i], 1};
    mproc_call_opts o = {.progress = slow_progress};
    mproc_future *f;
    CHECK_OK(mproc_pool_map_async(p, t_kib, it, N, &o, &f));
    usleep(400000); /* workers block on full rings */
    double t0 = mproc_test_now();
    CHECK_OK(mproc_pool_terminate(p));
    CHECK(mproc_test_now() - t0 < 5);
    CHECK_ERR(mproc_future_get(f, 5, NULL, NULL), MPROC_EPOOL);
    mproc_results *r = mproc_future_results(f);
    CHECK(r && mproc_results_failed(r) > 0);
    CHECK_ERR(mproc_results_get(r, N - 1, NULL, NULL), MPROC_EPOOL);
    mproc_future_free(f);
    mproc_pool_free(p);
}

/* The pool's owner is SIGKILLed: its workers go away by themselves. We
 * are their subreaper, so they come back to us to be reaped. */
/* How many pidfds the worker holds: its watch on the pool's owner. */
static int t_count_pidfds(const void *in, size_t len, mproc_out *out)
{
    (void)in;
    (void)len;
    int64_t n = 0;
    for (int fd = 0; fd < 1024; fd++) {
        char path[64], link[64] = "";
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        if (readlink(path, link, sizeof link - 1) > 0 &&
            strcmp(link, "anon_inode:[pidfd]") == 0)
            n++;
    }
    return mproc_out_write(out, &n, sizeof n);
}

/* A worker watches its owner through a pidfd, or without pidfds through
 * a pipe only the owner can write (test_owner_killed: either way it ends
 * with the owner). */
static void test_worker_watches_owner(void)
{
    for (int m = 0; m < 3; m++) {
        mproc_pool *p;
        mproc_pool_opts o = {.processes = 1, .method = mproc_test_methods[m]};
        CHECK_OK(mproc_pool_new(&p, &o));
        void *res = NULL;
        size_t n = 0;
        CHECK_OK(mproc_pool_apply(p, t_count_pidfds, NULL, 0, &res, &n, NULL));
        CHECK_EQ(n, sizeof(int64_t));
        int64_t k;
        memcpy(&k, res, sizeof k);
        free(res);
        CHECK_EQ(k, mproc_test_no_pidfd() ? 0 : 1);
        mproc_pool_free(p);
    }
}

/* A program that exits without freeing its pool (busy, under every start
 * method) ends at once: the pool is terminated at exit before its
 * workers are joined, so none is replaced and waited for. */
static void test_exit_without_free(void)
{
    for (int round = 0; round < 10; round++) {
        pid_t child = fork();
        CHECK(child >= 0);
        if (child == 0) {
            mproc_pool *p;
            mproc_pool_opts o = {.processes = 4,
                                 .method = mproc_test_methods[round % 3]};
            if (mproc_pool_new(&p, &o) < 0)
                _exit(2);
            int64_t x = 3;
            void *res = NULL;
            mproc_pool_apply(p, t_square, &x, sizeof x, &res, NULL, NULL);
            free(res);
            mproc_future *f;
            for (int k = 0; k < 100; k++)
                if (mproc_pool_apply_async(p, t_square, &x, sizeof x, NULL,
                                           &f) == 0)
                    mproc_future_free(f);
            exit(0); /* atexit: mproc_shutdown; the pool was never freed */
        }
        double t0 = mproc_test_now();
        int st;
        pid_t w;
        while ((w = waitpid(child, &st, WNOHANG)) == 0) {
            if (mproc_test_now() - t0 > 10) {
                kill(child, SIGKILL);
                waitpid(child, &st, 0);
                mproc_test_fail(__FILE__, __LINE__,
                                "round %d: exit hung with a live pool", round);
            }
            usleep(5000);
        }
        CHECK(w == child && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
}

static void test_owner_killed(void)
{
    CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    for (int m = 0; m < 3; m++) {
        int fds[2];
        CHECK(pipe(fds) == 0);
        pid_t child = fork();
        CHECK(child >= 0);
        if (child == 0) {
            close(fds[0]);
            mproc_pool *p;
            mproc_pool_opts o = {.processes = 2,
                                 .method = mproc_test_methods[m]};
            if (mproc_pool_new(&p, &o) < 0)
                mproc_test_exit(2);
            pid_t pids[2];
            mproc_pool_pids(p, pids, 2);
            if (write(fds[1], pids, sizeof pids) != sizeof pids)
                mproc_test_exit(3);
            pause();
            mproc_test_exit(0);
        }
        close(fds[1]);
        pid_t pids[2];
        CHECK_EQ(read(fds[0], pids, sizeof pids), sizeof pids);
        close(fds[0]);
        kill(child, SIGKILL);
        int st;
        waitpid(child, &st, 0);
        /* Every orphan (workers, a fork server) ends and is reaped. */
        double t0 = mproc_test_now();
        for (;;) {
            pid_t w = waitpid(-1, &st, WNOHANG);
            if (w < 0 && errno == ECHILD)
                break;
            if (w <= 0) {
                CHECK(mproc_test_now() - t0 < 5);
                usleep(10000);
            }
        }
        /* reaped by us, or by the fork server before it ended */
        for (int k = 0; k < 2; k++)
            CHECK(kill(pids[k], 0) < 0 && errno == ESRCH);
    }
}

/* Fills the pool's shared board (slots and result rings) with random
 * bytes, as a buggy task with a wild pointer might. */
static int t_scribble(const void *in, size_t len, mproc_out *out)
{
    (void)in;
    (void)len;
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    unsigned seed = (unsigned)getpid();
    int found = 0;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (!strstr(line, "mproc-pool-board") ||
            sscanf(line, "%lx-%lx", &lo, &hi) != 2 || !strstr(line, "rw"))
            continue;
        for (unsigned char *p = (unsigned char *)lo; p < (unsigned char *)hi;
             p++)
            *p = (unsigned char)rand_r(&seed);
        found = 1;
    }
    if (f)
        fclose(f);
    if (!found)
        return mproc_out_fail(out, -ENOENT, "no board mapping");
    return mproc_out_write(out, "x", 1);
}

/* A worker that trashes what it shares with the parent: the parent must
 * neither crash nor hang; tasks fail cleanly or succeed. */
static void test_hostile_board(void)
{
    for (int round = 0; round < 3; round++) {
        mproc_pool *p = new_pool(2, MPROC_START_FORK);
        int64_t v[400];
        mproc_iov it[400];
        make_items(v, it, 400);
        mproc_future *f1, *f2, *s;
        CHECK_OK(mproc_pool_map_async(p, t_square, it, 400, NULL, &f1));
        CHECK_OK(mproc_pool_apply_async(p, t_scribble, NULL, 0, NULL, &s));
        /* the scribble may break the pool at once (a worker whose board
         * slot reads "not initialized" when it dies): a clean refusal */
        int r2 = mproc_pool_map_async(p, t_square, it, 400, NULL, &f2);
        CHECK(r2 == 0 || r2 == MPROC_EINIT);
        /* every call finishes, one way or another */
        mproc_call_opts o = {.timeout = 5};
        mproc_results *r;
        int rc = mproc_pool_map(p, t_square, it, 400, &o, &r);
        CHECK(rc == 0 || rc == MPROC_EWORKER || rc == MPROC_EINIT ||
              rc == MPROC_ETASKTIMEOUT || rc == MPROC_EPOOL);
        if (r)
            mproc_results_free(r);
        CHECK(mproc_future_wait(s, 10) == 0);
        CHECK(mproc_future_wait(f1, 10) == 0);
        CHECK(r2 < 0 || mproc_future_wait(f2, 10) == 0);
        /* the scribbler ran, or its worker was killed for it */
        int sr = mproc_future_get(s, 0, NULL, NULL);
        CHECK(sr != -ENOENT);
        mproc_future_free(s);
        mproc_future_free(f1);
        if (r2 == 0)
            mproc_future_free(f2);
        mproc_pool_free(p);
    }
}

static void cb_resubmit(mproc_future *f, void *arg)
{
    mproc_pool *p = arg;
    static int64_t x = 7;
    (void)f;
    /* submitting from a callback must not deadlock */
    mproc_future *g;
    if (mproc_pool_apply_async(p, t_square, &x, 8, NULL, &g) == 0) {
        atomic_fetch_add(&g_ok, 100);
        mproc_future_free(g);
    }
}

/* apply_async's futures are reused once freed (their memory kept by the
 * pool): rounds of applies of many sizes, freed out of order, some while
 * their tasks still run; every result must be its own input, and futures
 * still held when the pool is freed stay valid (the leak check at the
 * end of the case catches kept memory that is never freed). */
static void test_apply_reuse(void)
{
    enum { N = 2000, W = 40 };
    mproc_pool *p = new_pool(2, MPROC_START_FORK);
    static struct {
        mproc_future *f;
        size_t len;
        uint64_t in[W];
    } a[N];
    unsigned seed = 12345;
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < N; i++) {
            a[i].len = 8 * ((size_t)(i * 7 + round) % W); /* 0 .. 312 */
            for (size_t k = 0; k < W; k++)
                a[i].in[k] = (uint64_t)round << 48 | (uint64_t)i << 8 | k;
            CHECK_OK(mproc_pool_apply_async(p, t_echo, a[i].in, a[i].len, NULL,
                                            &a[i].f));
        }
        for (int i = 0; i < N; i++) { /* a shuffled order */
            int k = (int)(rand_r(&seed) % N);
            __typeof__(a[0]) t = a[i];
            a[i] = a[k];
            a[k] = t;
        }
        /* Half freed at once, most of their tasks not yet run. */
        for (int i = 0; i < N / 2; i++) {
            mproc_future_free(a[i].f);
            a[i].f = NULL;
        }
        for (int i = N / 2; i < N; i++) {
            const void *d;
            size_t len;
            CHECK_OK(mproc_future_get(a[i].f, 30, &d, &len));
            CHECK_EQ(len, a[i].len);
            CHECK(memcmp(d, a[i].in, len) == 0);
            if (round < 3) {
                mproc_future_free(a[i].f);
                a[i].f = NULL;
            }
        }
    }
    mproc_pool_free(p);
    /* The last round's second half outlives the pool. */
    for (int i = N / 2; i < N; i++) {
        CHECK_EQ(mproc_future_ready(a[i].f), 1);
        mproc_future_free(a[i].f);
    }
}

static void test_callback_submits(void)
{
    mproc_pool *p = new_pool(2, MPROC_START_FORK);
    int64_t x = 2;
    mproc_call_opts o = {.callback = cb_resubmit, .callback_arg = p};
    atomic_store(&g_ok, 0);
    mproc_future *f;
    CHECK_OK(mproc_pool_apply_async(p, t_square, &x, 8, &o, &f));
    CHECK_OK(mproc_future_get(f, 10, NULL, NULL));
    CHECK_EQ(atomic_load(&g_ok), 100);
    mproc_future_free(f);
    mproc_pool_free(p);
}

/* starmap with a shareable object in every task's arguments: each task
 * puts its number on a queue it received, under every start method (the
 * workers import the queue from the task message). */
static int t_star_queue(const mproc_args *a, mproc_out *out)
{
    mproc_queue *q = mproc_args_queue(a, 0);
    int64_t v = mproc_args_int(a, 1);
    if (!q)
        return mproc_out_fail(out, -EINVAL, "no queue in task %lld",
                              (long long)v);
    return mproc_queue_put(q, &v, sizeof v, 5);
}

static void test_starmap_objects(void)
{
    enum { N = 40 };
    for (int m = 0; m < 3; m++) {
        mproc_queue *q;
        CHECK_OK(mproc_queue_new(&q, 0));
        mproc_pool_opts o = {.processes = 2, .method = mproc_test_methods[m]};
        mproc_pool *p;
        CHECK_OK(mproc_pool_new(&p, &o));
        mproc_args *argv[N];
        for (int i = 0; i < N; i++) {
            argv[i] = mproc_args_new();
            CHECK(argv[i]);
            CHECK_OK(mproc_args_add_queue(argv[i], q));
            CHECK_OK(mproc_args_add_int(argv[i], i));
        }
        mproc_results *r = NULL;
        CHECK_OK(mproc_pool_starmap(p, t_star_queue, argv, N, NULL, &r));
        CHECK_EQ(mproc_results_failed(r), 0);
        mproc_results_free(r);
        int seen[N] = {0};
        for (int i = 0; i < N; i++) {
            int64_t v = -1;
            size_t len = 0;
            CHECK_OK(mproc_queue_get(q, &v, sizeof v, &len, 5));
            CHECK(len == sizeof v && v >= 0 && v < N);
            seen[v]++;
        }
        for (int i = 0; i < N; i++)
            CHECK_EQ(seen[i], 1);
        for (int i = 0; i < N; i++)
            mproc_args_free(argv[i]);
        mproc_pool_free(p);
        mproc_queue_free(q);
    }
}

static const mproc_test tests[] = {
    {"starmap_objects", test_starmap_objects, 60},
    {"million_each_method", test_million_each_method, 240},
    {"api_each_method", test_api_each_method, 60},
    {"chunksize_edges", test_chunksize_edges, 30},
    {"task_errors", test_task_errors, 30},
    {"imap_order", test_imap_order, 30},
    {"imap_lazy", test_imap_lazy, 60},
    {"map_sizes", test_map_sizes, 120},
    {"map_killed_mid_chunk", test_map_killed_mid_chunk, 180},
    {"map_without_arena", test_map_without_arena, 60},
    {"random_crashes", test_random_crashes, 120},
    {"timeout_kill", test_timeout_kill, 30},
    {"maxtasksperchild", test_maxtasksperchild, 30},
    {"callbacks_once", test_callbacks_once, 30},
    {"terminate_stuck", test_terminate_stuck, 30},
    {"initializer_fails", test_initializer_fails, 60},
    {"killed_while_starting", test_killed_while_starting, 90},
    {"records_shm", test_records_shm, 30},
    {"progress", test_progress, 30},
    {"fd_exhaustion", test_fd_exhaustion, 60},
    {"callback_submits", test_callback_submits, 30},
    {"apply_reuse", test_apply_reuse, 60},
    {"terminate_full_ring", test_terminate_full_ring, 30},
    {"worker_watches_owner", test_worker_watches_owner, 30},
    {"owner_killed", test_owner_killed, 40},
    {"exit_without_free", test_exit_without_free, 60},
    {"hostile_board", test_hostile_board, 60},
};

MPROC_TEST_MAIN(tests)
