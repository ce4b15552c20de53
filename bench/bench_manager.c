/*
 * bench_manager.c - a manager's dict proxy: the d[k] = v / d[k] round trip
 * mproc client -> mproc server, CPython client -> mproc server, CPython ->
 * CPython (3.11 and 3.13, bench/py/manager_bench.py), and the raw floor (the
 * same request and reply bytes echoed over a socketpair by a forked
 * child); proxy creation (create -> first call); throughput of 1, 2, 8 and
 * 32 client processes setting items for a second.
 * Prints "name value unit" lines; medians over 7 rounds.
 */
#include "bench_util.h"

#include <mproc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static const char key[] = "bench";
static const char key_hex[] = "62656e6368";

static int roundtrip(mproc_proxy *d, int n, double *us)
{
    double r[7];
    mproc_obj *k = mproc_obj_str_c("k");
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
    mproc_obj_unref(k);
    *us = bench_median(r, 7);
    return 0;
}

/* The same bytes echoed: a request's pickle out, a reply's back. */
static double raw_floor(int n)
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

/* nc forked clients set items through the proxy for 1 s: ops/s. */
static double throughput(mproc_proxy *d, int nc)
{
    int fds[2];
    if (pipe(fds) < 0)
        return -1;
    pid_t pids[32];
    fflush(NULL);
    for (int c = 0; c < nc; c++) {
        pids[c] = fork();
        if (pids[c] == 0) {
            close(fds[0]);
            long ops = 0;
            mproc_obj *k = mproc_obj_int(c);
            mproc_proxy_len(d); /* its channel opened before the clock */
            double end = mproc_monotonic() + 1.0;
            while (mproc_monotonic() < end) {
                mproc_obj *v = mproc_obj_int(ops);
                if (mproc_proxy_setitem(d, k, v) < 0)
                    break;
                mproc_obj_unref(v);
                ops++;
            }
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
    return (double)total;
}

static void python(const char *py, const char *label, const char *args)
{
    const char *script = bench_py_script("bench_manager", "manager_bench.py");
    if (!script)
        return;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s %s", py, script, args);
    FILE *f = popen(cmd, "r");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char what[32];
        double v;
        if (sscanf(line, "%31s %lf", what, &v) == 2)
            printf("%s_%s %.2f us\n", label, what, v);
    }
    pclose(f);
}

int main(void)
{
    mproc_manager *m;
    mproc_manager_opts o = {0};
    o.conn.auth = MPROC_AUTH_KEY;
    o.conn.authkey = key;
    o.conn.authkey_len = strlen(key);
    if (mproc_manager_start(&m, NULL, &o) < 0)
        return 1;
    mproc_proxy *d;
    if (mproc_manager_create(m, &d, "dict", NULL, NULL, NULL, 0) < 0)
        return 1;
    double us;
    if (roundtrip(d, 5000, &us) == 0)
        printf("mproc_to_mproc_rtt %.2f us\n", us);
    printf("raw_socketpair_rtt %.2f us\n", raw_floor(5000));
    printf("mproc_create_first_call %.1f us\n", creation(m));
    static const int ncs[] = {1, 2, 8, 32};
    for (int i = 0; i < 4; i++)
        printf("mproc_throughput_%d_clients %.0f ops/s\n", ncs[i],
               throughput(d, ncs[i]));
    static const char *const versions[] = {"3.11.7", "3.13.0"};
    for (int v = 0; v < 2; v++) {
        char path[512], label[64], args[512];
        snprintf(path, sizeof path, "%s/.pyenv/versions/%s/bin/python",
                 getenv("HOME") ? getenv("HOME") : "/root", versions[v]);
        if (access(path, X_OK) != 0)
            continue;
        snprintf(label, sizeof label, "cpython%.4s_to_mproc", versions[v]);
        snprintf(args, sizeof args, "client %s %s 2000",
                 mproc_manager_address(m), key_hex);
        python(path, label, args);
        snprintf(label, sizeof label, "cpython%.4s_to_cpython", versions[v]);
        python(path, label, "self 2000");
    }
    mproc_proxy_free(d);
    mproc_manager_free(m);
    return 0;
}
