/*
 * bench_manager.c - a manager's dict proxy: the d[k] = v / d[k] round trip
 * mproc client -> mproc server, CPython client -> mproc server, CPython ->
 * CPython (3.11 and 3.13, bench/py/manager_bench.py), and the raw floor (the
 * same request and reply bytes echoed over a socketpair by a forked
 * child, measured twice to show the noise), each with the CPU time the
 * client and the server spend per call; proxy creation (create -> first
 * call); throughput of 1, 2, 8 and 32 client processes doing d[k] = v and
 * d[k] in turn for a second, against mproc's server, CPython's (its own
 * clients) and redis-server doing SET/GET (when redis-server is on PATH;
 * bench/manager_peers.sh installs it); the server's memory (RSS) holding
 * 10^6 int -> int and 10^6 str -> str dict items.
 * Prints "name value unit" lines; medians over 7 rounds.
 */
#include "bench_util.h"

#include <mproc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static const char key[] = "bench";
static const char key_hex[] = "62656e6368";

/* CPU seconds (user + system) pid has used; -1 if unknown. */
static double cpu_of(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    unsigned long ut, st;
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
               &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double cpu_self(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

/* Resident memory of pid in KiB (VmRSS), -1 if unknown. */
static long rss_of(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* The round trip of d['k'] = i and d['k'], µs per call (median of 7
 * rounds of n each), and the CPU µs per call of this client and of the
 * server (over all rounds). */
static int roundtrip(mproc_proxy *d, pid_t server, int n, double *us,
                     double *cpu_client, double *cpu_server)
{
    double r[7];
    mproc_obj *k = mproc_obj_str_c("k");
    double c0 = cpu_self(RUSAGE_SELF), s0 = cpu_of(server);
    for (int round = 0; round < 7; round++) {
        double t0 = mproc_monotonic();
        for (int i = 0; i < n; i++) {
            mproc_obj *v = mproc_obj_int(i), *got = NULL;
            if (mproc_proxy_setitem(d, k, v) < 0 ||
                mproc_proxy_getitem(d, k, &got) < 0)
                return -1;
            mproc_obj_unref(v);
            mproc_obj_unref(got);
        }
        r[round] = (mproc_monotonic() - t0) / (2.0 * n) * 1e6;
    }
    *cpu_client = (cpu_self(RUSAGE_SELF) - c0) / (14.0 * n) * 1e6;
    *cpu_server = (cpu_of(server) - s0) / (14.0 * n) * 1e6;
    mproc_obj_unref(k);
    *us = bench_median(r, 7);
    return 0;
}

/* The same bytes echoed: a request's pickle out, a reply's back. */
static double raw_floor(int n, double *cpu_client, double *cpu_server)
{
    mproc_obj *req = mproc_obj_tuple_of(
        4, mproc_obj_str_c("7f0123456789"), mproc_obj_str_c("__setitem__"),
        mproc_obj_tuple_of(2, mproc_obj_str_c("k"), mproc_obj_int(1)),
        mproc_obj_dict_new());
    mproc_obj *rep =
        mproc_obj_tuple_of(2, mproc_obj_str_c("#RETURN"), mproc_obj_none());
    void *qb, *rb;
    size_t ql, rl;
    mproc_pickle_dumps(req, 4, &qb, &ql);
    mproc_pickle_dumps(rep, 4, &rb, &rl);
    mproc_obj_unref(req);
    mproc_obj_unref(rep);
    mproc_conn *a, *b;
    mproc_pipe(&a, &b, 1);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        mproc_conn_free(a);
        for (;;) {
            void *m;
            size_t ml;
            if (mproc_conn_recv_bytes(b, &m, &ml, 0, -1) < 0)
                _exit(0);
            mproc_obj *o;
            mproc_pickle_loads(m, ml, NULL, &o, NULL, 0); /* as a server */
            mproc_obj_unref(o);
            free(m);
            mproc_conn_send_bytes(b, rb, rl);
        }
    }
    mproc_conn_free(b);
    double r[7];
    double c0 = cpu_self(RUSAGE_SELF), s0 = cpu_of(pid);
    for (int round = 0; round < 7; round++) {
        double t0 = mproc_monotonic();
        for (int i = 0; i < n; i++) {
            void *m;
            size_t ml;
            mproc_conn_send_bytes(a, qb, ql);
            mproc_conn_recv_bytes(a, &m, &ml, 0, -1);
            mproc_obj *o;
            mproc_pickle_loads(m, ml, NULL, &o, NULL, 0); /* as a client */
            mproc_obj_unref(o);
            free(m);
        }
        r[round] = (mproc_monotonic() - t0) / n * 1e6;
    }
    *cpu_client = (cpu_self(RUSAGE_SELF) - c0) / (7.0 * n) * 1e6;
    *cpu_server = (cpu_of(pid) - s0) / (7.0 * n) * 1e6;
    mproc_conn_free(a);
    waitpid(pid, NULL, 0);
    free(qb);
    free(rb);
    return bench_median(r, 7);
}

static double creation(mproc_manager *m)
{
    double r[200];
    for (int i = 0; i < 200; i++) {
        double t0 = mproc_monotonic();
        mproc_proxy *p;
        if (mproc_manager_create(m, &p, "dict", NULL, NULL, NULL, 0) < 0)
            return -1;
        mproc_proxy_len(p);
        r[i] = (mproc_monotonic() - t0) * 1e6;
        mproc_proxy_free(p);
    }
    return bench_median(r, 200);
}

/* Runs work(c, ctx) in nc forked clients at once (each returns the ops
 * it did in its second): ops/s, and the CPU µs per op of the clients and
 * the server (pid). */
static double clients_run(int nc, long (*work)(int c, void *ctx), void *ctx,
                          pid_t server, double *cpu)
{
    int fds[2];
    if (pipe(fds) < 0)
        return -1;
    pid_t pids[32];
    double c0 = cpu_self(RUSAGE_CHILDREN), s0 = cpu_of(server);
    fflush(NULL);
    for (int c = 0; c < nc; c++) {
        pids[c] = fork();
        if (pids[c] == 0) {
            close(fds[0]);
            long ops = work(c, ctx);
            ssize_t w = write(fds[1], &ops, sizeof ops);
            (void)w;
            _exit(0);
        }
    }
    close(fds[1]);
    long total = 0, ops;
    while (read(fds[0], &ops, sizeof ops) == sizeof ops)
        total += ops;
    close(fds[0]);
    for (int c = 0; c < nc; c++)
        waitpid(pids[c], NULL, 0);
    *cpu = (cpu_self(RUSAGE_CHILDREN) - c0 + cpu_of(server) - s0) /
           (double)(total ? total : 1) * 1e6;
    return (double)total;
}

/* A client of the throughput: d[c] = i and d[c] in turn for 1 s. */
static long proxy_work(int c, void *ctx)
{
    mproc_proxy *d = ctx;
    long ops = 0;
    mproc_obj *k = mproc_obj_int(c);
    mproc_proxy_len(d); /* its channel opened before the clock */
    double end = mproc_monotonic() + 1.0;
    while (mproc_monotonic() < end) {
        mproc_obj *v = mproc_obj_int(ops), *got = NULL;
        if (mproc_proxy_setitem(d, k, v) < 0 ||
            mproc_proxy_getitem(d, k, &got) < 0)
            break;
        mproc_obj_unref(v);
        mproc_obj_unref(got);
        ops += 2;
    }
    return ops;
}

/* Fills a new dict (kept in *out) with 10^6 items (int -> int, or str ->
 * str), 10^4 per update call: the server's RSS growth in MiB. */
static double memory(mproc_manager *m, bool strings, mproc_proxy **out)
{
    pid_t pid = mproc_manager_pid(m);
    mproc_proxy *d;
    if (mproc_manager_create(m, &d, "dict", NULL, NULL, NULL, 0) < 0)
        return -1;
    *out = d;
    long before = rss_of(pid);
    for (int b = 0; b < 100; b++) {
        mproc_obj *batch = mproc_obj_dict_new();
        for (int i = b * 10000; i < (b + 1) * 10000; i++) {
            char ks[16], vs[16];
            snprintf(ks, sizeof ks, "k%07d", i);
            snprintf(vs, sizeof vs, "v%07d", i);
            mproc_obj_dict_set(
                batch, strings ? mproc_obj_str_c(ks) : mproc_obj_int(i),
                strings ? mproc_obj_str_c(vs) : mproc_obj_int(i)); /* stolen */
        }
        mproc_obj *args = mproc_obj_tuple_of(1, batch);
        int rc = mproc_proxy_call(d, "update", args, NULL, NULL, NULL, 0);
        mproc_obj_unref(args);
        if (rc < 0)
            return -1;
    }
    long after = rss_of(pid);
    if (mproc_proxy_len(d) != 1000000)
        return -1;
    return (double)(after - before) / 1024.0;
}

/* ---- redis-server, the same clients doing SET/GET ---------------------- */

/* One RESP command written inline, its one-line reply (or a bulk string)
 * read: 0 or -1. */
static int resp(int fd, const char *cmd, size_t n)
{
    if (write(fd, cmd, n) != (ssize_t)n)
        return -1;
    char buf[256];
    ssize_t k = read(fd, buf, sizeof buf);
    if (k <= 0)
        return -1;
    if (buf[0] == '$' && buf[1] != '-') { /* $len\r\nvalue\r\n */
        const char *nl = memchr(buf, '\n', (size_t)k);
        long len = atol(buf + 1);
        long have = nl ? (long)(k - (nl + 1 - buf)) : 0;
        while (have < len + 2) {
            ssize_t more = read(fd, buf, sizeof buf);
            if (more <= 0)
                return -1;
            have += more;
        }
    }
    return buf[0] == '-' ? -1 : 0;
}

static int redis_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    return -1;
}

/* A client of redis-server (ctx: its socket's path): SET kc i and GET kc
 * in turn for 1 s. */
static long redis_work(int c, void *ctx)
{
    long ops = 0;
    int fd = redis_connect(ctx);
    double end = mproc_monotonic() + 1.0;
    while (fd >= 0 && mproc_monotonic() < end) {
        char cmd[64];
        int n = snprintf(cmd, sizeof cmd, "SET k%d %ld\r\n", c, ops);
        if (resp(fd, cmd, (size_t)n) < 0)
            break;
        n = snprintf(cmd, sizeof cmd, "GET k%d\r\n", c);
        if (resp(fd, cmd, (size_t)n) < 0)
            break;
        ops += 2;
    }
    return ops;
}

/* Starts redis-server on a private socket, no persistence: its pid, or
 * -1 when there is none. */
static pid_t redis_start(const char *path)
{
    if (system("command -v redis-server >/dev/null 2>&1") != 0) {
        fprintf(stderr, "bench_manager: no redis-server (skipped; "
                        "bench/manager_peers.sh installs it)\n");
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket",
               path, "--save", "", "--appendonly", "no", "--loglevel",
               "warning", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200 && pid > 0; i++) { /* until it answers */
        int fd = redis_connect(path);
        if (fd >= 0) {
            int rc = resp(fd, "PING\r\n", 6);
            close(fd);
            if (rc == 0)
                return pid;
        }
        usleep(20000);
    }
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return -1;
}

/* Runs the CPython side and prints its figures under label; returns its
 * round trip in us (0 when there is none). */
static double python(const char *py, const char *label, const char *args)
{
    const char *script = bench_py_script("bench_manager", "manager_bench.py");
    if (!script)
        return 0;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s %s", py, script, args);
    FILE *f = popen(cmd, "r");
    if (!f)
        return 0;
    char line[256];
    double rtt = 0;
    while (fgets(line, sizeof line, f)) {
        char what[32], unit[16] = "us";
        double v;
        if (sscanf(line, "%31s %lf %15s", what, &v, unit) >= 2) {
            printf("%s_%s %.2f %s\n", label, what, v, unit);
            if (strcmp(what, "rtt") == 0)
                rtt = v;
        }
    }
    pclose(f);
    return rtt;
}

int main(int argc, char **argv)
{
    /* "bench_manager throughput": the mproc throughput lines only (to
     * alternate library builds quickly) */
    bool only_tput = argc > 1 && strcmp(argv[1], "throughput") == 0;
    mproc_manager *m;
    mproc_manager_opts o = {0};
    o.conn.auth = MPROC_AUTH_KEY;
    o.conn.authkey = key;
    o.conn.authkey_len = strlen(key);
    if (mproc_manager_start(&m, NULL, &o) < 0)
        return 1;
    pid_t server = mproc_manager_pid(m);
    mproc_proxy *d;
    if (mproc_manager_create(m, &d, "dict", NULL, NULL, NULL, 0) < 0)
        return 1;
    double us = 0, cc = 0, cs = 0, mine = 0, floor_us = 0;
    for (int twice = 0; twice < 2 && !only_tput; twice++) {
        if (roundtrip(d, server, 5000, &us, &cc, &cs) == 0) {
            printf("mproc_to_mproc_rtt %.2f us (cpu client %.2f server "
                   "%.2f)\n",
                   us, cc, cs);
            mine = us;
        }
        us = raw_floor(5000, &cc, &cs);
        printf("raw_socketpair_rtt %.2f us (cpu client %.2f server %.2f)\n", us,
               cc, cs);
        floor_us = us;
    }
    if (!only_tput)
        printf("mproc_create_first_call %.1f us\n", creation(m));
    static const int ncs[] = {1, 2, 8, 32};
    for (int i = 0; i < 4; i++) {
        double ops = clients_run(ncs[i], proxy_work, d, server, &cc);
        printf("mproc_throughput_%d_clients %.0f ops/s (cpu %.2f us/op)\n",
               ncs[i], ops, cc);
    }
    if (only_tput) {
        mproc_proxy_free(d);
        mproc_manager_free(m);
        return 0;
    }
    mproc_proxy *big[2] = {NULL, NULL}; /* both kept while measured */
    printf("mproc_memory_1e6_int_items %.1f MiB\n", memory(m, false, &big[0]));
    printf("mproc_memory_1e6_str_items %.1f MiB\n", memory(m, true, &big[1]));
    mproc_proxy_free(big[0]);
    mproc_proxy_free(big[1]);
    char rpath[64];
    snprintf(rpath, sizeof rpath, "/tmp/bench-redis-%d.sock", (int)getpid());
    pid_t redis = redis_start(rpath);
    for (int i = 0; i < 4 && redis > 0; i++) {
        double ops = clients_run(ncs[i], redis_work, rpath, redis, &cc);
        printf("redis_throughput_%d_clients %.0f ops/s (cpu %.2f us/op)\n",
               ncs[i], ops, cc);
    }
    if (redis > 0) {
        kill(redis, SIGTERM);
        waitpid(redis, NULL, 0);
        unlink(rpath);
    }
    static const char *const versions[] = {"3.11.7", "3.13.0"};
    double py_rtt = 0;
    for (int v = 0; v < 2; v++) {
        char path[512], label[64], args[512];
        snprintf(path, sizeof path, "%s/.pyenv/versions/%s/bin/python",
                 getenv("HOME") ? getenv("HOME") : "/root", versions[v]);
        if (access(path, X_OK) != 0)
            continue;
        snprintf(label, sizeof label, "cpython%.4s_to_mproc", versions[v]);
        snprintf(args, sizeof args, "client %s %s %d 2000",
                 mproc_manager_address(m), key_hex, (int)server);
        python(path, label, args);
        snprintf(label, sizeof label, "cpython%.4s_to_cpython", versions[v]);
        double r = python(path, label, "self 2000");
        if (v == 0 || !py_rtt)
            py_rtt = r;
    }
    /* For bench/plot.sh's ratio chart: the dict set/get round trip,
     * mproc to mproc, over the socketpair floor and over CPython's own
     * manager (3.11; 0: not measured, shown as "-"). */
    bench_ratio_row("Manager dict rtt", mine > 0 ? floor_us / mine : 0,
                    mine > 0 && py_rtt > 0 ? py_rtt / mine : 0);
    mproc_proxy_free(d);
    mproc_manager_free(m);
    return 0;
}
