/*
 * bench_conn.c - connections (issue 3, §5): a 64-byte round trip and
 * 1 MiB throughput over a duplex Pipe, against the floor (a raw socketpair
 * doing the same with write/read) and CPython 3.11's Connection
 * (send_bytes / recv_bytes, bench/py/conn_bench.py), in the same run.
 *
 *   round trip: the parent sends a 64-byte message and waits for a forked
 *     echo child to send it back; microseconds per round trip.
 *       raw    write(64) + read until 64 bytes, on both sides
 *       mproc  mproc_conn_send_bytes + mproc_conn_recv_bytes_into
 *       mproc (alloc)  the same with mproc_conn_recv_bytes (malloc + free)
 *   throughput: a forked child sends 1 MiB messages back to back, the
 *     parent receives them into one buffer; MB/s (10^6 bytes).
 *       raw    write() loop of 1 MiB / read() until 1 MiB
 *       mproc  send_bytes / recv_bytes_into (and recv_bytes + free)
 *
 * Rounds are interleaved (every contender once per round, the order
 * rotating) and each figure is the median over rounds. Targets (round trip
 * <= 1.2x raw, throughput >= 90% of raw) are reported, never asserted.
 *
 * Placement (-c): "split" (default) pins parent and child to two distinct
 * CPUs, "same" pins both to one CPU, "none" lets the scheduler place them
 * (then a round runs sometimes on one CPU, sometimes on two, and the
 * medians mix both cases). All contenders, CPython's too, are placed alike.
 *
 * Usage: bench_conn [-r rounds] [-n round_trips] [-m messages] [-P]
 *                   [-c split|same|none]
 *   -r  rounds (default 15)        -n  round trips per round (default 20000)
 *   -m  1 MiB messages per round (default 1000)      -P  skip CPython
 *   -c  placement of parent and child (see above)
 * Environment: MPROC_BENCH_PYTHON (default
 * ~/.pyenv/versions/3.11.7/bin/python), MPROC_BENCH_PY_DIR (where
 * conn_bench.py lives, default bench/py beside this source file).
 */
#include <mproc.h>

#include "bench_util.h"

#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUNDS 64
#define SMALL      64
#define BIG        (1u << 20)

enum {
    C_RAW_RTT,
    C_FRAMED_RTT,
    C_RTT,
    C_RTT_ALLOC,
    C_PY_RTT,
    C_RAW_TPUT,
    C_FRAMED_TPUT,
    C_TPUT,
    C_TPUT_ALLOC,
    C_PY_TPUT,
    C_COUNT
};

static const char *const names[C_COUNT] = {[C_RAW_RTT] = "raw socketpair",
                                           [C_FRAMED_RTT] = "raw framed",
                                           [C_RTT] = "mproc",
                                           [C_RTT_ALLOC] = "mproc (alloc)",
                                           [C_PY_RTT] = "CPython 3.11",
                                           [C_RAW_TPUT] = "raw socketpair",
                                           [C_FRAMED_TPUT] = "raw framed",
                                           [C_TPUT] = "mproc",
                                           [C_TPUT_ALLOC] = "mproc (alloc)",
                                           [C_PY_TPUT] = "CPython 3.11"};

static double samples[C_COUNT][MAX_ROUNDS];
static int nsamples[C_COUNT];
static int n_rtt = 20000, n_msgs = 1000;
static char py_cmd_rtt[2048], py_cmd_tput[2048];

/* CPUs for the parent and the children (-1: not pinned). On two CPUs every
 * contender pays a cross-core hand-off; on one, a 1 MiB copy stays in that
 * core's cache and a round trip is two context switches instead of two
 * cross-CPU wake-ups. Unpinned, the scheduler mixes both cases. */
static int cpu_parent = -1, cpu_child = -1;

static void pin_child(void)
{
    if (cpu_child >= 0)
        mproc_affinity_set(0, &cpu_child, 1);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int write_full(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        ssize_t k = write(fd, s, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        s += k;
        n -= (size_t)k;
    }
    return 0;
}

/* 1 when n bytes were read, 0 at end of file, -1 on error. */
static int read_full(int fd, void *p, size_t n)
{
    char *s = p;
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, s + got, n - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -1;
        if (k == 0)
            return 0;
        got += (size_t)k;
    }
    return 1;
}

static int reap(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* ---- round trip ------------------------------------------------------- */

static double raw_rtt(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        pin_child();
        close(sv[0]);
        char buf[SMALL];
        while (read_full(sv[1], buf, SMALL) == 1)
            if (write_full(sv[1], buf, SMALL) < 0)
                _exit(1);
        _exit(0);
    }
    close(sv[1]);
    char msg[SMALL];
    memset(msg, 'y', sizeof msg);
    double t0 = 0;
    int bad = 0;
    for (int i = -1; i < n_rtt && !bad; i++) {
        if (i == 0)
            t0 = now(); /* after one warm-up exchange */
        bad = write_full(sv[0], msg, SMALL) < 0 ||
              read_full(sv[0], msg, SMALL) != 1;
    }
    double dt = now() - t0;
    close(sv[0]);
    if (reap(pid) < 0 || bad)
        return -1;
    return dt / n_rtt * 1e6;
}

/* The wire format's own floor: CPython framing done with raw syscalls
 * (writev of header + payload; read the 4-byte header, then the payload),
 * which costs one more read per message than the raw floor. */
static int framed_send(int fd, const void *p, size_t n)
{
    unsigned char h[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                          (unsigned char)(n >> 8), (unsigned char)n};
    struct iovec iov[2] = {{h, 4}, {(void *)p, n}};
    return writev(fd, iov, 2) == (ssize_t)(n + 4) ? 0 : -1;
}

static int framed_recv(int fd, void *p, size_t cap)
{
    unsigned char h[4];
    if (read_full(fd, h, 4) != 1)
        return -1;
    size_t n =
        (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    return n <= cap && read_full(fd, p, n) == 1 ? (int)n : -1;
}

static double framed_rtt(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        pin_child();
        close(sv[0]);
        char buf[SMALL];
        int n;
        while ((n = framed_recv(sv[1], buf, sizeof buf)) >= 0)
            if (framed_send(sv[1], buf, (size_t)n) < 0)
                _exit(1);
        _exit(0);
    }
    close(sv[1]);
    char msg[SMALL];
    memset(msg, 'y', sizeof msg);
    double t0 = 0;
    int bad = 0;
    for (int i = -1; i < n_rtt && !bad; i++) {
        if (i == 0)
            t0 = now();
        bad = framed_send(sv[0], msg, SMALL) < 0 ||
              framed_recv(sv[0], msg, SMALL) != SMALL;
    }
    double dt = now() - t0;
    close(sv[0]);
    if (reap(pid) < 0 || bad)
        return -1;
    return dt / n_rtt * 1e6;
}

static double mproc_rtt(bool alloc)
{
    mproc_conn *a, *b;
    if (mproc_pipe(&a, &b, 1) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        pin_child();
        mproc_conn_free(a);
        char buf[SMALL];
        size_t n;
        while (mproc_conn_recv_bytes_into(b, buf, sizeof buf, &n, -1) == 0)
            if (mproc_conn_send_bytes(b, buf, n) < 0)
                _exit(1);
        _exit(0);
    }
    mproc_conn_free(b);
    char msg[SMALL];
    memset(msg, 'y', sizeof msg);
    double t0 = 0;
    int bad = 0;
    for (int i = -1; i < n_rtt && !bad; i++) {
        if (i == 0)
            t0 = now();
        size_t n = 0;
        bad = mproc_conn_send_bytes(a, msg, SMALL) < 0;
        if (!bad && alloc) {
            void *m;
            bad = mproc_conn_recv_bytes(a, &m, &n, 0, -1) < 0;
            if (!bad)
                free(m);
        } else if (!bad) {
            bad = mproc_conn_recv_bytes_into(a, msg, sizeof msg, &n, -1) < 0;
        }
        bad = bad || n != SMALL;
    }
    double dt = now() - t0;
    mproc_conn_free(a);
    if (reap(pid) < 0 || bad)
        return -1;
    return dt / n_rtt * 1e6;
}

/* ---- throughput ------------------------------------------------------- */

static unsigned char *big_buf; /* what children send */

/* A receive buffer the parent owns alone: made after fork and touched, so
 * no copy-on-write or first-touch fault lands in the timed loop. */
static unsigned char *rx_buffer(void)
{
    void *p = mmap(NULL, BIG, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    memset(p, 1, BIG);
    return p;
}

static double raw_tput(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        pin_child();
        close(sv[0]);
        char go;
        if (read_full(sv[1], &go, 1) != 1)
            _exit(1);
        for (int i = 0; i < n_msgs; i++)
            if (write_full(sv[1], big_buf, BIG) < 0)
                _exit(1);
        _exit(0);
    }
    close(sv[1]);
    unsigned char *rx = rx_buffer();
    double t0 = now();
    int bad = !rx || write_full(sv[0], "g", 1) < 0;
    for (int i = 0; i < n_msgs && !bad; i++)
        bad = read_full(sv[0], rx, BIG) != 1;
    double dt = now() - t0;
    close(sv[0]);
    if (rx)
        munmap(rx, BIG);
    if (reap(pid) < 0 || bad)
        return -1;
    return (double)n_msgs * BIG / dt / 1e6;
}

static double framed_tput(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        pin_child();
        close(sv[0]);
        char go;
        if (read_full(sv[1], &go, 1) != 1)
            _exit(1);
        for (int i = 0; i < n_msgs; i++) {
            unsigned char h[4] = {0, BIG >> 16, 0, 0};
            struct iovec iov[2] = {{h, 4}, {big_buf, BIG}};
            struct iovec *v = iov;
            int nv = 2;
            size_t left = BIG + 4;
            while (left) { /* writev may stop short on a socket */
                ssize_t k = writev(sv[1], v, nv);
                if (k <= 0)
                    _exit(1);
                left -= (size_t)k;
                while (nv && (size_t)k >= v->iov_len) {
                    k -= (ssize_t)v->iov_len;
                    v++;
                    nv--;
                }
                if (nv) {
                    v->iov_base = (char *)v->iov_base + k;
                    v->iov_len -= (size_t)k;
                }
            }
        }
        _exit(0);
    }
    close(sv[1]);
    unsigned char *rx = rx_buffer();
    double t0 = now();
    int bad = !rx || write_full(sv[0], "g", 1) < 0;
    for (int i = 0; i < n_msgs && !bad; i++)
        bad = framed_recv(sv[0], rx, BIG) != (int)BIG;
    double dt = now() - t0;
    close(sv[0]);
    if (rx)
        munmap(rx, BIG);
    if (reap(pid) < 0 || bad)
        return -1;
    return (double)n_msgs * BIG / dt / 1e6;
}

static double mproc_tput(bool alloc)
{
    mproc_conn *a, *b;
    if (mproc_pipe(&a, &b, 1) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        pin_child();
        mproc_conn_free(a);
        char go[4];
        size_t n;
        if (mproc_conn_recv_bytes_into(b, go, sizeof go, &n, -1) < 0)
            _exit(1);
        for (int i = 0; i < n_msgs; i++)
            if (mproc_conn_send_bytes(b, big_buf, BIG) < 0)
                _exit(1);
        _exit(0);
    }
    mproc_conn_free(b);
    unsigned char *rx = rx_buffer();
    double t0 = now();
    int bad = !rx || mproc_conn_send_bytes(a, "g", 1) < 0;
    for (int i = 0; i < n_msgs && !bad; i++) {
        size_t n = 0;
        if (alloc) {
            void *m;
            bad = mproc_conn_recv_bytes(a, &m, &n, 0, -1) < 0;
            if (!bad)
                free(m);
        } else {
            bad = mproc_conn_recv_bytes_into(a, rx, BIG, &n, -1) < 0;
        }
        bad = bad || n != BIG;
    }
    double dt = now() - t0;
    mproc_conn_free(a);
    if (rx)
        munmap(rx, BIG);
    if (reap(pid) < 0 || bad)
        return -1;
    return (double)n_msgs * BIG / dt / 1e6;
}

/* ---- CPython ---------------------------------------------------------- */

static bool setup_python(const char *file)
{
    const char *py = bench_python("bench_conn");
    const char *script =
        py ? bench_py_script("bench_conn", "conn_bench.py") : NULL;
    if (!script)
        return false;
    /* CPython is ~3x slower per op: fewer ops keep its share of a round
     * similar. */
    snprintf(py_cmd_rtt, sizeof py_cmd_rtt, "'%s' '%s' rtt %d %d", py, script,
             n_rtt / 2 > 0 ? n_rtt / 2 : 1, SMALL);
    snprintf(py_cmd_tput, sizeof py_cmd_tput, "'%s' '%s' tput %d %u", py,
             script, n_msgs / 2 > 0 ? n_msgs / 2 : 1, BIG);
    return true;
}

static double run_python(const char *cmd)
{
    fflush(NULL);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    char tag[16];
    double v = -1;
    if (fscanf(f, "%15s %lf", tag, &v) != 2)
        v = -1;
    if (pclose(f) != 0)
        return -1;
    return v;
}

static double run(int c)
{
    switch (c) {
    case C_RAW_RTT:
        return raw_rtt();
    case C_FRAMED_RTT:
        return framed_rtt();
    case C_RTT:
        return mproc_rtt(false);
    case C_RTT_ALLOC:
        return mproc_rtt(true);
    case C_PY_RTT:
        return run_python(py_cmd_rtt);
    case C_RAW_TPUT:
        return raw_tput();
    case C_FRAMED_TPUT:
        return framed_tput();
    case C_TPUT:
        return mproc_tput(false);
    case C_TPUT_ALLOC:
        return mproc_tput(true);
    case C_PY_TPUT:
        return run_python(py_cmd_tput);
    }
    return -1;
}

static double median(int c)
{
    return bench_median(samples[c], nsamples[c]);
}

int main(int argc, char **argv)
{
    int rounds = 15, opt;
    bool python = true;
    const char *place = "split";
    while ((opt = getopt(argc, argv, "r:n:m:Pc:")) != -1) {
        switch (opt) {
        case 'r':
            rounds = atoi(optarg);
            break;
        case 'n':
            n_rtt = atoi(optarg);
            break;
        case 'm':
            n_msgs = atoi(optarg);
            break;
        case 'P':
            python = false;
            break;
        case 'c':
            place = optarg;
            break;
        default:
            fprintf(stderr, "usage: bench_conn [-r rounds] [-n round_trips] "
                            "[-m messages] [-P] [-c split|same|none]\n");
            return 2;
        }
    }
    if (rounds < 1 || rounds > MAX_ROUNDS || n_rtt < 1 || n_msgs < 1) {
        fprintf(stderr, "bench_conn: bad -r/-n/-m\n");
        return 2;
    }
    int cpus[2], ncpu = mproc_affinity_get(0, cpus, 2);
    bool same = strcmp(place, "same") == 0;
    if (!same && strcmp(place, "split") != 0 && strcmp(place, "none") != 0) {
        fprintf(stderr, "bench_conn: -c split|same|none\n");
        return 2;
    }
    if (strcmp(place, "none") != 0 && ncpu >= 1) {
        cpu_parent = cpus[0];
        cpu_child = same || ncpu < 2 ? cpus[0] : cpus[1];
        mproc_affinity_set(0, &cpu_parent, 1);
        char env[32];
        snprintf(env, sizeof env, "%d,%d", cpu_parent, cpu_child);
        setenv("MPROC_BENCH_PIN", env, 1); /* for conn_bench.py */
    }
    if (python)
        python = setup_python(__FILE__);
    signal(SIGPIPE, SIG_IGN);
    big_buf = malloc(BIG);
    if (!big_buf)
        return 1;
    memset(big_buf, 'z', BIG);

    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < C_COUNT; k++) {
            int c = (k + r) % C_COUNT;
            if (!python && (c == C_PY_RTT || c == C_PY_TPUT))
                continue;
            double v = run(c);
            if (v < 0) {
                fprintf(stderr, "bench_conn: %s (%s) failed\n", names[c],
                        c < C_RAW_TPUT ? "round trip" : "throughput");
                return 1;
            }
            samples[c][nsamples[c]++] = v;
        }
    }
    printf("conn: median of %d interleaved rounds (%d round trips, %d x 1 "
           "MiB per round), %s\n",
           rounds, n_rtt, n_msgs,
           cpu_child < 0             ? "not pinned"
           : cpu_child == cpu_parent ? "parent and child pinned to one CPU"
                                     : "parent and child pinned to two CPUs");
    double raw = median(C_RAW_RTT), py = median(C_PY_RTT);
    for (int c = C_RTT; c <= C_RTT_ALLOC; c++) {
        double m = median(c);
        printf("64 B round trip   %-14s %8.2f us   %-14s %8.2f us   "
               "mproc/raw %5.2fx (target <= 1.2x)",
               names[c], m, names[C_RAW_RTT], raw, m / raw);
        if (py > 0)
            printf("   %s %8.2f us  CPython/mproc %5.2fx", names[C_PY_RTT], py,
                   py / m);
        printf("\n");
    }
    double fr = median(C_FRAMED_RTT);
    printf("64 B round trip   %-14s %8.2f us   %-14s %8.2f us   "
           "framed/raw %5.2fx (the wire format's floor: a 2nd read)\n",
           names[C_FRAMED_RTT], fr, names[C_RAW_RTT], raw, fr / raw);
    raw = median(C_RAW_TPUT);
    py = median(C_PY_TPUT);
    for (int c = C_TPUT; c <= C_TPUT_ALLOC; c++) {
        double m = median(c);
        printf("1 MiB throughput  %-14s %8.0f MB/s %-14s %8.0f MB/s "
               "mproc/raw %5.1f%% (target >= 90%%)",
               names[c], m, names[C_RAW_TPUT], raw, 100 * m / raw);
        if (py > 0)
            printf("   %s %8.0f MB/s mproc/CPython %5.2fx", names[C_PY_TPUT],
                   py, m / py);
        printf("\n");
    }
    double ft = median(C_FRAMED_TPUT);
    printf("1 MiB throughput  %-14s %8.0f MB/s %-14s %8.0f MB/s "
           "framed/raw %5.1f%% (the wire format's floor)\n",
           names[C_FRAMED_TPUT], ft, names[C_RAW_TPUT], raw, 100 * ft / raw);
    /* For bench/plot.sh's ratio chart: mproc's speed over the floor's and
     * over CPython's (0: not measured, shown as "-"). */
    double rtt = median(C_RTT), rraw = median(C_RAW_RTT);
    double rpy = median(C_PY_RTT), tp = median(C_TPUT);
    bench_ratio_row("Connection 64B rtt", rtt > 0 ? rraw / rtt : 0,
                    rtt > 0 && rpy > 0 ? rpy / rtt : 0);
    bench_ratio_row("Connection 1MiB", raw > 0 ? tp / raw : 0,
                    py > 0 ? tp / py : 0);
    free(big_buf);
    return 0;
}
