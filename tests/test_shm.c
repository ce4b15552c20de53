/*
 * test_shm.c - Value, Array (locked and raw), the shared heap, and
 * SharedMemory with its tracker: typed accessors and conversions, slices,
 * Python-style formatting, exact counters under the lock from many
 * processes and threads (and the race without it, shown but not asserted),
 * a lock holder SIGKILLed, heap reuse and a fork stress with kills,
 * objects passed to children under every start method, named segments
 * (create/attach/unlink, unlink while attached, read-only), the tracker
 * (cleanup after the creator is SIGKILLed, a segment used by an unrelated
 * live process kept until it lets go, opt-out, a replaced name left alone,
 * a killed tracker replaced), and bad input / fd exhaustion.
 */
#include "harness.h"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* ---- helpers ------------------------------------------------------------ */

static bool shm_exists(const char *name)
{
    char path[300];
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    return access(path, F_OK) == 0;
}

/* Waits up to timeout seconds for /dev/shm/name to be (or stop being). */
static bool wait_shm(const char *name, bool present, double timeout)
{
    double t0 = mproc_test_now();
    while (shm_exists(name) != present) {
        if (mproc_test_now() - t0 > timeout)
            return false;
        usleep(5000);
    }
    return true;
}

static int reap(pid_t pid)
{
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    return st;
}

static void reap_ok(pid_t pid)
{
    int st = reap(pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        mproc_test_fail(__FILE__, __LINE__, "child %d: status 0x%x", (int)pid,
                        st);
}

static mproc_process *run(mproc_target fn, mproc_args *a, mproc_start_method m)
{
    mproc_process *p;
    CHECK_OK(mproc_process_new(&p, fn, a));
    CHECK_OK(mproc_process_set_start_method(p, m));
    CHECK_OK(mproc_process_start(p));
    return p;
}

static int join_code(mproc_process *p)
{
    CHECK_OK(mproc_process_join(p, 30));
    int c = mproc_process_exitcode(p);
    mproc_process_free(p);
    return c;
}

static void fmt_value(mproc_value *v, const char *want)
{
    char buf[64];
    int n = mproc_value_format(v, buf, sizeof buf);
    CHECK_EQ(n, (int)strlen(want));
    CHECK_STR(buf, want);
}

/* ---- types, accessors, formatting -------------------------------------- */

static void test_types(void)
{
    CHECK_EQ(mproc_ctype_size('i'), 4);
    CHECK_EQ(mproc_ctype_size(MPROC_CTYPE_DOUBLE), 8);
    CHECK_EQ(mproc_ctype_size('l'), 8);
    CHECK_EQ(mproc_ctype_size('c'), 1);
    CHECK_EQ(mproc_ctype_size('x'), 0);
    CHECK_EQ(mproc_ctype_size(0), 0);
    CHECK_STR(mproc_ctype_name('H'), "uint16");
    CHECK(mproc_ctype_name('z') == NULL);

    const int all[] = {'c', 'b', 'B', 'h', 'H', 'i', 'I', 'q', 'Q', 'f', 'd'};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        mproc_value *v;
        CHECK_OK(mproc_value_new(&v, all[i]));
        CHECK_EQ(mproc_value_type(v), all[i]);
        CHECK_EQ(mproc_value_has_lock(v), 1);
        double d = -1;
        CHECK_OK(mproc_value_get_double(v, &d));
        CHECK(d == 0); /* zero-initialized */
        CHECK_OK(mproc_value_set_i64(v, 7));
        CHECK_OK(mproc_value_get_double(v, &d));
        CHECK(d == 7);
        mproc_value_free(v);
    }
    mproc_value *v = NULL;
    CHECK_ERR(mproc_value_new(&v, 'x'), -EINVAL);
    CHECK(v == NULL);
    CHECK_ERR(mproc_value_new(NULL, 'i'), -EINVAL);
    CHECK_ERR(mproc_value_new_raw(&v, 0), -EINVAL);
    mproc_value_free(NULL);
}

static void test_conversions(void)
{
    mproc_value *v;
    int64_t i;
    uint64_t u;
    double d;
    CHECK_OK(mproc_value_new(&v, MPROC_CTYPE_INT8));
    CHECK_OK(mproc_value_set_i64(v, -128));
    CHECK_OK(mproc_value_get_i64(v, &i));
    CHECK_EQ(i, -128);
    CHECK_ERR(mproc_value_get_u64(v, &u), -ERANGE);
    CHECK_ERR(mproc_value_set_i64(v, 128), -ERANGE);
    CHECK_ERR(mproc_value_set_i64(v, -129), -ERANGE);
    CHECK_ERR(mproc_value_set_u64(v, 200), -ERANGE);
    CHECK_OK(mproc_value_set_double(v, 12.0));
    CHECK_OK(mproc_value_get_i64(v, &i));
    CHECK_EQ(i, 12);
    CHECK_ERR(mproc_value_set_double(v, 1.5), MPROC_ETYPE);
    CHECK_ERR(mproc_value_set_double(v, NAN), MPROC_ETYPE);
    CHECK_ERR(mproc_value_set_double(v, 300.0), -ERANGE);
    CHECK_ERR(mproc_value_get_i64(v, NULL), -EINVAL);
    fmt_value(v, "12");
    mproc_value_free(v);

    CHECK_OK(mproc_value_new(&v, MPROC_CTYPE_UINT64));
    CHECK_OK(mproc_value_set_u64(v, UINT64_MAX));
    CHECK_OK(mproc_value_get_u64(v, &u));
    CHECK(u == UINT64_MAX);
    CHECK_ERR(mproc_value_get_i64(v, &i), -ERANGE);
    CHECK_ERR(mproc_value_set_i64(v, -1), -ERANGE);
    fmt_value(v, "18446744073709551615");
    mproc_value_free(v);

    CHECK_OK(mproc_value_new_raw(&v, MPROC_CTYPE_FLOAT));
    CHECK_EQ(mproc_value_has_lock(v), 0);
    CHECK_OK(mproc_value_set_double(v, 3.14));
    fmt_value(v, "3.140000104904175"); /* Python: Value('f', 3.14).value */
    CHECK_OK(mproc_value_get_double(v, &d));
    CHECK_OK(mproc_value_set_double(v, d * d));
    fmt_value(v, "9.859601020812988");
    CHECK_ERR(mproc_value_get_i64(v, &i), MPROC_ETYPE);
    CHECK_ERR(mproc_value_get_u64(v, &u), MPROC_ETYPE);
    CHECK_OK(mproc_value_set_i64(v, 5)); /* ints go into floats */
    fmt_value(v, "5.0");
    float f = 2.5f, g = 0;
    CHECK_OK(mproc_value_set(v, &f));
    CHECK_OK(mproc_value_get(v, &g));
    CHECK(g == 2.5f);
    CHECK(*(float *)mproc_value_ptr(v) == 2.5f);
    mproc_value_free(v);

    /* Python's float repr, through a double Value. */
    struct {
        double x;
        const char *s;
    } reprs[] = {{0.1, "0.1"},
                 {1e16, "1e+16"},
                 {1.5e16, "1.5e+16"},
                 {1e-5, "1e-05"},
                 {0.0001, "0.0001"},
                 {123.0, "123.0"},
                 {-0.0, "-0.0"},
                 {0.0, "0.0"},
                 {1e22, "1e+22"},
                 {INFINITY, "inf"},
                 {-INFINITY, "-inf"},
                 {NAN, "nan"},
                 {2.0 / 3, "0.6666666666666666"},
                 {1e15, "1000000000000000.0"},
                 {5e-324, "5e-324"},
                 {-1.25e-7, "-1.25e-07"}};
    CHECK_OK(mproc_value_new(&v, 'd'));
    for (size_t k = 0; k < sizeof reprs / sizeof reprs[0]; k++) {
        CHECK_OK(mproc_value_set_double(v, reprs[k].x));
        fmt_value(v, reprs[k].s);
    }
    char small[4];
    CHECK_OK(mproc_value_set_double(v, 0.6));
    CHECK_EQ(mproc_value_format(v, small, sizeof small), 3);
    CHECK_OK(mproc_value_set_double(v, 123456.5));
    CHECK_EQ(mproc_value_format(v, small, sizeof small), 8); /* truncated */
    CHECK_STR(small, "123");
    CHECK_EQ(mproc_value_format(v, NULL, 0), 8);
    mproc_value_free(v);

    CHECK_OK(mproc_value_new(&v, 'c'));
    CHECK_OK(mproc_value_set_i64(v, 'a'));
    fmt_value(v, "b'a'");
    CHECK_OK(mproc_value_set_i64(v, '\''));
    fmt_value(v, "b\"'\"");
    CHECK_OK(mproc_value_set_i64(v, 0));
    fmt_value(v, "b'\\x00'");
    CHECK_ERR(mproc_value_set_i64(v, 256), -ERANGE);
    mproc_value_free(v);

    CHECK_ERR(mproc_value_get_i64(NULL, &i), -EINVAL);
    CHECK_ERR(mproc_value_set_double(NULL, 1), -EINVAL);
    CHECK_ERR(mproc_value_format(NULL, small, sizeof small), -EINVAL);
    CHECK(mproc_value_ptr(NULL) == NULL);
    CHECK_EQ(mproc_value_type(NULL), -EINVAL);
}

/* ---- locks ----------------------------------------------------------- */

static void *hold_for(void *arg)
{
    mproc_value *v = arg;
    CHECK_OK(mproc_value_acquire(v, -1));
    usleep(300000);
    CHECK_OK(mproc_value_release(v));
    return NULL;
}

static pthread_barrier_t fwh_bar;

static void *free_while_held(void *arg)
{
    mproc_value *v;
    if (mproc_value_new(&v, 'i') < 0 || mproc_value_acquire(v, -1) < 0 ||
        mproc_value_acquire(v, -1) < 0)
        return (void *)1;
    mproc_value_free(v);            /* releases it first */
    pthread_barrier_wait(&fwh_bar); /* main reuses the memory */
    pthread_barrier_wait(&fwh_bar);
    return NULL; /* the thread exits: the kernel walks its robust list */
}

static void test_lock(void)
{
    /* Freeing a value whose lock the thread holds releases it first; the
     * memory, reused at once, holds a plain new lock. (A smoke test: a
     * stale robust-list entry would mostly go unnoticed here.) */
    mproc_value *keep;
    CHECK_OK(mproc_value_new(&keep, 'i')); /* keeps the arena mapped */
    pthread_t ft;
    void *fr = (void *)2;
    CHECK(pthread_barrier_init(&fwh_bar, NULL, 2) == 0);
    CHECK(pthread_create(&ft, NULL, free_while_held, NULL) == 0);
    pthread_barrier_wait(&fwh_bar);
    mproc_value *again;
    CHECK_OK(mproc_value_new(&again, 'i')); /* most likely the same block */
    pthread_barrier_wait(&fwh_bar);
    pthread_join(ft, &fr);
    CHECK(fr == NULL);
    pthread_barrier_destroy(&fwh_bar);
    CHECK_OK(mproc_value_acquire(again, 0));
    CHECK_OK(mproc_value_release(again));
    mproc_value_free(again);
    mproc_value_free(keep);

    mproc_value *raw, *v;
    CHECK_OK(mproc_value_new_raw(&raw, 'i'));
    CHECK_ERR(mproc_value_acquire(raw, -1), -ENOLCK);
    CHECK_ERR(mproc_value_release(raw), -ENOLCK);
    CHECK(mproc_value_get_lock(raw) == NULL);
    mproc_value_free(raw);

    CHECK(mproc_value_get_lock(NULL) == NULL);
    CHECK_OK(mproc_value_new(&v, 'i'));
    CHECK_ERR(mproc_value_release(v), MPROC_ENOTOWNER);
    /* get_lock() is the very lock acquire/release take: an RLock. */
    mproc_rlock *l = mproc_value_get_lock(v);
    CHECK(l != NULL);
    CHECK_EQ(mproc_rlock_locked(l), 0);
    CHECK_OK(mproc_value_acquire(v, -1));
    CHECK_EQ(mproc_rlock_locked(l), 1);
    CHECK_EQ(mproc_rlock_count(l), 1);
    CHECK_OK(mproc_rlock_acquire(l, 0));
    CHECK_EQ(mproc_rlock_count(l), 2);
    CHECK_OK(mproc_value_set_i64(v, 40));
    CHECK_OK(mproc_rlock_release(l));
    CHECK_OK(mproc_value_release(v));
    CHECK_EQ(mproc_rlock_locked(l), 0);
    CHECK_OK(mproc_rlock_acquire(l, -1)); /* taken directly: get nests */
    int64_t got = 0;
    CHECK_OK(mproc_value_get_i64(v, &got));
    CHECK_EQ(got, 40);
    CHECK_OK(mproc_rlock_release(l));
    /* Recursive, as Python's default RLock: get/set nest inside. */
    CHECK_OK(mproc_value_acquire(v, -1));
    CHECK_OK(mproc_value_acquire(v, 0));
    CHECK_OK(mproc_value_set_i64(v, 41));
    CHECK_OK(mproc_value_release(v));
    CHECK_OK(mproc_value_release(v));
    CHECK_ERR(mproc_value_release(v), MPROC_ENOTOWNER);

    /* Another thread holds it: try and timeout fail, in time. */
    pthread_t th;
    CHECK(pthread_create(&th, NULL, hold_for, v) == 0);
    usleep(50000);
    CHECK_ERR(mproc_value_acquire(v, 0), -ETIMEDOUT);
    double t0 = mproc_test_now();
    CHECK_ERR(mproc_value_acquire(v, 0.05), -ETIMEDOUT);
    double dt = mproc_test_now() - t0;
    CHECK(dt >= 0.045 && dt < 0.25);
    CHECK_OK(mproc_value_acquire(v, 5)); /* waits for the holder */
    CHECK_OK(mproc_value_release(v));
    pthread_join(th, NULL);

    /* Another process holds it. */
    int go[2];
    CHECK(pipe(go) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        mproc_value_acquire(v, -1);
        char c = 1;
        if (write(go[1], &c, 1) != 1)
            mproc_test_exit(2);
        usleep(200000);
        mproc_value_release(v);
        mproc_test_exit(0);
    }
    char c;
    CHECK_EQ(read(go[0], &c, 1), 1);
    CHECK_ERR(mproc_value_acquire(v, 0.02), -ETIMEDOUT);
    CHECK_OK(mproc_value_acquire(v, 5));
    CHECK_OK(mproc_value_release(v));
    reap_ok(pid);

    /* A fork child does not inherit the parent's hold: its get waits. */
    CHECK_OK(mproc_value_acquire(v, -1));
    CHECK_OK(mproc_value_set_i64(v, 1));
    pid = fork();
    if (pid == 0) {
        int64_t x = 0;
        if (mproc_value_acquire(v, 0) != -ETIMEDOUT)
            mproc_test_exit(2);
        if (write(go[1], "g", 1) != 1)
            mproc_test_exit(3);
        mproc_value_get_i64(v, &x); /* blocks until the parent is done */
        mproc_test_exit(x == 2 ? 0 : 4);
    }
    CHECK_EQ(read(go[0], &c, 1), 1);
    usleep(50000);
    CHECK_OK(mproc_value_set_i64(v, 2));
    CHECK_OK(mproc_value_release(v));
    reap_ok(pid);
    close(go[0]);
    close(go[1]);
    mproc_value_free(v);
}

static void test_holder_killed(void)
{
    mproc_value *v;
    mproc_array *a;
    CHECK_OK(mproc_value_new(&v, 'q'));
    CHECK_OK(mproc_array_new(&a, 'i', 4, NULL));
    int go[2];
    CHECK(pipe(go) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        mproc_value_acquire(v, -1);
        mproc_value_set_i64(v, 99);
        mproc_array_acquire(a, -1);
        char c = 1;
        if (write(go[1], &c, 1) != 1)
            mproc_test_exit(2);
        pause(); /* killed while holding both */
        mproc_test_exit(0);
    }
    char c;
    CHECK_EQ(read(go[0], &c, 1), 1);
    CHECK_ERR(mproc_value_acquire(v, 0.02), -ETIMEDOUT);
    kill(pid, SIGKILL);
    int st = reap(pid);
    CHECK(WIFSIGNALED(st));
    /* The next acquirer learns of the death and holds the lock. */
    CHECK_ERR(mproc_value_acquire(v, 1), -EOWNERDEAD);
    int64_t x = 0;
    CHECK_OK(mproc_value_get_i64(v, &x));
    CHECK_EQ(x, 99);
    CHECK_OK(mproc_value_release(v));
    CHECK_OK(mproc_value_acquire(v, 0));
    CHECK_OK(mproc_value_release(v));
    /* A plain set does not fail on a dead holder's lock. */
    CHECK_OK(mproc_array_set_i64(a, 3, 5));
    CHECK_OK(mproc_array_acquire(a, 0));
    CHECK_OK(mproc_array_release(a));
    close(go[0]);
    close(go[1]);
    mproc_value_free(v);
    mproc_array_free(a);
}

/* ---- counters ----------------------------------------------------------- */

#define NPROC 8
#define NINC  20000

/* A start gate: children block until the parent opens it, so that they
 * really run at the same time. */
typedef struct gate {
    int fd[2];
} gate;

static void gate_init(gate *g)
{
    CHECK(pipe(g->fd) == 0);
}

static void gate_wait(gate *g) /* in a child */
{
    char c;
    close(g->fd[1]);
    if (read(g->fd[0], &c, 1) < 0)
        mproc_test_exit(9);
}

static void gate_open(gate *g)
{
    close(g->fd[0]);
    close(g->fd[1]);
}

static void bump_locked(mproc_value *v, int n)
{
    for (int k = 0; k < n; k++) {
        int64_t x;
        mproc_value_acquire(v, -1);
        mproc_value_get_i64(v, &x);
        mproc_value_set_i64(v, x + 1);
        mproc_value_release(v);
    }
}

static void test_counter_locked(void)
{
    mproc_value *v;
    CHECK_OK(mproc_value_new(&v, 'i'));
    pid_t pids[NPROC];
    gate g;
    gate_init(&g);
    for (int i = 0; i < NPROC; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            gate_wait(&g);
            bump_locked(v, NINC);
            mproc_test_exit(0);
        }
    }
    gate_open(&g);
    bump_locked(v, NINC);
    for (int i = 0; i < NPROC; i++)
        reap_ok(pids[i]);
    int64_t x;
    CHECK_OK(mproc_value_get_i64(v, &x));
    CHECK_EQ(x, (NPROC + 1) * NINC);
    mproc_value_free(v);
}

/* The race the lock prevents: get and set are each atomic, the pair is
 * not. Printed, never asserted (it may happen to come out exact). */
static void test_counter_unlocked(void)
{
    mproc_value *v;
    CHECK_OK(mproc_value_new_raw(&v, 'i'));
    pid_t pids[NPROC];
    gate g;
    gate_init(&g);
    for (int i = 0; i < NPROC; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            gate_wait(&g);
            for (int k = 0; k < NINC; k++) {
                int64_t x;
                mproc_value_get_i64(v, &x);
                mproc_value_set_i64(v, x + 1);
            }
            mproc_test_exit(0);
        }
    }
    gate_open(&g);
    for (int i = 0; i < NPROC; i++)
        reap_ok(pids[i]);
    int64_t x;
    CHECK_OK(mproc_value_get_i64(v, &x));
    CHECK(x > 0 && x <= NPROC * NINC);
    printf("     without the lock: %lld of %d increments survived\n",
           (long long)x, NPROC * NINC);
    mproc_value_free(v);
}

static void *thread_bump(void *arg)
{
    bump_locked(arg, NINC);
    return NULL;
}

static void test_counter_threads(void)
{
    mproc_value *v;
    CHECK_OK(mproc_value_new(&v, 'Q'));
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&th[i], NULL, thread_bump, v) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    uint64_t x;
    CHECK_OK(mproc_value_get_u64(v, &x));
    CHECK_EQ(x, 4 * NINC);
    mproc_value_free(v);
}

static int t_bump(const mproc_args *a)
{
    mproc_value *v = mproc_args_value(a, 0);
    if (!v)
        return 10;
    bump_locked(v, (int)mproc_args_int(a, 1));
    return 0;
}

static void test_counter_methods(void)
{
    for (int m = 0; m < 3; m++) {
        mproc_value *v;
        CHECK_OK(mproc_value_new(&v, 'i'));
        mproc_args *a = mproc_args_new();
        CHECK_OK(mproc_args_add_value(a, v));
        CHECK_OK(mproc_args_add_int(a, 500));
        mproc_process *p[4];
        for (int i = 0; i < 4; i++)
            p[i] = run(t_bump, a, mproc_test_methods[m]);
        for (int i = 0; i < 4; i++)
            CHECK_EQ(join_code(p[i]), 0);
        int64_t x;
        CHECK_OK(mproc_value_get_i64(v, &x));
        CHECK_EQ(x, 2000);
        mproc_args_free(a);
        mproc_value_free(v);
    }
}

/* ---- arrays ------------------------------------------------------------- */

static void test_array(void)
{
    int32_t init[5] = {0, 1, 2, 3, 4}, out[5];
    mproc_array *a;
    CHECK_OK(mproc_array_new(&a, 'i', 5, init));
    CHECK_EQ(mproc_array_len(a), 5);
    CHECK_EQ(mproc_array_type(a), 'i');
    char buf[64];
    CHECK_EQ(mproc_array_format(a, 0, 5, buf, sizeof buf), 15);
    CHECK_STR(buf, "[0, 1, 2, 3, 4]");
    for (size_t i = 0; i < 5; i++) {
        int64_t x;
        CHECK_OK(mproc_array_get_i64(a, i, &x));
        CHECK_OK(mproc_array_set_i64(a, i, x * x * x));
    }
    CHECK_OK(mproc_array_format(a, 0, 5, buf, sizeof buf));
    CHECK_STR(buf, "[0, 1, 8, 27, 64]");
    CHECK_OK(mproc_array_format(a, 1, 3, buf, sizeof buf));
    CHECK_STR(buf, "[1, 8]");
    CHECK_OK(mproc_array_format(a, 2, 2, buf, sizeof buf));
    CHECK_STR(buf, "[]");
    /* slices */
    CHECK_EQ(mproc_array_get_slice(a, 0, 5, out), 5);
    CHECK(out[4] == 64 && out[2] == 8);
    int32_t two[2] = {-1, -2};
    CHECK_EQ(mproc_array_set_slice(a, 3, 5, two), 2);
    CHECK_EQ(mproc_array_get_slice(a, 2, 5, out), 3);
    CHECK(out[0] == 8 && out[1] == -1 && out[2] == -2);
    CHECK_EQ(mproc_array_get_slice(a, 5, 5, NULL), 0);
    CHECK_EQ(mproc_array_set_slice(a, 0, 0, NULL), 0);
    /* bad ranges and indices */
    int64_t x;
    CHECK_ERR(mproc_array_get_i64(a, 5, &x), -ERANGE);
    CHECK_ERR(mproc_array_set_i64(a, SIZE_MAX, 1), -ERANGE);
    CHECK_ERR(mproc_array_get_double(a, 99, NULL), -ERANGE);
    CHECK_ERR(mproc_array_get_slice(a, 3, 2, out), -ERANGE);
    CHECK_ERR(mproc_array_get_slice(a, 0, 6, out), -ERANGE);
    CHECK_ERR(mproc_array_set_slice(a, 4, SIZE_MAX, two), -ERANGE);
    CHECK_ERR(mproc_array_get_slice(a, 0, 2, NULL), -EINVAL);
    CHECK_ERR(mproc_array_set_slice(a, 0, 2, NULL), -EINVAL);
    CHECK_ERR(mproc_array_format(a, 0, 6, buf, sizeof buf), -ERANGE);
    CHECK_ERR(mproc_array_get_slice(NULL, 0, 0, out), -EINVAL);
    CHECK_ERR(mproc_array_set_i64(a, 0, INT64_MAX), -ERANGE);
    mproc_array_free(a);

    /* raw, char, double, empty */
    CHECK_OK(mproc_array_new_raw(&a, 'c', 6, "hi 'x'"));
    CHECK_EQ(mproc_array_has_lock(a), 0);
    CHECK_ERR(mproc_array_acquire(a, 0), -ENOLCK);
    CHECK_OK(mproc_array_format(a, 0, 6, buf, sizeof buf));
    CHECK_STR(buf, "b\"hi 'x'\"");
    CHECK(memcmp(mproc_array_ptr(a), "hi 'x'", 6) == 0);
    mproc_array_free(a);
    double dd[3] = {0.5, 1e100, -2};
    CHECK_OK(mproc_array_new(&a, 'd', 3, dd));
    CHECK_OK(mproc_array_format(a, 0, 3, buf, sizeof buf));
    CHECK_STR(buf, "[0.5, 1e+100, -2.0]");
    CHECK_ERR(mproc_array_set_double(a, 3, 1), -ERANGE);
    mproc_array_free(a);
    CHECK_OK(mproc_array_new(&a, 'h', 0, NULL));
    CHECK_EQ(mproc_array_len(a), 0);
    CHECK_ERR(mproc_array_get_i64(a, 0, &x), -ERANGE);
    CHECK_OK(mproc_array_format(a, 0, 0, buf, sizeof buf));
    CHECK_STR(buf, "[]");
    mproc_array_free(a);
    CHECK_ERR(mproc_array_new(&a, 'i', SIZE_MAX / 2, NULL), -ENOMEM);
    CHECK_ERR(mproc_array_new(&a, '?', 3, NULL), -EINVAL);
    CHECK_ERR(mproc_array_new(NULL, 'i', 3, NULL), -EINVAL);
    mproc_array_free(NULL);
}

/* Slices are all-or-nothing for locked readers. */
static void test_array_slice_atomic(void)
{
    enum { N = 256 };
    mproc_array *a;
    CHECK_OK(mproc_array_new(&a, 'q', N, NULL));
    pid_t pid = fork();
    if (pid == 0) {
        int64_t buf[N];
        for (int64_t round = 1; round <= 2000; round++) {
            for (int i = 0; i < N; i++)
                buf[i] = round;
            mproc_array_set_slice(a, 0, N, buf);
        }
        mproc_test_exit(0);
    }
    int torn = 0;
    for (int k = 0; k < 2000; k++) {
        int64_t buf[N];
        CHECK_EQ(mproc_array_get_slice(a, 0, N, buf), N);
        for (int i = 1; i < N; i++)
            if (buf[i] != buf[0])
                torn++;
    }
    reap_ok(pid);
    CHECK_EQ(torn, 0);
    mproc_array_free(a);
}

/* ---- the heap ------------------------------------------------------------ */

static int count_heap_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return -1;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "memfd:mproc-heap"))
            n++;
    fclose(f);
    return n;
}

static void test_heap_reuse(void)
{
    enum { N = 2000 };
    int fds0 = mproc_test_count_fds();
    static mproc_value *v[N];
    for (int i = 0; i < N; i++) {
        CHECK_OK(i % 2 ? mproc_value_new(&v[i], 'd')
                       : mproc_value_new_raw(&v[i], 'q'));
        CHECK_OK(mproc_value_set_i64(v[i], i));
    }
    /* 2000 values: one arena, one fd, one mapping. */
    CHECK_EQ(mproc_test_count_fds(), fds0 + 1);
    CHECK_EQ(count_heap_maps(), 1);
    for (int i = 0; i < N; i++) {
        double d;
        CHECK_OK(mproc_value_get_double(v[i], &d));
        CHECK(d == i);
    }
    /* Free every other one; new ones reuse the room. */
    for (int i = 0; i < N; i += 2)
        mproc_value_free(v[i]);
    for (int i = 0; i < N; i += 2)
        CHECK_OK(mproc_value_new_raw(&v[i], 'q'));
    CHECK_EQ(count_heap_maps(), 1);
    /* A big array gets a mapping of its own, and gives it back. */
    mproc_array *big;
    CHECK_OK(mproc_array_new(&big, 'd', 1 << 20, NULL));
    CHECK_EQ(count_heap_maps(), 2);
    CHECK_OK(mproc_array_set_double(big, (1 << 20) - 1, 2.5));
    mproc_array_free(big);
    CHECK_EQ(count_heap_maps(), 1);
    for (int i = 0; i < N; i++)
        mproc_value_free(v[i]);
    CHECK_EQ(count_heap_maps(), 0);
    CHECK_EQ(mproc_test_count_fds(), fds0);
}

static uint64_t rng(uint64_t *s)
{
    uint64_t x = *s += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Allocates and frees random small arrays, each filled with a tag, and
 * checks every live one still holds its tag: two processes handed the same
 * bytes would overwrite each other. Returns the number of bad blocks. */
static int churn(uint64_t seed, int rounds, unsigned char tag)
{
    enum { SLOTS = 64 };
    mproc_array *live[SLOTS] = {0};
    int bad = 0;
    for (int r = 0; r < rounds; r++) {
        int s = (int)(rng(&seed) % SLOTS);
        if (live[s]) {
            unsigned char *p = mproc_array_ptr(live[s]);
            for (size_t i = 0; i < mproc_array_len(live[s]); i++)
                if (p[i] != tag)
                    bad++;
            mproc_array_free(live[s]);
            live[s] = NULL;
        } else {
            size_t n = 1 + rng(&seed) % 700;
            if (mproc_array_new_raw(&live[s], 'B', n, NULL) < 0)
                return -1;
            memset(mproc_array_ptr(live[s]), tag, n);
        }
    }
    for (int s = 0; s < SLOTS; s++)
        mproc_array_free(live[s]);
    return bad;
}

typedef struct churn_arg {
    uint64_t seed;
    unsigned char tag;
    int bad;
} churn_arg;

static void *churn_thread(void *p)
{
    churn_arg *c = p;
    c->bad = churn(c->seed, 20000, c->tag);
    return NULL;
}

static void test_heap_fork_stress(void)
{
    /* Threads of the parent share its arenas and their locks; children
     * allocate from arenas of their own while using the inherited blocks
     * the parent keeps. */
    mproc_array *keep;
    CHECK_OK(mproc_array_new(&keep, 'B', 100, NULL));
    memset(mproc_array_ptr(keep), 0xee, 100);
    enum { KIDS = 4 };
    pid_t pids[KIDS];
    for (int i = 0; i < KIDS; i++) {
        pids[i] = fork();
        if (pids[i] == 0)
            mproc_test_exit(
                churn(1000 + (uint64_t)i, 20000, (unsigned char)(i + 1)) == 0
                    ? 0
                    : 1);
    }
    pthread_t th[3];
    churn_arg ca[3];
    for (int i = 0; i < 3; i++) {
        ca[i] = (churn_arg){7 + (uint64_t)i, (unsigned char)(0x70 + i), 0};
        CHECK(pthread_create(&th[i], NULL, churn_thread, &ca[i]) == 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(ca[i].bad, 0);
    }
    for (int i = 0; i < KIDS; i++)
        reap_ok(pids[i]);
    unsigned char *p = mproc_array_ptr(keep);
    for (int i = 0; i < 100; i++)
        CHECK_EQ(p[i], 0xee);
    CHECK_EQ(count_heap_maps(), 1);
    mproc_array_free(keep);
}

/* Children killed at random points while allocating: the arena lock is
 * robust and the bitmap loses at worst a few blocks. */
static void test_heap_kill_stress(void)
{
    mproc_array *keep;
    CHECK_OK(mproc_array_new(&keep, 'B', 8, NULL));
    uint64_t seed = (uint64_t)getpid();
    for (int round = 0; round < 30; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            churn((uint64_t)round, 1 << 30, 0x11);
            mproc_test_exit(0);
        }
        usleep((useconds_t)(1000 + rng(&seed) % 5000));
        kill(pid, SIGKILL);
        int st = reap(pid);
        CHECK(WIFSIGNALED(st));
        /* Still usable, at once. */
        mproc_value *v;
        CHECK_OK(mproc_value_new_raw(&v, 'i'));
        mproc_value_free(v);
    }
    CHECK_EQ(churn(3, 2000, 0x22), 0);
    mproc_array_free(keep);
}

/* A fork child that frees what it inherited does not take it away. */
static void test_free_in_child(void)
{
    mproc_value *v;
    CHECK_OK(mproc_value_new(&v, 'i'));
    CHECK_OK(mproc_value_set_i64(v, 5));
    pid_t pid = fork();
    if (pid == 0) {
        mproc_value_free(v);
        /* New allocations must not land on the parent's block. */
        mproc_value *w[50];
        for (int i = 0; i < 50; i++) {
            if (mproc_value_new(&w[i], 'i') < 0)
                mproc_test_exit(2);
            mproc_value_set_i64(w[i], -1);
        }
        for (int i = 0; i < 50; i++)
            mproc_value_free(w[i]);
        mproc_test_exit(0);
    }
    reap_ok(pid);
    int64_t x;
    CHECK_OK(mproc_value_get_i64(v, &x));
    CHECK_EQ(x, 5);
    CHECK_OK(mproc_value_acquire(v, 0)); /* lock intact */
    CHECK_OK(mproc_value_release(v));
    mproc_value_free(v);
}

/* ---- objects in children under every start method ----------------------- */

static int t_objects(const mproc_args *a)
{
    mproc_value *v = mproc_args_value(a, 0);
    mproc_array *arr = mproc_args_array(a, 1);
    mproc_shm *named = mproc_args_shm(a, 2);
    mproc_shm *anon = mproc_args_shm(a, 3);
    mproc_value *v2 = mproc_args_value(a, 4);
    if (!v || !arr || !named || !anon || !v2)
        return 10;
    if (mproc_args_value(a, 1) || mproc_args_array(a, 0))
        return 11; /* kinds are told apart */
    double d;
    if (mproc_value_get_double(v, &d) < 0 || d != 3.140000104904175)
        return 12;
    if (mproc_value_set_double(v, d * d) < 0)
        return 13;
    for (size_t i = 0; i < mproc_array_len(arr); i++) {
        int64_t x;
        mproc_array_get_i64(arr, i, &x);
        mproc_array_set_i64(arr, i, x * x * x);
    }
    if (strcmp(mproc_shm_name(named), mproc_args_str(a, 5)) != 0 ||
        mproc_shm_size(named) != 4096 || mproc_shm_name(anon) != NULL)
        return 14;
    char *p = mproc_shm_buf(named), *q = mproc_shm_buf(anon);
    if (strcmp(p, "from parent") != 0 || strcmp(q, "anon parent") != 0)
        return 15;
    strcpy(p, "from child");
    strcpy(q, "anon child");
    mproc_value_set_i64(v2, 77);
    /* v and v2 share an arena: mapped once in this process. */
    return 100 + count_heap_maps();
}

static void test_objects_methods(void)
{
    for (int m = 0; m < 3; m++) {
        mproc_value *v, *v2;
        mproc_array *arr;
        mproc_shm *named, *anon;
        CHECK_OK(mproc_value_new(&v, 'f'));
        CHECK_OK(mproc_value_set_double(v, 3.14));
        int32_t init[5] = {0, 1, 2, 3, 4};
        CHECK_OK(mproc_array_new(&arr, 'i', 5, init));
        CHECK_OK(mproc_value_new_raw(&v2, 'q'));
        CHECK_OK(mproc_shm_create(&named, NULL, 4096, 0));
        CHECK_OK(mproc_shm_new_anonymous(&anon, 100));
        strcpy(mproc_shm_buf(named), "from parent");
        strcpy(mproc_shm_buf(anon), "anon parent");
        mproc_args *a = mproc_args_new();
        CHECK_OK(mproc_args_add_value(a, v));
        CHECK_OK(mproc_args_add_array(a, arr));
        CHECK_OK(mproc_args_add_shm(a, named));
        CHECK_OK(mproc_args_add_shm(a, anon));
        CHECK_OK(mproc_args_add_value(a, v2));
        CHECK_OK(mproc_args_add_str(a, mproc_shm_name(named)));
        CHECK_EQ(join_code(run(t_objects, a, mproc_test_methods[m])), 101);
        char buf[64];
        CHECK_OK(mproc_value_format(v, buf, sizeof buf));
        CHECK_STR(buf, "9.859601020812988");
        CHECK_OK(mproc_array_format(arr, 0, 5, buf, sizeof buf));
        CHECK_STR(buf, "[0, 1, 8, 27, 64]");
        CHECK_STR(mproc_shm_buf(named), "from child");
        CHECK_STR(mproc_shm_buf(anon), "anon child");
        int64_t x;
        CHECK_OK(mproc_value_get_i64(v2, &x));
        CHECK_EQ(x, 77);
        mproc_args_free(a);
        CHECK_OK(mproc_shm_unlink(named));
        mproc_shm_free(named);
        mproc_shm_free(anon);
        mproc_value_free(v);
        mproc_value_free(v2);
        mproc_array_free(arr);
    }
}

/* A Value created after the child started reaches it as a later argument
 * of another child, and the heap serves it from the same arena. */
static int t_square(const mproc_args *a)
{
    mproc_array *arr = mproc_args_array(a, 1);
    size_t i = (size_t)mproc_args_int(a, 0);
    int64_t x;
    if (!arr || mproc_array_get_i64(arr, i, &x) < 0)
        return 1;
    return mproc_array_set_i64(arr, i, x * x) < 0 ? 2 : 0;
}

static void test_squares_methods(void)
{
    for (int m = 0; m < 3; m++) {
        int32_t init[5] = {0, 1, 2, 3, 4};
        mproc_array *arr;
        CHECK_OK(mproc_array_new(&arr, 'i', 5, init));
        mproc_process *p[5];
        for (int i = 0; i < 5; i++) {
            mproc_args *a = mproc_args_new();
            CHECK_OK(mproc_args_add_int(a, i));
            CHECK_OK(mproc_args_add_array(a, arr));
            p[i] = run(t_square, a, mproc_test_methods[m]);
            mproc_args_free(a);
        }
        for (int i = 0; i < 5; i++)
            CHECK_EQ(join_code(p[i]), 0);
        char buf[64];
        CHECK_OK(mproc_array_format(arr, 0, 5, buf, sizeof buf));
        CHECK_STR(buf, "[0, 1, 4, 9, 16]");
        mproc_array_free(arr);
    }
}

/* ---- values made as Python makes them --------------------------------------
 */

/* Value('i', 5), Value('d', 2.5): the initial value in the same call, with
 * the setters' conversions; nothing is left when it does not fit. */
static void test_value_initial(void)
{
    mproc_value *v = NULL;
    int64_t i;
    double d;
    CHECK_OK(mproc_value_new_i64(&v, 'i', -5));
    CHECK_EQ(mproc_value_has_lock(v), 1);
    CHECK_OK(mproc_value_get_i64(v, &i));
    CHECK_EQ(i, -5);
    mproc_value_free(v);
    CHECK_OK(mproc_value_new_i64(&v, 'd', 7));
    fmt_value(v, "7.0");
    mproc_value_free(v);
    CHECK_OK(mproc_value_new_double(&v, 'd', 2.5));
    CHECK_OK(mproc_value_get_double(v, &d));
    CHECK(d == 2.5);
    mproc_value_free(v);
    CHECK_OK(mproc_value_new_double(&v, 'Q', 3.0));
    fmt_value(v, "3");
    mproc_value_free(v);
    v = (mproc_value *)&v; /* must be reset */
    CHECK_ERR(mproc_value_new_i64(&v, 'b', 300), -ERANGE);
    CHECK(v == NULL);
    CHECK_ERR(mproc_value_new_double(&v, 'i', 1.5), MPROC_ETYPE);
    CHECK(v == NULL);
    CHECK_ERR(mproc_value_new_i64(&v, 'x', 1), -EINVAL);
    CHECK_ERR(mproc_value_new_double(NULL, 'd', 1), -EINVAL);
    /* opts.init: native bytes, any type */
    uint64_t big = UINT64_MAX - 1;
    mproc_value_opts o = {.type = 'Q', .init = &big, .raw = 1};
    CHECK_OK(mproc_value_new_opts(&v, &o));
    CHECK_EQ(mproc_value_has_lock(v), 0);
    fmt_value(v, "18446744073709551614");
    mproc_value_free(v);
    CHECK_ERR(mproc_value_new_opts(&v, NULL), -EINVAL);
    CHECK_ERR(mproc_value_new_opts(NULL, &o), -EINVAL);
    o = (mproc_value_opts){.type = 'i', .size = 8};
    CHECK_ERR(mproc_value_new_opts(&v, &o), -EINVAL); /* not int32's size */
    o.size = 4;
    CHECK_OK(mproc_value_new_opts(&v, &o));
    CHECK_EQ(mproc_value_size(v), 4);
    mproc_value_free(v);
}

typedef struct point {
    int32_t id;
    double x, y;
    char tag[20];
} point;

/* Value(MyStructure) and Array(MyStructure, n): a struct of the caller's
 * layout, copied whole under the lock; readers never see half of a
 * concurrent set. */
static void test_value_struct(void)
{
    CHECK_STR(mproc_ctype_name(MPROC_CTYPE_STRUCT), "struct");
    CHECK_EQ(mproc_ctype_size(MPROC_CTYPE_STRUCT), 0);
    point p0, p; /* padding zeroed too: the copies are compared whole */
    memset(&p0, 0, sizeof p0);
    p0.id = 7;
    p0.x = 1.5;
    p0.y = -2.5;
    strcpy(p0.tag, "origin");
    mproc_value *v;
    CHECK_OK(mproc_value_new_struct(&v, sizeof(point), &p0));
    CHECK_EQ(mproc_value_type(v), MPROC_CTYPE_STRUCT);
    CHECK_EQ(mproc_value_size(v), sizeof(point));
    CHECK_EQ(mproc_value_has_lock(v), 1);
    CHECK_EQ((uintptr_t)mproc_value_ptr(v) % 64, 0);
    CHECK_EQ((uintptr_t)mproc_value_ptr(v) % 64, 0);
    CHECK_OK(mproc_value_get(v, &p));
    CHECK(memcmp(&p, &p0, sizeof p) == 0);
    int64_t i;
    double d;
    char buf[32];
    CHECK_ERR(mproc_value_get_i64(v, &i), MPROC_ETYPE);
    CHECK_ERR(mproc_value_set_i64(v, 1), MPROC_ETYPE);
    CHECK_ERR(mproc_value_get_double(v, &d), MPROC_ETYPE);
    CHECK_ERR(mproc_value_set_u64(v, 1), MPROC_ETYPE);
    CHECK_ERR(mproc_value_format(v, buf, sizeof buf), MPROC_ETYPE);
    mproc_value *z;
    CHECK_OK(mproc_value_new_struct(&z, 3, NULL));
    CHECK_OK(mproc_value_get(z, buf));
    CHECK(buf[0] == 0 && buf[1] == 0 && buf[2] == 0);
    mproc_value_free(z);
    CHECK_ERR(mproc_value_new_struct(&z, 0, NULL), -EINVAL);
    CHECK_ERR(mproc_value_new_struct(&z, SIZE_MAX, NULL), -ENOMEM);

    /* A writer sets whole structs whose fields agree; readers check. */
    pid_t pid = fork();
    if (pid == 0) {
        for (int32_t k = 1; k <= 200000; k++) {
            point w = {k, k, -k, ""};
            memset(w.tag, 'a' + k % 26, sizeof w.tag);
            if (mproc_value_set(v, &w) < 0)
                mproc_test_exit(1);
        }
        mproc_test_exit(0);
    }
    int torn = 0, seen = 0;
    do { /* until the writer's last */
        CHECK_OK(mproc_value_get(v, &p));
        if (p.id == 7)
            continue; /* not written yet */
        seen++;
        torn += p.x != p.id || p.y != -p.id || p.tag[0] != p.tag[19] ||
                p.tag[0] != 'a' + p.id % 26;
    } while (p.id != 200000);
    CHECK(seen > 0);
    reap_ok(pid);
    CHECK_EQ(torn, 0);
    CHECK_OK(mproc_value_get(v, &p));
    CHECK_EQ(p.id, 200000);
    mproc_value_free(v);

    /* Arrays of structs: slices copy elements whole. */
    point ps[4] = {
        {1, 0, 0, "a"}, {2, 0, 0, "b"}, {3, 0, 0, "c"}, {4, 0, 0, "d"}};
    mproc_array_opts ao = {
        .type = MPROC_CTYPE_STRUCT, .size = sizeof(point), .n = 4, .init = ps};
    mproc_array *a;
    CHECK_OK(mproc_array_new_opts(&a, &ao));
    CHECK_EQ(mproc_array_itemsize(a), sizeof(point));
    CHECK_EQ(mproc_array_len(a), 4);
    point two[2] = {{20, 1, 1, "x"}, {30, 2, 2, "y"}}, back[4];
    CHECK_EQ(mproc_array_set_slice(a, 1, 3, two), 2);
    CHECK_EQ(mproc_array_get_slice(a, 0, 4, back), 4);
    CHECK(back[0].id == 1 && back[1].id == 20 && back[2].id == 30 &&
          back[3].id == 4 && strcmp(back[2].tag, "y") == 0);
    CHECK_ERR(mproc_array_get_i64(a, 0, &i), MPROC_ETYPE);
    CHECK_ERR(mproc_array_format(a, 0, 1, buf, sizeof buf), MPROC_ETYPE);
    mproc_array_free(a);
    ao.size = 0;
    CHECK_ERR(mproc_array_new_opts(&a, &ao), -EINVAL);
    ao = (mproc_array_opts){.type = 'i', .n = 3, .raw = 1};
    CHECK_OK(mproc_array_new_opts(&a, &ao));
    CHECK_EQ(mproc_array_has_lock(a), 0);
    CHECK_EQ(mproc_array_itemsize(a), 4);
    mproc_array_free(a);
}

/* v.get_obj(): the same memory without the lock. */
static void test_value_get_obj(void)
{
    mproc_value *v, *raw;
    CHECK_OK(mproc_value_new_i64(&v, 'q', 1));
    mproc_value *o = mproc_value_get_obj(v);
    CHECK(o != NULL && o != v);
    CHECK_EQ(mproc_value_has_lock(o), 0);
    CHECK(mproc_value_get_obj(o) == o);
    CHECK(mproc_value_get_lock(o) == NULL);
    CHECK_ERR(mproc_value_acquire(o, 0), -ENOLCK);
    CHECK(mproc_value_ptr(o) == mproc_value_ptr(v));
    CHECK_EQ(mproc_value_type(o), 'q');
    /* While the Value's lock is held, the raw object does not wait. */
    CHECK_OK(mproc_value_acquire(v, -1));
    pid_t pid = fork();
    if (pid == 0) {
        int64_t x = 0;
        if (mproc_value_acquire(v, 0) != -ETIMEDOUT)
            mproc_test_exit(1);
        if (mproc_value_get_i64(o, &x) < 0 || x != 1 ||
            mproc_value_set_i64(o, 42) < 0)
            mproc_test_exit(2);
        mproc_test_exit(0);
    }
    reap_ok(pid);
    CHECK_OK(mproc_value_release(v));
    int64_t x;
    CHECK_OK(mproc_value_get_i64(v, &x));
    CHECK_EQ(x, 42);
    mproc_value_free(o); /* owned by v: nothing happens */
    CHECK_OK(mproc_value_get_i64(o, &x));
    CHECK_OK(mproc_value_set_i64(v, 43));
    CHECK_OK(mproc_value_new_raw(&raw, 'i'));
    CHECK(mproc_value_get_obj(raw) == raw);
    CHECK(mproc_value_get_obj(NULL) == NULL);
    mproc_value_free(raw);
    mproc_value_free(v);

    mproc_array *a;
    int16_t init[3] = {1, 2, 3};
    CHECK_OK(mproc_array_new(&a, 'h', 3, init));
    mproc_array *ao = mproc_array_get_obj(a);
    CHECK(ao != a && mproc_array_has_lock(ao) == 0);
    CHECK_EQ(mproc_array_len(ao), 3);
    CHECK_OK(mproc_array_acquire(a, -1));
    pid = fork();
    if (pid == 0)
        mproc_test_exit(mproc_array_set_i64(ao, 2, 30) == 0 ? 0 : 1);
    reap_ok(pid);
    CHECK_OK(mproc_array_release(a));
    char buf[32];
    CHECK_OK(mproc_array_format(a, 0, 3, buf, sizeof buf));
    CHECK_STR(buf, "[1, 2, 30]");
    mproc_array_free(a);
}

/* Value('i', lock=shared): one caller's lock guards several objects, taken
 * through any of them or directly. */
static void test_value_shared_lock(void)
{
    mproc_rlock *r;
    mproc_lock *l;
    CHECK_OK(mproc_rlock_new(&r));
    CHECK_OK(mproc_lock_new(&l));
    mproc_value *a, *b, *c, *bad = NULL;
    mproc_array *arr;
    mproc_value_opts o = {.type = 'i', .rlock = r};
    CHECK_OK(mproc_value_new_opts(&a, &o));
    o.type = 'q';
    CHECK_OK(mproc_value_new_opts(&b, &o));
    mproc_array_opts ao = {.type = 'd', .n = 3, .rlock = r};
    CHECK_OK(mproc_array_new_opts(&arr, &ao));
    o = (mproc_value_opts){.type = 'i', .lock = l};
    CHECK_OK(mproc_value_new_opts(&c, &o));
    /* Bad locks. */
    o.rlock = r;
    CHECK_ERR(mproc_value_new_opts(&bad, &o), -EINVAL); /* both */
    o = (mproc_value_opts){.type = 'i', .lock = l, .raw = 1};
    CHECK_ERR(mproc_value_new_opts(&bad, &o), -EINVAL); /* raw and a lock */
    mproc_lock zero;
    memset(&zero, 0, sizeof zero);
    o = (mproc_value_opts){.type = 'i', .lock = &zero};
    CHECK_ERR(mproc_value_new_opts(&bad, &o), -EINVAL); /* not a lock */
    o = (mproc_value_opts){.type = 'i', .rlock = (mproc_rlock *)l};
    CHECK_ERR(mproc_value_new_opts(&bad, &o), -EINVAL); /* not an RLock */
    CHECK(bad == NULL);

    CHECK(mproc_value_get_lock(a) == r);
    CHECK(mproc_value_get_lock(b) == r);
    CHECK(mproc_array_get_lock(arr) == r);
    CHECK(mproc_value_get_lock(c) == NULL); /* a plain Lock */
    CHECK_EQ(mproc_value_has_lock(c), 1);
    /* Held through a: b and arr are held too, here and for others. */
    CHECK_OK(mproc_value_acquire(a, -1));
    CHECK_EQ(mproc_rlock_count(r), 1);
    CHECK_OK(mproc_value_set_i64(b, 5));
    CHECK_OK(mproc_array_set_double(arr, 2, 0.5));
    pid_t pid = fork();
    if (pid == 0)
        mproc_test_exit(mproc_value_acquire(b, 0) == -ETIMEDOUT &&
                                mproc_array_acquire(arr, 0.01) == -ETIMEDOUT
                            ? 0
                            : 1);
    reap_ok(pid);
    CHECK_OK(mproc_array_acquire(arr, 0)); /* recursive: count 2 */
    CHECK_EQ(mproc_rlock_count(r), 2);
    CHECK_OK(mproc_rlock_release(r));
    CHECK_OK(mproc_value_release(b));
    CHECK_EQ(mproc_rlock_locked(r), 0);
    CHECK_ERR(mproc_value_release(a), MPROC_ENOTOWNER);
    /* A plain Lock: not recursive, and taken directly it covers c. */
    CHECK_OK(mproc_lock_acquire(l, -1));
    CHECK_OK(mproc_value_set_i64(c, 9)); /* no deadlock: we hold it */
    CHECK_ERR(mproc_value_acquire(c, -1), -EDEADLK);
    CHECK_ERR(mproc_value_acquire(c, 0), -ETIMEDOUT);
    CHECK_OK(mproc_value_release(c));
    CHECK_EQ(mproc_lock_locked(l), 0);
    int64_t x;
    CHECK_OK(mproc_value_get_i64(c, &x));
    CHECK_EQ(x, 9);

    /* An invariant across two Values holds for every holder of the lock:
     * writers move units from b to a through a, a reader checks the sum
     * through b, others count through the lock itself. */
    CHECK_OK(mproc_value_set_i64(a, 0));
    CHECK_OK(mproc_value_set_i64(b, 0));
    pid_t pids[4];
    for (int k = 0; k < 4; k++) {
        pids[k] = fork();
        if (pids[k] == 0) {
            int bad_sums = 0;
            for (int n = 0; n < 3000; n++) {
                int64_t xa = 0, xb = 0;
                if (k < 2) {
                    mproc_value_acquire(a, -1);
                    mproc_value_get_i64(a, &xa);
                    mproc_value_set_i64(a, xa + 1);
                    mproc_value_get_i64(b, &xb);
                    mproc_value_set_i64(b, xb - 1);
                    mproc_value_release(a);
                } else if (k == 2) {
                    mproc_value_acquire(b, -1);
                    mproc_value_get_i64(a, &xa);
                    mproc_value_get_i64(b, &xb);
                    bad_sums += xa + xb != 0;
                    mproc_value_release(b);
                } else {
                    mproc_lock_acquire(l, -1);
                    mproc_value_get_i64(c, &xa);
                    mproc_value_set_i64(c, xa + 1);
                    mproc_lock_release(l);
                }
            }
            mproc_test_exit(bad_sums ? 1 : 0);
        }
    }
    for (int n = 0; n < 3000; n++) { /* and the parent, through c */
        CHECK_OK(mproc_value_acquire(c, -1));
        CHECK_OK(mproc_value_get_i64(c, &x));
        CHECK_OK(mproc_value_set_i64(c, x + 1));
        CHECK_OK(mproc_value_release(c));
    }
    for (int k = 0; k < 4; k++)
        reap_ok(pids[k]);
    CHECK_OK(mproc_value_get_i64(a, &x));
    CHECK_EQ(x, 6000);
    CHECK_OK(mproc_value_get_i64(b, &x));
    CHECK_EQ(x, -6000);
    CHECK_OK(mproc_value_get_i64(c, &x));
    CHECK_EQ(x, 9 + 6000);

    /* Freeing the objects leaves the caller's locks alone, even held. */
    CHECK_OK(mproc_value_acquire(a, -1));
    mproc_value_free(a);
    CHECK_EQ(mproc_rlock_count(r), 1);
    CHECK_OK(mproc_rlock_release(r));
    mproc_value_free(b);
    mproc_array_free(arr);
    mproc_value_free(c);
    CHECK_OK(mproc_lock_acquire(l, 0));
    CHECK_OK(mproc_lock_release(l));
    mproc_rlock_free(r);
    mproc_lock_free(l);
}

/* A process killed holding a caller's lock: the owner-dead state is the
 * caller's. Accessors report it without touching the data or the lock's
 * state; the next acquire gets the lock with -EOWNERDEAD to repair. */
static void test_value_shared_lock_holder_killed(void)
{
    for (int kind = 0; kind < 2; kind++) { /* Lock, then RLock */
        mproc_lock *l = NULL;
        mproc_rlock *r = NULL;
        mproc_value *a, *b;
        mproc_value_opts o = {.type = 'i'};
        if (kind == 0) {
            CHECK_OK(mproc_lock_new(&l));
            o.lock = l;
        } else {
            CHECK_OK(mproc_rlock_new(&r));
            o.rlock = r;
        }
        CHECK_OK(mproc_value_new_opts(&a, &o));
        CHECK_OK(mproc_value_new_opts(&b, &o));
        int go[2];
        CHECK(pipe(go) == 0);
        pid_t pid = fork();
        if (pid == 0) {
            mproc_value_acquire(a, -1);
            mproc_value_set_i64(a, 1); /* half of a transfer */
            char ch = 1;
            if (write(go[1], &ch, 1) != 1)
                mproc_test_exit(2);
            pause();
            mproc_test_exit(0);
        }
        char ch;
        CHECK_EQ(read(go[0], &ch, 1), 1);
        kill(pid, SIGKILL);
        reap(pid);
        int64_t x = 77;
        CHECK_ERR(mproc_value_get_i64(b, &x), -EOWNERDEAD);
        CHECK_EQ(x, 77); /* not read */
        CHECK_ERR(mproc_value_set_i64(a, 5), -EOWNERDEAD);
        CHECK_EQ(*(int32_t *)mproc_value_ptr(a), 1); /* not written */
        CHECK(kind ? mproc_rlock_locked(r) == 0 : mproc_lock_locked(l) == 0);
        /* The repairer learns of it, holds the lock, and repairs. */
        if (kind == 0)
            CHECK_ERR(mproc_lock_acquire(l, 1), -EOWNERDEAD);
        else
            CHECK_ERR(mproc_value_acquire(b, 1), -EOWNERDEAD);
        CHECK_OK(mproc_value_set_i64(b, -1)); /* we hold it: done */
        if (kind == 0) {
            CHECK_OK(mproc_lock_consistent(l));
            CHECK_OK(mproc_lock_release(l));
        } else {
            CHECK_OK(mproc_rlock_consistent(mproc_value_get_lock(b)));
            CHECK_OK(mproc_value_release(b));
        }
        CHECK_OK(mproc_value_get_i64(b, &x));
        CHECK_EQ(x, -1);
        CHECK_OK(mproc_value_acquire(a, 0));
        CHECK_OK(mproc_value_release(a));
        /* Released without repair: unrecoverable for every object. */
        pid = fork();
        if (pid == 0) {
            mproc_value_acquire(b, -1);
            char c2 = 1;
            if (write(go[1], &c2, 1) != 1)
                mproc_test_exit(2);
            pause();
            mproc_test_exit(0);
        }
        CHECK_EQ(read(go[0], &ch, 1), 1);
        kill(pid, SIGKILL);
        reap(pid);
        CHECK_ERR(mproc_value_acquire(a, 1), -EOWNERDEAD);
        CHECK_OK(mproc_value_release(a));
        CHECK_ERR(mproc_value_get_i64(b, &x), -ENOTRECOVERABLE);
        CHECK_ERR(mproc_value_acquire(a, 0), -ENOTRECOVERABLE);
        close(go[0]);
        close(go[1]);
        mproc_value_free(a);
        mproc_value_free(b);
        mproc_lock_free(l);
        mproc_rlock_free(r);
    }
}

/* args: a, b (on rlock), the rlock, arr (on rlock), c (on lock), the lock,
 * get_obj(a), a struct Value. The parent holds the lock at start. */
static int t_shared_lock(const mproc_args *args)
{
    mproc_value *a = mproc_args_value(args, 0), *b = mproc_args_value(args, 1);
    mproc_rlock *r = mproc_args_rlock(args, 2);
    mproc_array *arr = mproc_args_array(args, 3);
    mproc_value *c = mproc_args_value(args, 4);
    mproc_lock *l = mproc_args_lock(args, 5);
    mproc_value *view = mproc_args_value(args, 6);
    mproc_value *st = mproc_args_value(args, 7);
    if (!a || !b || !r || !arr || !c || !l || !view || !st)
        return 1;
    /* One lock in this process, whichever way it came. */
    if (mproc_value_get_lock(a) != r || mproc_value_get_lock(b) != r ||
        mproc_array_get_lock(arr) != r)
        return 2;
    if (mproc_value_has_lock(view) ||
        mproc_value_ptr(view) != mproc_value_ptr(a))
        return 3;
    if (mproc_value_acquire(a, 5) != 0 || mproc_rlock_count(r) != 1)
        return 4;
    int64_t x;
    mproc_value_get_i64(a, &x);
    mproc_value_set_i64(a, x + 1);
    mproc_value_get_i64(b, &x);
    mproc_value_set_i64(b, x - 1);
    mproc_array_set_double(arr, 0, 1.25);
    mproc_value_release(a);
    /* The parent holds the Lock: the same lock here. */
    if (mproc_value_acquire(c, 0) != -ETIMEDOUT ||
        mproc_lock_acquire(l, 0) != -ETIMEDOUT)
        return 5;
    mproc_array_set_double(arr, 1, 1);  /* checked: the parent may let go */
    if (mproc_value_set_i64(c, 5) != 0) /* waits for the parent */
        return 6;
    point p;
    if (mproc_value_get(st, &p) != 0 || p.id != 3 || strcmp(p.tag, "pt") != 0)
        return 7;
    p.id = 4;
    return mproc_value_set(st, &p) == 0 ? 0 : 8;
}

static void test_value_shared_lock_methods(void)
{
    for (int m = 0; m < 3; m++) {
        mproc_rlock *r;
        mproc_lock *l;
        CHECK_OK(mproc_rlock_new(&r));
        CHECK_OK(mproc_lock_new(&l));
        mproc_value *a, *b, *c, *st;
        mproc_array *arr;
        mproc_value_opts o = {.type = 'i', .rlock = r};
        CHECK_OK(mproc_value_new_opts(&a, &o));
        CHECK_OK(mproc_value_new_opts(&b, &o));
        mproc_array_opts ao = {.type = 'd', .n = 2, .rlock = r};
        CHECK_OK(mproc_array_new_opts(&arr, &ao));
        o = (mproc_value_opts){.type = 'q', .lock = l};
        CHECK_OK(mproc_value_new_opts(&c, &o));
        point p0 = {3, 0, 0, "pt"};
        CHECK_OK(mproc_value_new_struct(&st, sizeof p0, &p0));
        mproc_args *args = mproc_args_new();
        CHECK_OK(mproc_args_add_value(args, a));
        CHECK_OK(mproc_args_add_value(args, b));
        CHECK_OK(mproc_args_add_rlock(args, r));
        CHECK_OK(mproc_args_add_array(args, arr));
        CHECK_OK(mproc_args_add_value(args, c));
        CHECK_OK(mproc_args_add_lock(args, l));
        CHECK_OK(mproc_args_add_value(args, mproc_value_get_obj(a)));
        CHECK_OK(mproc_args_add_value(args, st));
        CHECK_OK(mproc_lock_acquire(l, -1));
        mproc_process *p = run(t_shared_lock, args, mproc_test_methods[m]);
        mproc_args_free(args);
        double seen = 0;
        for (int i = 0; i < 30000 && seen == 0; i++) {
            CHECK_OK(mproc_array_get_double(arr, 1, &seen));
            if (seen == 0)
                usleep(1000);
        }
        CHECK_EQ(seen, 1);
        int64_t x;
        CHECK_OK(mproc_value_get_i64(c, &x)); /* we hold it: no wait */
        CHECK_EQ(x, 0);
        CHECK_OK(mproc_lock_release(l)); /* lets the child's set through */
        CHECK_EQ(join_code(p), 0);
        CHECK_OK(mproc_value_get_i64(c, &x));
        CHECK_EQ(x, 5);
        CHECK_OK(mproc_value_get_i64(a, &x));
        CHECK_EQ(x, 1);
        CHECK_OK(mproc_value_get_i64(b, &x));
        CHECK_EQ(x, -1);
        double d;
        CHECK_OK(mproc_array_get_double(arr, 0, &d));
        CHECK(d == 1.25);
        point pb;
        CHECK_OK(mproc_value_get(st, &pb));
        CHECK_EQ(pb.id, 4);
        mproc_value_free(a);
        mproc_value_free(b);
        mproc_value_free(c);
        mproc_value_free(st);
        mproc_array_free(arr);
        mproc_rlock_free(r);
        mproc_lock_free(l);
    }
}

/* ---- SharedMemory ----------------------------------------------------------
 */

static void test_shm_basics(void)
{
    mproc_shm *s, *t;
    CHECK_OK(mproc_shm_create(&s, NULL, 1000, 0));
    const char *name = mproc_shm_name(s);
    CHECK(name && strlen(name) == 14 && strncmp(name, "psm_", 4) == 0);
    for (int i = 4; i < 14; i++)
        CHECK(strchr("0123456789abcdef", name[i]));
    CHECK_EQ(mproc_shm_size(s), 1000);
    CHECK(shm_exists(name));
    CHECK(mproc_shm_tracker_pid() > 0);
    memcpy(mproc_shm_buf(s), "hello", 6);
    CHECK_OK(mproc_shm_attach(&t, name, 0));
    CHECK_EQ(mproc_shm_size(t), 1000);
    CHECK_STR(mproc_shm_buf(t), "hello");
    ((char *)mproc_shm_buf(t))[0] = 'j';
    CHECK_STR(mproc_shm_buf(s), "jello");
    char slash[64];
    snprintf(slash, sizeof slash, "/%s", name);
    mproc_shm *u;
    CHECK_ERR(mproc_shm_create(&u, slash, 10, 0), -EEXIST);
    CHECK(u == NULL);
    CHECK_OK(mproc_shm_attach(&u, slash, MPROC_SHM_READONLY));
    CHECK_STR(mproc_shm_name(u), name);
    CHECK_STR(mproc_shm_buf(u), "jello");
    CHECK(mproc_shm_fd(u) >= 0);
    CHECK_OK(mproc_shm_close(u));
    CHECK_OK(mproc_shm_close(u));
    CHECK(mproc_shm_buf(u) == NULL);
    CHECK_ERR(mproc_shm_fd(u), -EBADF);
    mproc_shm_free(u);
    CHECK_OK(mproc_shm_unlink(s));
    CHECK(!shm_exists(name));
    CHECK_ERR(mproc_shm_unlink(t), -ENOENT);
    CHECK_ERR(mproc_shm_attach(&u, name, 0), -ENOENT);
    mproc_shm_free(s);
    mproc_shm_free(t);

    /* an explicit name */
    char mine[64];
    snprintf(mine, sizeof mine, "mproc_test_%d", (int)getpid());
    CHECK_OK(mproc_shm_create(&s, mine, 5, MPROC_SHM_NOTRACK));
    CHECK_STR(mproc_shm_name(s), mine);
    CHECK(shm_exists(mine));
    mproc_shm_free(s); /* free never unlinks */
    CHECK(shm_exists(mine));
    CHECK_OK(mproc_shm_unlink_name(mine));
    CHECK_ERR(mproc_shm_unlink_name(mine), -ENOENT);

    /* anonymous */
    CHECK_OK(mproc_shm_new_anonymous(&s, 3));
    CHECK(mproc_shm_name(s) == NULL);
    CHECK_ERR(mproc_shm_unlink(s), -EINVAL);
    CHECK(ftruncate(mproc_shm_fd(s), 1 << 20) < 0); /* sealed */
    mproc_shm_free(s);
}

static void test_shm_unlink_while_attached(void)
{
    mproc_shm *s;
    CHECK_OK(mproc_shm_create(&s, NULL, 4096, 0));
    char name[MPROC_SHM_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s", mproc_shm_name(s));
    int go[2], back[2];
    CHECK(pipe(go) == 0 && pipe(back) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        /* Attach by name, as an unrelated process would. */
        mproc_shm *t;
        if (mproc_shm_attach(&t, name, 0) < 0)
            mproc_test_exit(2);
        char c = 1;
        if (write(back[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
            mproc_test_exit(3);
        /* The name is gone; the memory is not. */
        if (shm_exists(name) || strcmp(mproc_shm_buf(t), "before") != 0)
            mproc_test_exit(4);
        strcpy(mproc_shm_buf(t), "after");
        mproc_shm_free(t);
        mproc_test_exit(0);
    }
    strcpy(mproc_shm_buf(s), "before");
    char c;
    CHECK_EQ(read(back[0], &c, 1), 1);
    CHECK_OK(mproc_shm_unlink(s));
    CHECK_EQ(write(go[1], &c, 1), 1);
    reap_ok(pid);
    CHECK_STR(mproc_shm_buf(s), "after");
    mproc_shm_free(s);
    for (int i = 0; i < 2; i++) {
        close(go[i]);
        close(back[i]);
    }
}

static void test_shm_readonly(void)
{
    mproc_shm *s, *r;
    CHECK_OK(mproc_shm_create(&s, NULL, 64, 0));
    CHECK_OK(mproc_shm_attach(&r, mproc_shm_name(s), MPROC_SHM_READONLY));
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL);
        ((volatile char *)mproc_shm_buf(r))[0] = 1;
        mproc_test_exit(0);
    }
    int st = reap(pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    CHECK_OK(mproc_shm_unlink(s));
    mproc_shm_free(r);
    mproc_shm_free(s);
}

static void test_shm_bad_input(void)
{
    mproc_shm *s = (mproc_shm *)1;
    CHECK_ERR(mproc_shm_create(NULL, NULL, 10, 0), -EINVAL);
    CHECK_ERR(mproc_shm_create(&s, NULL, 0, 0), -EINVAL);
    CHECK(s == NULL);
    CHECK_ERR(mproc_shm_create(&s, NULL, 10, 0x100), -EINVAL);
    CHECK_ERR(mproc_shm_create(&s, "", 10, 0), -EINVAL);
    CHECK_ERR(mproc_shm_create(&s, "/", 10, 0), -EINVAL);
    CHECK_ERR(mproc_shm_create(&s, "a/b", 10, 0), -EINVAL);
    CHECK_ERR(mproc_shm_create(&s, "//a", 10, 0), -EINVAL);
    CHECK_ERR(mproc_shm_create(&s, "..", 10, 0), -EINVAL);
    CHECK_ERR(mproc_shm_create(&s, NULL, SIZE_MAX, 0), -EINVAL);
    char longname[300];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    CHECK_ERR(mproc_shm_create(&s, longname, 10, 0), -ENAMETOOLONG);
    CHECK_ERR(mproc_shm_attach(&s, longname, 0), -ENAMETOOLONG);
    CHECK_ERR(mproc_shm_attach(&s, NULL, 0), -EINVAL);
    CHECK_ERR(mproc_shm_attach(&s, "a/b", 0), -EINVAL);
    CHECK_ERR(mproc_shm_attach(&s, "mproc_no_such_segment", 0), -ENOENT);
    CHECK_ERR(mproc_shm_attach(&s, "x", 0x10), -EINVAL);
    CHECK_ERR(mproc_shm_attach(NULL, "x", 0), -EINVAL);
    CHECK_ERR(mproc_shm_new_anonymous(&s, 0), -EINVAL);
    CHECK_ERR(mproc_shm_new_anonymous(NULL, 1), -EINVAL);
    CHECK_ERR(mproc_shm_unlink(NULL), -EINVAL);
    CHECK_ERR(mproc_shm_unlink_name(""), -EINVAL);
    CHECK_ERR(mproc_shm_close(NULL), -EINVAL);
    CHECK(mproc_shm_buf(NULL) == NULL && mproc_shm_size(NULL) == 0);
    CHECK(mproc_shm_name(NULL) == NULL);
    mproc_shm_free(NULL);
    CHECK_ERR(mproc_args_add_shm(NULL, NULL), -EINVAL);
    CHECK(mproc_args_shm(NULL, 0) == NULL);

    /* An empty segment (made by someone else) cannot be attached. */
    char name[64];
    snprintf(name, sizeof name, "/mproc_empty_%d", (int)getpid());
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    CHECK(fd >= 0);
    close(fd);
    CHECK_ERR(mproc_shm_attach(&s, name, 0), -EINVAL);
    CHECK_OK(mproc_shm_unlink_name(name));
    /* A huge size fails cleanly, leaving no name behind (checked by the
     * harness). */
    int r = mproc_shm_create(&s, NULL, (size_t)1 << 62, 0);
    CHECK(r < 0);
}

static void test_fd_exhaustion(void)
{
    SKIP_UNDER_VALGRIND("it emulates RLIMIT_NOFILE only in part: some "
                        "calls get fds past a lowered limit");
    struct rlimit old, lim;
    CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
    int n = mproc_test_count_fds();
    CHECK(n > 0);
    lim = old;
    lim.rlim_cur = (rlim_t)n + 3; /* the fds now open sit below n + 3 */
    /* Hold every fd up to the limit so the next open fails. */
    CHECK(setrlimit(RLIMIT_NOFILE, &lim) == 0);
    int held[8], nh = 0;
    for (;;) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            break;
        CHECK(nh < 8);
        held[nh++] = fd;
    }
    mproc_value *v = NULL;
    CHECK_ERR(mproc_value_new(&v, 'i'), -EMFILE);
    CHECK(v == NULL);
    mproc_shm *s = NULL;
    CHECK_ERR(mproc_shm_new_anonymous(&s, 10), -EMFILE);
    CHECK_ERR(mproc_shm_create(&s, NULL, 10, MPROC_SHM_NOTRACK), -EMFILE);
    CHECK(s == NULL);
    for (int i = 0; i < nh; i++)
        close(held[i]);
    CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
    CHECK_OK(mproc_value_new(&v, 'i'));
    mproc_value_free(v);
}

/* A segment is an ordinary POSIX segment: CPython attaches by name. */
static void test_shm_python(void)
{
    const char *py = mproc_test_python("3.11");
    if (!py)
        SKIP("no CPython 3.11");
    mproc_shm *s;
    CHECK_OK(mproc_shm_create(&s, NULL, 4096, 0));
    memcpy(mproc_shm_buf(s), "from C", 7);
    char cmd[1024];
    /* CPython 3.11 registers attached segments with a tracker of its own
     * and would unlink ours when it exits (gh-82300): keep it out. */
    snprintf(cmd, sizeof cmd,
             "'%s' -c \"from multiprocessing import shared_memory as m, "
             "resource_tracker as r\n"
             "r.register = lambda *a: None\n"
             "s = m.SharedMemory('%s')\n"
             "assert bytes(s.buf[:6]) == b'from C', bytes(s.buf[:6])\n"
             "assert s.size == 4096\n"
             "s.buf[:11] = b'from Python'\n"
             "s.close()\"",
             py, mproc_shm_name(s));
    CHECK_EQ(system(cmd), 0);
    CHECK(memcmp(mproc_shm_buf(s), "from Python", 11) == 0);
    CHECK_OK(mproc_shm_unlink(s));
    mproc_shm_free(s);
}

/* ---- the tracker ------------------------------------------------------- */

/* A child that creates segments and reports their names, then waits to be
 * killed. flags[i] are the create flags. */
static pid_t creator(int nseg, const int *flags, char names[][64])
{
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        for (int i = 0; i < nseg; i++) {
            mproc_shm *s;
            if (mproc_shm_create(&s, NULL, 4096, flags[i]) < 0)
                mproc_test_exit(2);
            char buf[64] = {0};
            snprintf(buf, sizeof buf, "%s", mproc_shm_name(s));
            if (write(p[1], buf, sizeof buf) != sizeof buf)
                mproc_test_exit(3);
            /* keep it mapped: the creator's own mapping must not count once
             * it is dead */
        }
        pause();
        mproc_test_exit(0);
    }
    close(p[1]);
    for (int i = 0; i < nseg; i++)
        CHECK_EQ(read(p[0], names[i], 64), 64);
    close(p[0]);
    return pid;
}

static void test_tracker_sigkill(void)
{
    char names[2][64];
    int flags[2] = {0, 0};
    pid_t pid = creator(2, flags, names);
    CHECK(shm_exists(names[0]) && shm_exists(names[1]));
    kill(pid, SIGKILL);
    reap(pid);
    CHECK(wait_shm(names[0], false, 10));
    CHECK(wait_shm(names[1], false, 10));
}

static void test_tracker_opt_out(void)
{
    char names[2][64];
    int flags[2] = {MPROC_SHM_NOTRACK, 0};
    pid_t pid = creator(2, flags, names);
    kill(pid, SIGKILL);
    reap(pid);
    /* The tracked one goes (so the tracker did its pass), the other
     * stays. */
    CHECK(wait_shm(names[1], false, 10));
    usleep(100000);
    CHECK(shm_exists(names[0]));
    CHECK_OK(mproc_shm_unlink_name(names[0]));
}

/* Attach with MPROC_SHM_TRACK (Python 3.13's track=True): a segment made
 * without tracking is taken on by the attaching tree's tracker and
 * removed once that tree is gone; attached without it, it stays. */
static void test_attach_track(void)
{
    for (int track = 0; track < 2; track++) {
        char name[64];
        snprintf(name, sizeof name, "mproc_track_%d_%d", (int)getpid(), track);
        pid_t pid = fork();
        if (pid == 0) {
            mproc_shm *s, *t;
            if (mproc_shm_create(&s, name, 4096, MPROC_SHM_NOTRACK) < 0)
                mproc_test_exit(2);
            mproc_shm_free(s);
            if (mproc_shm_attach(&t, name, track ? MPROC_SHM_TRACK : 0) < 0)
                mproc_test_exit(3);
            mproc_shm_free(t);
            mproc_shutdown();
            mproc_test_exit(0);
        }
        reap_ok(pid);
        if (track) {
            CHECK(wait_shm(name, false, 10));
        } else {
            usleep(200000);
            CHECK(shm_exists(name));
            CHECK_OK(mproc_shm_unlink_name(name));
        }
    }
    mproc_shm *s;
    CHECK_ERR(mproc_shm_attach(&s, "x", 0x100), -EINVAL);
}

/* gh-82300: an unrelated live process attached by name keeps the
 * segment; once it lets go, the tracker removes it. */
static void test_tracker_keeps_used(void)
{
    int go[2], back[2];
    CHECK(pipe(go) == 0 && pipe(back) == 0);
    char names[1][64];
    int flags[1] = {0};
    /* The user is forked first: it holds nothing of the creator's tree. */
    pid_t user = fork();
    if (user == 0) {
        char name[64];
        if (read(go[0], name, sizeof name) != sizeof name)
            mproc_test_exit(2);
        mproc_shm *t;
        if (mproc_shm_attach(&t, name, 0) < 0)
            mproc_test_exit(3);
        strcpy(mproc_shm_buf(t), "in use");
        char c = 1;
        if (write(back[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
            mproc_test_exit(4);
        if (strcmp(mproc_shm_buf(t), "in use") != 0)
            mproc_test_exit(5);
        mproc_shm_free(t);
        if (write(back[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
            mproc_test_exit(6);
        mproc_test_exit(0);
    }
    pid_t pid = creator(1, flags, names);
    CHECK_EQ(write(go[1], names[0], 64), 64);
    char c;
    CHECK_EQ(read(back[0], &c, 1), 1);
    kill(pid, SIGKILL);
    reap(pid);
    /* The tracker has seen the end of its tree, but the user maps it. */
    usleep(400000);
    CHECK(shm_exists(names[0]));
    mproc_shm *t;
    CHECK_OK(mproc_shm_attach(&t, names[0], 0));
    CHECK_STR(mproc_shm_buf(t), "in use");
    mproc_shm_free(t);
    /* The user unmaps and closes but stays alive: found by a rescan. */
    CHECK_EQ(write(go[1], &c, 1), 1);
    CHECK_EQ(read(back[0], &c, 1), 1);
    CHECK(wait_shm(names[0], false, 10));
    CHECK_EQ(write(go[1], &c, 1), 1);
    reap_ok(user);
    for (int i = 0; i < 2; i++) {
        close(go[i]);
        close(back[i]);
    }
}

/* An open fd without a mapping counts as use too. */
static void test_tracker_keeps_open_fd(void)
{
    char names[1][64];
    int flags[1] = {0};
    pid_t pid = creator(1, flags, names);
    char path[80];
    snprintf(path, sizeof path, "/%s", names[0]);
    int fd = shm_open(path, O_RDONLY, 0);
    CHECK(fd >= 0);
    kill(pid, SIGKILL);
    reap(pid);
    usleep(300000);
    CHECK(shm_exists(names[0]));
    close(fd); /* this process lives on: found by a rescan */
    CHECK(wait_shm(names[0], false, 10));
}

/* A tracked segment left mapped or not at a normal exit is removed by the
 * time mproc_shutdown returns; the tracker is reaped. */
static int t_leak(const mproc_args *a)
{
    mproc_shm *s;
    if (mproc_shm_create(&s, mproc_args_str(a, 0), 64, 0) < 0)
        return 2;
    mproc_shm_free(s); /* closed, never unlinked */
    return 0;
}

static void test_tracker_normal_exit(void)
{
    mproc_shm *s;
    CHECK_OK(mproc_shm_create(&s, NULL, 64, 0));
    char name[64];
    snprintf(name, sizeof name, "%s", mproc_shm_name(s));
    pid_t tpid = mproc_shm_tracker_pid();
    CHECK(tpid > 0);
    mproc_shm_free(s);
    CHECK(shm_exists(name));
    mproc_shutdown();
    CHECK(!shm_exists(name));
    CHECK_EQ(mproc_shm_tracker_pid(), 0);
    CHECK(kill(tpid, 0) < 0); /* reaped, not a zombie */

    /* The same from a child under every start method: its own tracker
     * (or, under fork, none inherited since we have none now). */
    for (int m = 0; m < 3; m++) {
        snprintf(name, sizeof name, "mproc_leak_%d_%d", (int)getpid(), m);
        mproc_args *a = mproc_args_new();
        CHECK_OK(mproc_args_add_str(a, name));
        CHECK_EQ(join_code(run(t_leak, a, mproc_test_methods[m])), 0);
        mproc_args_free(a);
        CHECK(wait_shm(name, false, 5));
    }
}

/* A name registered, then unlinked behind the tracker's back and created
 * again by someone else, is not the tracker's to remove. */
static void test_tracker_replaced_name(void)
{
    char name[64];
    snprintf(name, sizeof name, "mproc_repl_%d", (int)getpid());
    mproc_shm *s;
    CHECK_OK(mproc_shm_create(&s, name, 64, 0));
    mproc_shm_free(s);
    char path[80];
    snprintf(path, sizeof path, "/%s", name);
    CHECK(shm_unlink(path) == 0); /* the tracker is not told */
    int fd = shm_open(path, O_CREAT | O_EXCL | O_RDWR, 0600);
    CHECK(fd >= 0);
    close(fd);
    mproc_shutdown(); /* the tracker does its pass and exits */
    CHECK(shm_exists(name));
    CHECK(shm_unlink(path) == 0);
}

/* A killed tracker is replaced on the next registration. */
static void test_tracker_killed(void)
{
    mproc_shm *s;
    CHECK_OK(mproc_shm_create(&s, NULL, 64, 0));
    pid_t t1 = mproc_shm_tracker_pid();
    CHECK(t1 > 0);
    CHECK_OK(mproc_shm_unlink(s));
    mproc_shm_free(s);
    kill(t1, SIGKILL);
    usleep(50000);
    CHECK_OK(mproc_shm_create(&s, NULL, 64, 0));
    pid_t t2 = mproc_shm_tracker_pid();
    CHECK(t2 > 0 && t2 != t1);
    char name[64];
    snprintf(name, sizeof name, "%s", mproc_shm_name(s));
    mproc_shm_free(s);
    mproc_shutdown();
    CHECK(!shm_exists(name));
}

/* Registrations from fork children go to the parent's tracker; the tree
 * is gone only when the children are gone too. */
static void test_tracker_tree(void)
{
    mproc_shm *s;
    CHECK_OK(mproc_shm_create(&s, NULL, 64, 0));
    pid_t tpid = mproc_shm_tracker_pid();
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        mproc_shm *c;
        if (mproc_shm_create(&c, NULL, 64, 0) < 0 ||
            mproc_shm_tracker_pid() != tpid)
            mproc_test_exit(2);
        char buf[64] = {0};
        snprintf(buf, sizeof buf, "%s", mproc_shm_name(c));
        mproc_shm_free(c);
        if (write(p[1], buf, sizeof buf) != sizeof buf)
            mproc_test_exit(3);
        mproc_test_exit(0);
    }
    char name[64];
    CHECK_EQ(read(p[0], name, sizeof name), 64);
    reap_ok(pid);
    close(p[0]);
    close(p[1]);
    /* The child is gone but the tree (this process) is not. */
    usleep(100000);
    CHECK(shm_exists(name));
    CHECK_OK(mproc_shm_unlink(s));
    mproc_shm_free(s);
    mproc_shutdown();
    CHECK(!shm_exists(name));
}

/* mproc_shutdown does not wait for a tracker that other live processes
 * (a raw fork child) still keep going; it cleans up after them. */
static void test_tracker_stop_with_holders(void)
{
    mproc_shm *s;
    CHECK_OK(mproc_shm_create(&s, NULL, 64, 0));
    char name[64];
    snprintf(name, sizeof name, "%s", mproc_shm_name(s));
    pid_t tpid = mproc_shm_tracker_pid();
    mproc_shm_free(s); /* leaked */
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        char c;
        close(p[1]);
        mproc_test_exit(read(p[0], &c, 1) == 0 ? 0 : 1);
    }
    close(p[0]);
    double t0 = mproc_test_now();
    mproc_shutdown();
    CHECK(mproc_test_now() - t0 < 1.0);
    CHECK(shm_exists(name));
    CHECK(kill(tpid, 0) == 0);
    close(p[1]); /* the child exits: the tree is gone */
    reap_ok(pid);
    CHECK(wait_shm(name, false, 10));
    int st;
    CHECK_EQ(waitpid(tpid, &st, 0), tpid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- creation under attack ---------------------------------------------- */

/* This program's ftruncate takes the place of libc's for libmproc too:
 * when g_die_in_ftruncate is set it dies there by SIGKILL, as a creator
 * killed by an operator or the OOM killer between making a segment and
 * telling the tracker about it. */
static volatile int g_die_in_ftruncate;

int ftruncate(int fd, off_t len)
{
    if (g_die_in_ftruncate)
        raise(SIGKILL);
    int (*real)(int, off_t) =
        (int (*)(int, off_t))dlsym(RTLD_NEXT, "ftruncate");
    return real ? real(fd, len) : -1;
}

static void test_create_killed(void)
{
    for (int named = 0; named < 2; named++) {
        char name[64];
        snprintf(name, sizeof name, "mproc_killed_%d_%d", (int)getpid(), named);
        pid_t pid = fork();
        if (pid == 0) {
            g_die_in_ftruncate = 1;
            mproc_shm *s = NULL;
            mproc_shm_create(&s, named ? name : NULL, 1 << 16, 0);
            mproc_test_exit(0); /* not reached: killed in ftruncate */
        }
        int st;
        CHECK_EQ(waitpid(pid, &st, 0), pid);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        /* No name was ever visible, so none can leak (the harness also
         * checks that no psm_ name appeared). */
        CHECK(!shm_exists(name));
    }
}

/* In a private mount namespace with a 64 KiB /dev/shm, a segment that
 * does not fit is -ENOSPC at creation, never a SIGBUS at first touch.
 * Runs in a grandchild; returns its exit status (77: cannot unshare). */
static int tiny_devshm(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (unshare(CLONE_NEWNS) < 0 ||
            mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=64k") < 0)
            mproc_test_exit(77);
        mproc_shm *s = NULL;
        int fails = 0;
        fails += mproc_shm_create(&s, NULL, 1 << 20, 0) != -ENOSPC;
        fails += mproc_shm_create(&s, "mproc_big", 1 << 20, 0) != -ENOSPC;
        fails +=
            mproc_shm_create(&s, NULL, 1 << 20, MPROC_SHM_NOTRACK) != -ENOSPC;
        fails += access("/dev/shm/mproc_big", F_OK) == 0;
        /* What fits works, every byte of it. */
        if (mproc_shm_create(&s, NULL, 16 << 10, 0) != 0)
            mproc_test_exit(2);
        memset(mproc_shm_buf(s), 0x5a, 16 << 10);
        mproc_shm_unlink(s);
        mproc_shm_free(s);
        mproc_shutdown();
        mproc_test_exit(fails ? 1 : 0);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_devshm_full(void)
{
    int r = tiny_devshm();
    if (r == 77)
        SKIP("cannot make a private mount namespace (not root?)");
    CHECK_EQ(r, 0);
}

/* Under RLIMIT_FSIZE every constructor backed by a memfd or a segment
 * returns -EFBIG, and SIGXFSZ (default action: die) is never raised. */
static void test_fsize_limit(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit rl = {32 << 10, 32 << 10};
        struct sigaction old;
        if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
            mproc_test_exit(3);
        int fails = 0;
        mproc_shm *s = NULL;
        fails += mproc_shm_create(&s, NULL, 1 << 20, 0) != -EFBIG;
        fails += mproc_shm_new_anonymous(&s, 1 << 20) != -EFBIG;
        mproc_queue *q = NULL;
        mproc_queue_opts qo = {.type = MPROC_QUEUE, .capacity = 1 << 20};
        fails += mproc_queue_new_opts(&q, &qo) != -EFBIG;
        mproc_array *a = NULL;
        fails +=
            mproc_array_new(&a, MPROC_CTYPE_DOUBLE, 1 << 20, NULL) != -EFBIG;
        mproc_pool *pool = NULL;
        mproc_pool_opts po = {.processes = 1};
        fails += mproc_pool_new(&pool, &po) != -EFBIG; /* its board */
        /* Small ones still work. */
        fails += mproc_shm_new_anonymous(&s, 4096) != 0;
        mproc_shm_free(s);
        qo.capacity = 4096;
        fails += mproc_queue_new_opts(&q, &qo) != 0;
        mproc_queue_free(q);
        /* The program's disposition of SIGXFSZ is its own. */
        sigaction(SIGXFSZ, NULL, &old);
        fails += old.sa_handler != SIG_DFL;
        mproc_shutdown();
        mproc_test_exit(fails ? 1 : 0);
    }
    reap_ok(pid);
}

static const mproc_test tests[] = {
    {"types", test_types, 10},
    {"conversions", test_conversions, 10},
    {"lock", test_lock, 10},
    {"holder_killed", test_holder_killed, 10},
    {"counter_locked", test_counter_locked, 60},
    {"counter_unlocked", test_counter_unlocked, 60},
    {"counter_threads", test_counter_threads, 30},
    {"counter_methods", test_counter_methods, 60},
    {"array", test_array, 10},
    {"array_slice_atomic", test_array_slice_atomic, 30},
    {"heap_reuse", test_heap_reuse, 20},
    {"heap_fork_stress", test_heap_fork_stress, 60},
    {"heap_kill_stress", test_heap_kill_stress, 60},
    {"free_in_child", test_free_in_child, 10},
    {"objects_methods", test_objects_methods, 60},
    {"squares_methods", test_squares_methods, 60},
    {"value_initial", test_value_initial, 10},
    {"value_struct", test_value_struct, 30},
    {"value_get_obj", test_value_get_obj, 10},
    {"value_shared_lock", test_value_shared_lock, 60},
    {"value_shared_lock_holder_killed", test_value_shared_lock_holder_killed,
     20},
    {"value_shared_lock_methods", test_value_shared_lock_methods, 60},
    {"shm_basics", test_shm_basics, 20},
    {"shm_unlink_while_attached", test_shm_unlink_while_attached, 10},
    {"shm_readonly", test_shm_readonly, 10},
    {"shm_bad_input", test_shm_bad_input, 10},
    {"fd_exhaustion", test_fd_exhaustion, 10},
    {"shm_python", test_shm_python, 30},
    {"tracker_sigkill", test_tracker_sigkill, 30},
    {"tracker_opt_out", test_tracker_opt_out, 30},
    {"tracker_keeps_used", test_tracker_keeps_used, 30},
    {"tracker_keeps_open_fd", test_tracker_keeps_open_fd, 30},
    {"tracker_normal_exit", test_tracker_normal_exit, 60},
    {"tracker_replaced_name", test_tracker_replaced_name, 20},
    {"tracker_killed", test_tracker_killed, 20},
    {"tracker_tree", test_tracker_tree, 20},
    {"tracker_stop_with_holders", test_tracker_stop_with_holders, 20},
    {"create_killed", test_create_killed, 20},
    {"attach_track", test_attach_track, 30},
    {"devshm_full", test_devshm_full, 20},
    {"fsize_limit", test_fsize_limit, 20},
};

MPROC_TEST_MAIN(tests)
