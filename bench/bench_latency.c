/*
 * bench_latency.c - tail latency (issue 15, section 2): p50, p99 and p99.9
 * of one operation at a time between two processes, each beside its raw
 * floor and CPython 3.13 doing the same (bench/py/latency_bench.py):
 *
 *   conn round trip     64 bytes to a forked child and back over an mproc
 *                       duplex pipe (mproc_conn_send_bytes / _recv_bytes_into)
 *                       | floor: the same over a raw socketpair (write/read)
 *                       | CPython: Pipe(), send_bytes / recv_bytes
 *   queue hand-off      put -> the get of a consumer that has been waiting:
 *                       one way, the producer's clock before the put to the
 *                       consumer's after its get (CLOCK_MONOTONIC is one
 *                       clock for every process) | floor: futex wake
 *                       | CPython: Queue.put -> Queue.get
 *   lock hand-off       release -> the acquire of a process blocked in it,
 *                       one way | floor: futex wake | CPython: Lock
 *   event wake          set -> the return of a process waiting in wait, one
 *                       way | floor: futex wake | CPython: Event
 *   apply_async         apply_async of a tiny task + get on a 1-worker pool,
 *                       round trip | floor: socketpair round trip
 *                       | CPython: Pool(1).apply_async(...).get()
 *
 * In the one-way cases the waiter has waited GAP_US before each wake, long
 * enough to be asleep (mproc's waiters spin about 100 us first): what is
 * measured is a wake-up, as the futex floor is. Round trips run back to
 * back. The noise of the machine is stated by measuring both floors twice,
 * first and last: the spread between the two runs of one floor is what a
 * difference smaller than it cannot be told from.
 *
 * Usage: bench_latency [-n round trips] [-w wakes] [-P]
 *   -n  samples of each round trip (default 20000)
 *   -w  samples of each one-way wake (default 4000)
 *   -P  skip CPython
 * Environment: MPROC_BENCH_PYTHON (default ~/.pyenv/versions/3.13.0/bin/
 * python here), MPROC_BENCH_PY_DIR. Latencies are in microseconds.
 */
#include <mproc.h>

#include "bench_util.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MSG        64
#define GAP_US     300
#define MAX_SAMPLE 200000

static long n_rtt = 20000, n_wake = 4000;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void gap(void)
{
    struct timespec ts = {0, GAP_US * 1000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_latency: %s failed: %d %s\n", what, rc,
            mproc_strerror(rc));
    exit(1);
}

/* Shared between the parent and the child of one case: the waker's clock,
 * two futex words, and the samples a child records. */
typedef struct shared {
    _Atomic uint64_t t0;
    _Atomic uint32_t wake, ack;
    long n;
    double us[MAX_SAMPLE];
} shared;

static shared *sh;

static void fwait(_Atomic uint32_t *w, uint32_t old)
{
    while (atomic_load(w) == old)
        syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, old, NULL, NULL, 0);
}

static void fwake(_Atomic uint32_t *w)
{
    atomic_fetch_add(w, 1);
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* ---- percentiles ------------------------------------------------------ */

typedef struct pct {
    double p50, p99, p999;
} pct;

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static pct percentiles(double *v, long n)
{
    qsort(v, (size_t)n, sizeof v[0], cmp_d);
    pct p = {v[n / 2], v[(long)((double)n * 0.99)],
             v[(long)((double)n * 0.999)]};
    return p;
}

/* ---- round trips ------------------------------------------------------- */

static pct rtt_socketpair(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        die("socketpair", -errno);
    pid_t pid = fork();
    if (pid == 0) {
        char b[MSG];
        close(sv[0]);
        while (read(sv[1], b, MSG) == MSG)
            if (write(sv[1], b, MSG) != MSG)
                break;
        _exit(0);
    }
    close(sv[1]);
    char b[MSG] = {0};
    double *v = malloc(sizeof(double) * (size_t)n_rtt);
    for (long i = -100; i < n_rtt; i++) {
        uint64_t t = now_ns();
        if (write(sv[0], b, MSG) != MSG || read(sv[0], b, MSG) != MSG)
            die("socketpair round trip", -errno);
        if (i >= 0)
            v[i] = (double)(now_ns() - t) / 1e3;
    }
    close(sv[0]);
    waitpid(pid, NULL, 0);
    pct p = percentiles(v, n_rtt);
    free(v);
    return p;
}

static pct rtt_conn(void)
{
    mproc_conn *a, *b;
    int rc = mproc_pipe(&a, &b, 1);
    if (rc < 0)
        die("mproc_pipe", rc);
    pid_t pid = fork();
    if (pid == 0) {
        char m[MSG];
        size_t n;
        mproc_conn_free(a);
        while (mproc_conn_recv_bytes_into(b, m, sizeof m, &n, -1) == 0)
            if (mproc_conn_send_bytes(b, m, n) < 0)
                break;
        _exit(0);
    }
    mproc_conn_free(b);
    char m[MSG] = {0};
    size_t n;
    double *v = malloc(sizeof(double) * (size_t)n_rtt);
    for (long i = -100; i < n_rtt; i++) {
        uint64_t t = now_ns();
        if ((rc = mproc_conn_send_bytes(a, m, MSG)) < 0 ||
            (rc = mproc_conn_recv_bytes_into(a, m, sizeof m, &n, -1)) < 0)
            die("conn round trip", rc);
        if (i >= 0)
            v[i] = (double)(now_ns() - t) / 1e3;
    }
    mproc_conn_free(a);
    waitpid(pid, NULL, 0);
    pct p = percentiles(v, n_rtt);
    free(v);
    return p;
}

static int t_tiny(const void *in, size_t len, mproc_out *out)
{
    return mproc_out_write(out, in, len);
}

static pct rtt_apply(void)
{
    mproc_pool_opts o = {.processes = 1, .method = MPROC_START_FORK};
    mproc_pool *pool;
    int rc = mproc_pool_new(&pool, &o);
    if (rc < 0)
        die("pool", rc);
    long n = n_rtt / 4;
    double *v = malloc(sizeof(double) * (size_t)n);
    unsigned x = 7;
    for (long i = -100; i < n; i++) {
        uint64_t t = now_ns();
        mproc_future *f;
        if ((rc = mproc_pool_apply_async(pool, t_tiny, &x, sizeof x, NULL,
                                         &f)) < 0 ||
            (rc = mproc_future_get(f, -1, NULL, NULL)) < 0)
            die("apply_async round trip", rc);
        if (i >= 0)
            v[i] = (double)(now_ns() - t) / 1e3;
        mproc_future_free(f);
    }
    mproc_pool_free(pool);
    pct p = percentiles(v, n);
    free(v);
    return p;
}

/* ---- one-way wakes ------------------------------------------------------ */

enum { W_FUTEX, W_QUEUE, W_LOCK, W_EVENT };

static mproc_queue *wq;
static mproc_lock *wl;
static mproc_event *we;

/* The waiting child: waits in the mechanism, records now - t0, acks. */
static void waiter(int kind)
{
    for (long i = 0; i < sh->n; i++) {
        uint64_t t0 = 0;
        switch (kind) {
        case W_FUTEX:
            fwait(&sh->wake, (uint32_t)i); /* the i-th wake moves it on */
            break;
        case W_QUEUE: {
            char m[MSG];
            size_t n;
            if (mproc_queue_get(wq, m, sizeof m, &n, -1) < 0 || n != MSG)
                _exit(2);
            memcpy(&t0, m, sizeof t0);
            break;
        }
        case W_LOCK:
            fwait(&sh->wake, (uint32_t)i); /* the parent holds the lock now */
            fwake(&sh->ack);
            if (mproc_lock_acquire(wl, -1) < 0)
                _exit(2);
            break;
        case W_EVENT:
            if (mproc_event_wait(we, -1) < 0)
                _exit(2);
            break;
        }
        uint64_t t1 = now_ns();
        if (kind != W_QUEUE)
            t0 = atomic_load(&sh->t0);
        sh->us[i] = (double)(t1 - t0) / 1e3;
        if (kind == W_LOCK)
            mproc_lock_release(wl);
        if (kind == W_EVENT)
            mproc_event_clear(we);
        fwake(&sh->ack);
    }
    _exit(0);
}

static pct one_way(int kind)
{
    long n = n_wake;
    sh->n = n;
    atomic_store(&sh->wake, 0);
    atomic_store(&sh->ack, 0);
    pid_t pid = fork();
    if (pid == 0)
        waiter(kind);
    for (long i = 0; i < n; i++) {
        uint32_t ack = atomic_load(&sh->ack);
        if (kind == W_LOCK) {
            if (mproc_lock_acquire(wl, -1) < 0)
                die("lock", -1);
            fwake(&sh->wake);     /* go and block in acquire */
            fwait(&sh->ack, ack); /* it is on its way */
            ack = atomic_load(&sh->ack);
        }
        gap(); /* the waiter is asleep by now */
        uint64_t t0 = now_ns();
        atomic_store(&sh->t0, t0);
        switch (kind) {
        case W_FUTEX:
            fwake(&sh->wake);
            break;
        case W_QUEUE: {
            char m[MSG];
            memset(m, 0, sizeof m);
            memcpy(m, &t0, sizeof t0);
            if (mproc_queue_put(wq, m, sizeof m, -1) < 0)
                die("queue put", -1);
            break;
        }
        case W_LOCK:
            mproc_lock_release(wl);
            break;
        case W_EVENT:
            mproc_event_set(we);
            break;
        }
        fwait(&sh->ack, ack);
    }
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("waiter", -1);
    return percentiles(sh->us, n);
}

/* ---- CPython --------------------------------------------------------------
 */

#define N_CASES 5
static const char *const py_names[N_CASES] = {"conn", "queue", "lock", "event",
                                              "apply"};
static pct py_res[N_CASES];
static bool py_have[N_CASES];

static void run_python(void)
{
    const char *py = getenv("MPROC_BENCH_PYTHON");
    static char buf[1024];
    if (!py) {
        const char *home = getenv("HOME");
        snprintf(buf, sizeof buf, "%s/.pyenv/versions/3.13.0/bin/python",
                 home ? home : "/root");
        py = buf;
    }
    if (access(py, X_OK) != 0) {
        fprintf(stderr, "bench_latency: no CPython at %s (skipped)\n", py);
        return;
    }
    const char *script = bench_py_script("bench_latency", "latency_bench.py");
    if (!script)
        return;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s %ld %ld", py, script, n_rtt / 4,
             n_wake / 4);
    FILE *f = popen(cmd, "r");
    if (!f)
        return;
    char name[32];
    pct p;
    while (fscanf(f, "%31s %lf %lf %lf", name, &p.p50, &p.p99, &p.p999) == 4)
        for (int i = 0; i < N_CASES; i++)
            if (strcmp(name, py_names[i]) == 0) {
                py_res[i] = p;
                py_have[i] = true;
            }
    pclose(f);
}

static void row(const char *what, const char *who, pct m,
                const char *floor_name, pct fl, int py)
{
    printf("%-18s %-5s %8.1f %8.1f %8.1f | %-16s %8.1f %8.1f %8.1f", what, who,
           m.p50, m.p99, m.p999, floor_name, fl.p50, fl.p99, fl.p999);
    if (py >= 0 && py_have[py])
        printf(" | cpython %8.1f %8.1f %8.1f", py_res[py].p50, py_res[py].p99,
               py_res[py].p999);
    else
        printf(" | cpython      n/a");
    printf("\n");
}

int main(int argc, char **argv)
{
    bool with_py = true;
    int c;
    while ((c = getopt(argc, argv, "n:w:P")) != -1) {
        switch (c) {
        case 'n':
            n_rtt = atol(optarg);
            break;
        case 'w':
            n_wake = atol(optarg);
            break;
        case 'P':
            with_py = false;
            break;
        default:
            fprintf(stderr, "usage: bench_latency [-n rtts] [-w wakes] [-P]\n");
            return 2;
        }
    }
    if (n_rtt < 1000 || n_rtt > MAX_SAMPLE)
        n_rtt = 20000;
    if (n_wake < 1000 || n_wake > MAX_SAMPLE)
        n_wake = 4000;
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        die("mmap", -errno);
    int rc;
    if ((rc = mproc_queue_new(&wq, 0)) < 0 || (rc = mproc_lock_new(&wl)) < 0 ||
        (rc = mproc_event_new(&we)) < 0)
        die("objects", rc);

    pct sp1 = rtt_socketpair(), fx1 = one_way(W_FUTEX);
    pct conn = rtt_conn();
    pct queue = one_way(W_QUEUE);
    pct lock = one_way(W_LOCK);
    pct event = one_way(W_EVENT);
    pct apply = rtt_apply();
    if (with_py)
        run_python();
    pct sp2 = rtt_socketpair(), fx2 = one_way(W_FUTEX);

    printf("bench_latency: microseconds, p50 p99 p99.9; %ld round trips, %ld "
           "wakes (after %d us of waiting) per case; CPython %s\n",
           n_rtt, n_wake, GAP_US,
           with_py ? "with a quarter of the samples" : "skipped");
    printf("noise: the floors measured first and last\n");
    row("socketpair rtt", "1st", sp1, "socketpair (2nd)", sp2, -1);
    row("futex wake", "1st", fx1, "futex (2nd)", fx2, -1);
    row("conn 64B rtt", "mproc", conn, "socketpair", sp1, 0);
    row("queue hand-off", "mproc", queue, "futex wake", fx1, 1);
    row("lock hand-off", "mproc", lock, "futex wake", fx1, 2);
    row("event wake", "mproc", event, "futex wake", fx1, 3);
    row("apply_async rtt", "mproc", apply, "socketpair", sp1, 4);
    /* p50 speeds (1 / latency) against the floor and CPython. */
    const struct {
        const char *name;
        pct m, fl;
        int py;
    } rows[] = {{"conn 64B rtt p50", conn, sp1, 0},
                {"queue hand-off p50", queue, fx1, 1},
                {"lock hand-off p50", lock, fx1, 2},
                {"event wake p50", event, fx1, 3},
                {"apply_async rtt p50", apply, sp1, 4}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        bench_ratio_row(
            rows[i].name, rows[i].fl.p50 / rows[i].m.p50,
            py_have[rows[i].py] ? py_res[rows[i].py].p50 / rows[i].m.p50 : 0);
    mproc_queue_free(wq);
    mproc_lock_free(wl);
    mproc_event_free(we);
    return 0;
}
