/*
 * test_process.c - processes under fork, spawn and forkserver: exit codes
 * and signals, joins and timeouts, naming, current/parent process, daemons
 * (including a parent that is SIGKILLed), fd hygiene, shareable objects,
 * logging, affinity, waiting on sentinels, bad input.
 */
#include "harness.h"
#include "testlib.h"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

/* ---- a shareable object of the test's own: one end of a pipe ---------- */

typedef struct tpipe {
    int fd;
} tpipe;

static int tpipe_export(const void *o, mproc_export *ex)
{
    int r = mproc_export_fd(ex, ((const tpipe *)o)->fd);
    return r < 0 ? r : mproc_export_bytes(ex, "tp", 2);
}

static int tpipe_import(mproc_import *im, void **out)
{
    char tag[2];
    int fd = mproc_import_fd(im);
    if (fd < 0)
        return fd;
    if (mproc_import_bytes(im, tag, 2) < 0 || memcmp(tag, "tp", 2) != 0) {
        close(fd);
        return MPROC_EPROTO;
    }
    tpipe *t = malloc(sizeof *t);
    if (!t) {
        close(fd);
        return -ENOMEM;
    }
    t->fd = fd;
    *out = t;
    return 0;
}

static void tpipe_free(void *o)
{
    close(((tpipe *)o)->fd);
    free(o);
}

static const mproc_kind tpipe_kind = {"test-pipe", tpipe_export, tpipe_import,
                                      tpipe_free};

/* Writes a line to the tpipe argument at index i. */
static void say(const mproc_args *a, size_t i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(const mproc_args *a, size_t i, const char *fmt, ...)
{
    tpipe *t = mproc_args_object(a, i, &tpipe_kind);
    if (!t)
        mproc_test_exit(99);
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (write(t->fd, buf, (size_t)n) != n)
        mproc_test_exit(98);
}

/* Reads what children said until every writer is gone. */
static void slurp(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = 0;
}

/* Starts target(args) under method m; returns the process. */
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
    CHECK_OK(mproc_process_join(p, 20));
    int c = mproc_process_exitcode(p);
    mproc_process_free(p);
    return c;
}

/* ---- exit codes ------------------------------------------------------- */

static int t_return(const mproc_args *a)
{
    return (int)mproc_args_int(a, 0);
}

static int t_segv(const mproc_args *a)
{
    signal(SIGSEGV, SIG_DFL); /* ASan's handler would turn it into exit 1 */
    raise(SIGSEGV);
    return 0;
}

static int t_abort(const mproc_args *a)
{
    signal(SIGABRT, SIG_DFL);
    abort();
}

static int t_sleep(const mproc_args *a)
{
    double s = mproc_args_double(a, 0);
    usleep((useconds_t)(s * 1e6));
    return 3;
}

static void test_exit_codes(void)
{
    for (int m = 0; m < 3; m++) {
        mproc_start_method sm = mproc_test_methods[m];
        mproc_args *a = mproc_args_of("i", 7 + m);
        mproc_process *p;
        CHECK_OK(mproc_process_new(&p, t_return, a));
        CHECK_OK(mproc_process_set_start_method(p, sm));
        CHECK_EQ(mproc_process_exitcode(p), MPROC_EXITCODE_NONE);
        CHECK_EQ(mproc_process_pid(p), 0);
        CHECK_OK(mproc_process_start(p));
        CHECK(mproc_process_pid(p) > 0);
        CHECK_EQ(join_code(p), 7 + m);
        mproc_args_free(a);
        CHECK_EQ(join_code(run(t_segv, NULL, sm)), -SIGSEGV);
        CHECK_EQ(join_code(run(t_abort, NULL, sm)), -SIGABRT);
        a = mproc_args_of("i", 300); /* the kernel keeps 8 bits */
        CHECK_EQ(join_code(run(t_return, a, sm)), 300 & 0xff);
        mproc_args_free(a);
    }
}

static void test_join_timeout_and_terminate(void)
{
    for (int m = 0; m < 3; m++) {
        mproc_args *a = mproc_args_of("d", 30.0);
        mproc_process *p = run(t_sleep, a, mproc_test_methods[m]);
        mproc_args_free(a);
        double t0 = mproc_test_now();
        CHECK_ERR(mproc_process_join(p, 0.2), -ETIMEDOUT);
        double dt = mproc_test_now() - t0;
        CHECK(dt >= 0.19 && dt < 2.0);
        CHECK_ERR(mproc_process_join(p, 0), -ETIMEDOUT);
        CHECK_EQ(mproc_process_is_alive(p), 1);
        CHECK_EQ(mproc_process_exitcode(p), MPROC_EXITCODE_NONE);
        CHECK_ERR(mproc_process_close(p), MPROC_ERUNNING);
        CHECK_OK(mproc_process_terminate(p));
        CHECK_OK(mproc_process_join(p, 10));
        CHECK_EQ(mproc_process_exitcode(p), -SIGTERM);
        CHECK_EQ(mproc_process_is_alive(p), 0);
        /* Reaped: never signal again, whatever has the pid now. */
        CHECK_ERR(mproc_process_kill(p), MPROC_EREAPED);
        CHECK_ERR(mproc_process_terminate(p), MPROC_EREAPED);
        CHECK_OK(mproc_process_join(p, 0)); /* idempotent */
        CHECK_OK(mproc_process_close(p));
        CHECK_OK(mproc_process_close(p));
        CHECK_EQ(mproc_process_exitcode(p), -SIGTERM);
        CHECK_ERR(mproc_process_join(p, 0), MPROC_ECLOSED);
        CHECK_ERR(mproc_process_kill(p), MPROC_ECLOSED);
        CHECK_ERR(mproc_process_is_alive(p), MPROC_ECLOSED); /* as Python */
        mproc_process_free(p);
    }
}

static void test_kill(void)
{
    for (int m = 0; m < 3; m++) {
        mproc_args *a = mproc_args_of("d", 30.0);
        mproc_process *p = run(t_sleep, a, mproc_test_methods[m]);
        mproc_args_free(a);
        CHECK_OK(mproc_process_kill(p));
        CHECK_EQ(join_code(p), -SIGKILL);
    }
}

/* A reaped child's pid is handed to a new process: kill must not touch it. */
static void test_kill_reaped_never_hits_recycled_pid(void)
{
    mproc_process *p = run(t_return, NULL, MPROC_START_FORK);
    CHECK_OK(mproc_process_join(p, 10));
    pid_t old = mproc_process_pid(p);
    /* Whatever runs as that pid now (if anything) must survive. */
    CHECK_ERR(mproc_process_kill(p), MPROC_EREAPED);
    CHECK_ERR(mproc_process_signal(p, SIGTERM), MPROC_EREAPED);
    CHECK(old > 0);
    mproc_process_free(p);
}

static void test_library_target(void)
{
    for (int m = 0; m < 3; m++) {
        mproc_args *a = mproc_args_of("i", 2);
        CHECK_EQ(join_code(run(mproc_testlib_target, a, mproc_test_methods[m])),
                 42);
        mproc_args_free(a);
    }
}

/* Libraries initialized after libmproc have run their constructors
 * before a spawn target runs. */
static void test_library_constructors_run(void)
{
    for (int m = 0; m < 3; m++)
        CHECK_EQ(
            join_code(run(mproc_testlib_ctor_ran, NULL, mproc_test_methods[m])),
            0);
}

/* main() must not run again in a spawn or forkserver child. */
static int t_main_ran(const mproc_args *a)
{
    return mproc_test_main_ran;
}

static void test_main_not_rerun(void)
{
    CHECK_EQ(join_code(run(t_main_ran, NULL, MPROC_START_FORK)), 1);
    CHECK_EQ(join_code(run(t_main_ran, NULL, MPROC_START_SPAWN)), 0);
    CHECK_EQ(join_code(run(t_main_ran, NULL, MPROC_START_FORKSERVER)), 0);
}

/* ---- arguments and shareable objects ----------------------------------- */

static int t_args(const mproc_args *a)
{
    size_t n = 0;
    const char *b = mproc_args_bytes(a, 3, &n);
    static const char want[5] = {1, 0, 2, 0, 3};
    if (mproc_args_count(a) != 5 || mproc_args_int(a, 0) != -1234567890123LL ||
        mproc_args_double(a, 1) != 2.5 ||
        strcmp(mproc_args_str(a, 2), "héllo") != 0 || n != 5 ||
        memcmp(b, want, 5) != 0 || mproc_args_type(a, 4) != MPROC_ARG_OBJECT ||
        mproc_args_type(a, 5) != MPROC_ARG_NONE ||
        mproc_args_object(a, 0, &tpipe_kind) != NULL)
        return 1;
    say(a, 4, "object ok");
    return 0;
}

static void test_args_and_objects(void)
{
    for (int m = 0; m < 3; m++) {
        int pp[2];
        CHECK_OK(pipe2(pp, O_CLOEXEC));
        tpipe tp = {pp[1]};
        static const char bytes[5] = {1, 0, 2, 0, 3};
        mproc_args *a =
            mproc_args_of("ldsbo", (int64_t)-1234567890123LL, 2.5, "héllo",
                          bytes, (size_t)5, &tpipe_kind, &tp);
        CHECK(a);
        mproc_process *p = run(t_args, a, mproc_test_methods[m]);
        mproc_args_free(a);
        close(pp[1]);
        char buf[64];
        slurp(pp[0], buf, sizeof buf);
        close(pp[0]);
        CHECK_EQ(join_code(p), 0);
        CHECK_STR(buf, "object ok");
    }
}

/* ---- names, current and parent process --------------------------------- */

static int t_grandchild(const mproc_args *a)
{
    mproc_process *par = mproc_parent_process();
    say(a, 0, "%s<%s:%d>", mproc_process_name(mproc_current_process()),
        par ? mproc_process_name(par) : "-",
        par ? (int)(mproc_process_pid(par) == getppid() ||
                    mproc_process_is_alive(par))
            : -1);
    return 0;
}

static int t_names(const mproc_args *a)
{
    mproc_process *par = mproc_parent_process();
    if (!par || mproc_process_is_alive(par) != 1)
        return 1;
    unsigned char key[64];
    int klen = mproc_authkey(key, sizeof key);
    say(a, 0, "%s|%s|%d|%d|", mproc_process_name(mproc_current_process()),
        mproc_process_name(par), (int)mproc_process_pid(par), klen);
    /* A grandchild under the same method: named "Process-N:1". */
    mproc_start_method m = (mproc_start_method)mproc_args_int(a, 1);
    mproc_process *g = run(t_grandchild, (mproc_args *)a, m);
    return join_code(g);
}

static void test_names_and_parent(void)
{
    unsigned char key[32];
    for (int i = 0; i < 32; i++)
        key[i] = (unsigned char)(i * 7);
    CHECK_OK(mproc_set_authkey(key, sizeof key - 3));
    CHECK_STR(mproc_process_name(mproc_current_process()), "MainProcess");
    CHECK(mproc_parent_process() == NULL);
    for (int m = 0; m < 3; m++) {
        int pp[2];
        CHECK_OK(pipe2(pp, O_CLOEXEC));
        tpipe tp = {pp[1]};
        mproc_args *a =
            mproc_args_of("oi", &tpipe_kind, &tp, (int)mproc_test_methods[m]);
        mproc_process *p;
        CHECK_OK(mproc_process_new(&p, t_names, a));
        char want[256];
        snprintf(want, sizeof want, "%s|MainProcess|%d|29|%s:1<%s>",
                 mproc_process_name(p), (int)getpid(), mproc_process_name(p),
                 "X");
        CHECK_OK(mproc_process_set_start_method(p, mproc_test_methods[m]));
        CHECK_OK(mproc_process_start(p));
        mproc_args_free(a);
        close(pp[1]);
        char buf[512];
        slurp(pp[0], buf, sizeof buf);
        close(pp[0]);
        char name[64];
        snprintf(name, sizeof name, "%s", mproc_process_name(p));
        CHECK_EQ(join_code(p), 0);
        snprintf(want, sizeof want, "%s|MainProcess|%d|29|%s:1<%s:1>", name,
                 (int)getpid(), name, name);
        CHECK_STR(buf, want);
        CHECK(strncmp(name, "Process-", 8) == 0);
    }
}

static void test_names_count_up(void)
{
    mproc_process *p1, *p2;
    CHECK_OK(mproc_process_new(&p1, t_return, NULL));
    CHECK_OK(mproc_process_new(&p2, t_return, NULL));
    int n1 = atoi(mproc_process_name(p1) + 8);
    CHECK(n1 >= 1);
    char want[32];
    snprintf(want, sizeof want, "Process-%d", n1 + 1);
    CHECK_STR(mproc_process_name(p2), want);
    CHECK_OK(mproc_process_set_name(p2, "worker"));
    CHECK_STR(mproc_process_name(p2), "worker");
    mproc_process_free(p1);
    mproc_process_free(p2);
}

/* Output buffered in the parent's stdio is flushed before fork, so the
 * child (which flushes at exit) does not print it a second time. */
static void test_stdio_flushed_before_fork(void)
{
    int pp[2];
    CHECK_OK(pipe2(pp, O_CLOEXEC));
    fflush(stdout);
    int saved = dup(1);
    CHECK(saved >= 0);
    CHECK(dup2(pp[1], 1) == 1);
    close(pp[1]);
    printf("buffered-");
    mproc_process *p = run(t_return, NULL, MPROC_START_FORK);
    int code = join_code(p);
    printf("end\n");
    fflush(stdout);
    CHECK(dup2(saved, 1) == 1);
    close(saved);
    char buf[128];
    slurp(pp[0], buf, sizeof buf);
    close(pp[0]);
    CHECK_EQ(code, 0);
    CHECK_STR(buf, "buffered-end\n");
}

/* ---- fd hygiene -------------------------------------------------------- */

/* Lists /proc/self/fd into the tpipe at args[0]. */
static int t_list_fds(const mproc_args *a)
{
    tpipe *t = mproc_args_object(a, 0, &tpipe_kind);
    char out[1024] = "";
    DIR *d = opendir("/proc/self/fd");
    if (!d || !t)
        return 1;
    struct dirent *e;
    size_t n = 0;
    /* (valgrind keeps fds of its own above the limit it shows us) */
    struct rlimit lim;
    getrlimit(RLIMIT_NOFILE, &lim);
    while ((e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd == dirfd(d) || fd == t->fd ||
            (rlim_t)fd >= lim.rlim_cur)
            continue;
        char link[128] = "", path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t k = readlink(path, link, sizeof link - 1);
        if (k > 0)
            link[k] = 0;
        n += (size_t)snprintf(out + n, sizeof out - n, "%d=%s;", fd,
                              fd > 2 ? link : "std");
    }
    closedir(d);
    say(a, 0, "%s", out);
    return 0;
}

static void test_no_fd_leaks_into_children(void)
{
    /* An fd the program forgot to mark close-on-exec must not reach a spawn
     * or forkserver child. */
    int stray = open("/dev/null", O_RDONLY);
    CHECK(stray >= 0);
    for (int m = 1; m < 3; m++) {
        int pp[2];
        CHECK_OK(pipe2(pp, O_CLOEXEC));
        tpipe tp = {pp[1]};
        mproc_args *a = mproc_args_of("o", &tpipe_kind, &tp);
        mproc_process *p = run(t_list_fds, a, mproc_test_methods[m]);
        mproc_args_free(a);
        close(pp[1]);
        char buf[1024];
        slurp(pp[0], buf, sizeof buf);
        close(pp[0]);
        CHECK_EQ(join_code(p), 0);
        /* 0-2 and the parent's pidfd; under forkserver also the pipe on
         * which the child reports its exit code. Nothing else. Without
         * pidfds, two pipes instead of the pidfd: the read end it watches
         * its parent by, the write end its own sentinel reads end of file
         * by. */
        CHECK(strncmp(buf, "0=std;1=std;2=std;", 18) == 0);
        int pidfds = 0, pipes = 0, sockets = 0, others = 0;
        for (char *e = strchr(buf + 18, '='); e; e = strchr(e + 1, '=')) {
            if (strncmp(e, "=anon_inode:[pidfd];", 20) == 0)
                pidfds++;
            else if (strncmp(e, "=pipe:[", 7) == 0)
                pipes++;
            else if (strncmp(e, "=socket:[", 9) == 0)
                sockets++;
            else
                others++;
        }
        CHECK_EQ(pidfds, mproc_test_no_pidfd() ? 0 : 1);
        CHECK_EQ(pipes, (mproc_test_no_pidfd() ? 2 : 0) +
                            (mproc_test_methods[m] == MPROC_START_FORKSERVER));
        CHECK_EQ(sockets, 0);
        CHECK_EQ(others, 0);
    }
    close(stray);
}

/* ---- daemons ------------------------------------------------------------ */

static int t_forever(const mproc_args *a)
{
    while (mproc_args_count(a) == 0)
        pause();
    return 0;
}

/* Starts a daemon, reports its pid, then waits to be killed or returns. */
static int t_daemon_parent(const mproc_args *a)
{
    mproc_process *d;
    CHECK_OK(mproc_process_new(&d, t_forever, NULL));
    CHECK_OK(mproc_process_set_daemon(d, 1));
    CHECK_OK(mproc_process_set_start_method(
        d, (mproc_start_method)mproc_args_int(a, 1)));
    CHECK_OK(mproc_process_start(d));
    say(a, 0, "%d", (int)mproc_process_pid(d));
    if (mproc_args_int(a, 2))
        pause(); /* waits for SIGKILL */
    return 0;    /* normal exit: the daemon must be terminated */
}

/* Is pid a zombie, or no process at all? (Without pidfds.) */
static bool ended(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return true;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    const char *st = strrchr(buf, ')');
    return !st || st[1] == 0 || st[2] == 'Z' || st[2] == 'X';
}

static bool wait_gone(pid_t pid, double timeout)
{
    int fd = mproc_test_no_pidfd() ? -1 : (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0 && errno != ENOSYS && !mproc_test_no_pidfd())
        return errno == ESRCH;
    if (fd >= 0) {
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, (int)(timeout * 1000));
        close(fd);
        return r == 1;
    }
    /* No pidfds (valgrind): look every few milliseconds. */
    for (double t0 = mproc_test_now(); mproc_test_now() - t0 < timeout;
         usleep(5000))
        if (ended(pid))
            return true;
    return ended(pid);
}

static void reap_adopted(void)
{
    /* As a subreaper we inherit orphans; reap them all. */
    for (int i = 0; i < 200; i++) {
        pid_t r = waitpid(-1, NULL, WNOHANG);
        if (r < 0)
            break;
        if (r == 0)
            usleep(10000);
    }
}

static void daemon_case(int m, int kill_parent)
{
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    int pp[2];
    CHECK_OK(pipe2(pp, O_CLOEXEC));
    tpipe tp = {pp[1]};
    mproc_args *a = mproc_args_of("oii", &tpipe_kind, &tp,
                                  (int)mproc_test_methods[m], kill_parent);
    mproc_process *p = run(t_daemon_parent, a, MPROC_START_FORK);
    mproc_args_free(a);
    close(pp[1]);
    char buf[32] = "";
    ssize_t k = read(pp[0], buf, sizeof buf - 1);
    CHECK(k > 0);
    buf[k] = 0;
    close(pp[0]);
    pid_t dpid = atoi(buf);
    CHECK(dpid > 0);
    if (kill_parent) {
        CHECK(!wait_gone(dpid, 0.05));
        CHECK_OK(mproc_process_kill(p));
        CHECK_EQ(join_code(p), -SIGKILL);
    } else {
        CHECK_EQ(join_code(p), 0);
    }
    CHECK(wait_gone(dpid, 10));
    reap_adopted();
}

static void test_daemon_killed_with_parent(void)
{
    for (int m = 0; m < 3; m++)
        daemon_case(m, 1);
}

static void test_daemon_terminated_at_exit(void)
{
    for (int m = 0; m < 3; m++)
        daemon_case(m, 0);
}

static int t_daemon_child_start(const mproc_args *a)
{
    mproc_process *g;
    if (mproc_process_new(&g, t_return, NULL) < 0)
        return 1;
    int r = mproc_process_start(g);
    mproc_process_free(g);
    return r == MPROC_EDAEMON ? 0 : 2;
}

static void test_daemon_may_not_have_children(void)
{
    for (int m = 0; m < 3; m++) {
        mproc_process *p;
        CHECK_OK(mproc_process_new(&p, t_daemon_child_start, NULL));
        CHECK_OK(mproc_process_set_daemon(p, 1));
        CHECK_EQ(mproc_process_daemon(p), 1);
        CHECK_OK(mproc_process_set_start_method(p, mproc_test_methods[m]));
        CHECK_OK(mproc_process_start(p));
        CHECK_EQ(join_code(p), 0);
    }
}

/* ---- fork server --------------------------------------------------------- */

static void test_forkserver_1000_starts(void)
{
    CHECK_EQ(join_code(run(t_return, NULL, MPROC_START_FORKSERVER)), 0);
    int fds0 = mproc_test_count_fds(); /* the server's pipe and pidfd */
    for (int i = 0; i < 1000; i++) {
        mproc_args *a = mproc_args_of("i", i & 0x7f);
        mproc_process *p = run(t_return, a, MPROC_START_FORKSERVER);
        mproc_args_free(a);
        CHECK_EQ(join_code(p), i & 0x7f);
    }
    CHECK_EQ(mproc_test_count_fds(), fds0);
}

/* The children of pid, from /proc (at most max). */
static int children_of(pid_t pid, pid_t *out, int max)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid,
             (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    int k = 0;
    for (char *p = buf; k < max && *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p)
            break;
        out[k++] = (pid_t)v;
        p = end;
    }
    return k;
}

/* Our only direct child that is not a process object: the fork server. */
static pid_t find_server(void)
{
    pid_t pid = -1;
    return children_of(getpid(), &pid, 1) == 1 ? pid : -1;
}

/* The fork server is SIGKILLed: a child it forked keeps running, is still
 * joined and reports its own exit code; the next start brings up a new
 * server. */
static void test_forkserver_killed(void)
{
    prctl(PR_SET_CHILD_SUBREAPER, 1); /* orphans come to us */
    mproc_args *a = mproc_args_of("d", 0.5), *forever = mproc_args_of("d", 30.);
    CHECK_EQ(join_code(run(t_return, NULL, MPROC_START_FORKSERVER)), 0);
    pid_t server = find_server();
    CHECK(server > 0);
    mproc_process *p = run(t_sleep, a, MPROC_START_FORKSERVER);
    mproc_process *q = run(t_sleep, forever, MPROC_START_FORKSERVER);
    mproc_args_free(forever);
    CHECK_OK(kill(server, SIGKILL));
    CHECK_ERR(mproc_process_join(p, 0.1), -ETIMEDOUT);
    CHECK_EQ(mproc_process_is_alive(p), 1);
    /* The child reports its own code when its target returns. */
    CHECK_EQ(join_code(p), 3);
    /* An orphan can still be stopped (its server is gone, so no one
     * reports how it ended: 255). */
    CHECK_EQ(mproc_process_is_alive(q), 1);
    CHECK_OK(mproc_process_kill(q));
    CHECK_EQ(join_code(q), 255);
    for (int i = 0; i < 3; i++) {
        mproc_args *b = mproc_args_of("i", 5 + i);
        CHECK_EQ(join_code(run(t_return, b, MPROC_START_FORKSERVER)), 5 + i);
        mproc_args_free(b);
    }
    CHECK(find_server() != server);
    mproc_args_free(a);
    /* The orphaned child was reparented to us: reap it. */
    mproc_shutdown();
    reap_adopted();
}

/* True while pid exists and is not a zombie. */
static bool alive_not_zombie(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *st = strrchr(buf, ')');
    if (!st || st[1] != ' ')
        return false;
    if (st[2] != 'Z' && st[2] != 'X')
        return true;
    /* A zombie leader whose other threads (a sanitizer's) still exit
     * keeps its fds open until the last one is gone. */
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    int tasks = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;)
        tasks += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return tasks > 1;
}

/*
 * The fork server keeps one spare child forked ahead of the next start.
 * Between starts it is the server's only child; SIGKILLed there (and
 * dead), the next start forks its child itself and a new spare follows;
 * killed again and again, every start still runs its target and reports
 * its code. After
 * mproc_shutdown nothing is left (the harness checks).
 */
static void test_forkserver_spare_killed(void)
{
    CHECK_EQ(join_code(run(t_return, NULL, MPROC_START_FORKSERVER)), 0);
    pid_t server = find_server();
    CHECK(server > 0);
    for (int i = 0; i < 20; i++) {
        pid_t kids[8];
        int n = 0;
        /* The spare is forked once the reply is sent: wait for it. */
        for (int tries = 0; tries < 2000 && n != 1; tries++) {
            n = children_of(server, kids, 8);
            if (n != 1)
                usleep(1000);
        }
        CHECK_EQ(n, 1);
        if (i % 2 == 0) {
            CHECK_OK(kill(kids[0], SIGKILL));
            /* Dead (a zombie, or reaped) before the next start: a spare
             * killed at the very moment a request is handed to it takes
             * the request with it (docs/process.md). */
            for (int tries = 0; tries < 5000 && alive_not_zombie(kids[0]);
                 tries++)
                usleep(1000);
        }
        mproc_args *a = mproc_args_of("i", 10 + i);
        CHECK_EQ(join_code(run(t_return, a, MPROC_START_FORKSERVER)), 10 + i);
        mproc_args_free(a);
    }
    CHECK(find_server() == server);
}

/*
 * Each process keeps one connection to the fork server for all its
 * starts. The server SIGKILLed while that connection is idle: the next
 * start finds it broken, starts a new server and runs its child; nothing
 * of the old connection is left (fds as before).
 */
static void test_forkserver_killed_while_idle(void)
{
    prctl(PR_SET_CHILD_SUBREAPER, 1); /* the dead server's spare comes to us */
    CHECK_EQ(join_code(run(t_return, NULL, MPROC_START_FORKSERVER)), 0);
    int fds0 = mproc_test_count_fds(); /* pipe, pidfd, the connection */
    for (int round = 0; round < 3; round++) {
        pid_t server = find_server(), kids[8];
        CHECK(server > 0);
        /* Its only child once it has reaped the last one: the spare. */
        int n = 0;
        for (int tries = 0; tries < 5000 && n != 1; tries++)
            if ((n = children_of(server, kids, 8)) != 1)
                usleep(1000);
        CHECK_EQ(n, 1);
        pid_t spare = kids[0];
        CHECK_OK(kill(server, SIGKILL));
        for (int tries = 0; tries < 5000 && alive_not_zombie(server); tries++)
            usleep(1000);
        /* Its spare sees the end of the server and exits: reap it here, so
         * that the only child not a process object is the server again. */
        for (int tries = 0; tries < 5000 && waitpid(spare, NULL, WNOHANG) == 0;
             tries++)
            usleep(1000);
        for (int i = 0; i < 3; i++) {
            mproc_args *a = mproc_args_of("i", 20 + i);
            CHECK_EQ(join_code(run(t_return, a, MPROC_START_FORKSERVER)),
                     20 + i);
            mproc_args_free(a);
        }
        CHECK(find_server() != server);
        CHECK_EQ(mproc_test_count_fds(), fds0);
    }
    mproc_shutdown();
    reap_adopted();
}

/* Bytes that tell where they were cut or mixed up: byte i is seed + 7i. */
static void fill_bytes(unsigned char *b, size_t n, int seed)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(seed + 7 * i);
}

/* Returns its seed (args: seed, bytes, a tpipe) if the bytes came whole,
 * else 200; says its pid on the pipe. */
static int t_check_bytes(const mproc_args *a)
{
    say(a, 2, "%d", (int)getpid());
    int seed = (int)mproc_args_int(a, 0);
    size_t n = 0;
    const unsigned char *b = mproc_args_bytes(a, 1, &n);
    for (size_t i = 0; b && i < n; i++)
        if (b[i] != (unsigned char)(seed + 7 * i))
            return 200;
    return b && n > 0 ? seed : 200;
}

/* n forkserver starts of t_check_bytes with big arguments, each joined;
 * returns 0 when every one came back with its own seed and its process
 * object has the pid the child has, else the index of the first that did
 * not, plus 1. */
static int fs_burst(int n, size_t size, int salt)
{
    unsigned char *buf = malloc(size);
    if (!buf)
        return 1000;
    int bad = 0;
    for (int i = 0; i < n && !bad; i++) {
        int seed = (salt * 31 + i) & 0x7f, pp[2];
        if (pipe2(pp, O_CLOEXEC) < 0) {
            bad = i + 1;
            break;
        }
        tpipe tp = {pp[1]};
        fill_bytes(buf, size, seed);
        mproc_args *a = mproc_args_of("ibo", seed, buf, size, &tpipe_kind, &tp);
        mproc_process *p;
        if (!a || mproc_process_new(&p, t_check_bytes, a) < 0) {
            bad = i + 1;
        } else {
            if (mproc_process_set_start_method(p, MPROC_START_FORKSERVER) < 0 ||
                mproc_process_start(p) < 0 || mproc_process_join(p, 20) < 0 ||
                mproc_process_exitcode(p) != seed)
                bad = i + 1;
            close(pp[1]);
            char said[32];
            slurp(pp[0], said, sizeof said);
            if (!bad && atoi(said) != (int)mproc_process_pid(p))
                bad = i + 1;
            mproc_process_free(p);
        }
        close(pp[0]);
        mproc_args_free(a);
    }
    free(buf);
    return bad;
}

static int t_fs_burst(const mproc_args *a)
{
    return fs_burst(12, 1 << 20, (int)mproc_args_int(a, 0)) ? 1 : 0;
}

/*
 * Fork children of a process that has its connection to the fork server
 * make their own (to the same server) instead of writing on the parent's:
 * the parent and two fork children start forkserver children with 1 MiB
 * arguments at once, each gets its own answers, and the parent's
 * connection still serves it once they are gone.
 */
static void test_forkserver_fork_children_own_connection(void)
{
    CHECK_EQ(join_code(run(t_return, NULL, MPROC_START_FORKSERVER)), 0);
    pid_t server = find_server();
    mproc_process *kids[2];
    for (int k = 0; k < 2; k++) {
        mproc_args *a = mproc_args_of("i", k + 1);
        kids[k] = run(t_fs_burst, a, MPROC_START_FORK);
        mproc_args_free(a);
    }
    CHECK_EQ(fs_burst(12, 1 << 20, 3), 0);
    for (int k = 0; k < 2; k++)
        CHECK_EQ(join_code(kids[k]), 0);
    CHECK_EQ(fs_burst(3, 1 << 20, 4), 0);
    CHECK(find_server() == server); /* theirs too: none of their own */
}

static void *burst_thread(void *arg)
{
    return (void *)(intptr_t)fs_burst(15, 256 << 10, (int)(intptr_t)arg);
}

/*
 * Threads of one process share its connection to the fork server: four
 * start forkserver children with 256 KiB arguments at once, and each
 * child gets its own arguments and each thread its own child.
 */
static void test_forkserver_threads_one_connection(void)
{
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, burst_thread,
                                (void *)(intptr_t)(i + 1)),
                 0);
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        CHECK_EQ((intptr_t)r, 0);
    }
}

/* Connects to our fork server's abstract socket, found in
 * /proc/net/unix by its name's prefix ("@mproc-fs-<our pid>-"). */
static int connect_own_server(void)
{
    char want[64], line[512], name[108] = {0};
    snprintf(want, sizeof want, "@mproc-fs-%d-", (int)getpid());
    FILE *f = fopen("/proc/net/unix", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        char *at = strstr(line, want);
        if (at) {
            at[strcspn(at, " \n")] = 0;
            snprintf(name, sizeof name, "%s", at);
            break;
        }
    }
    fclose(f);
    if (!name[0])
        return -1;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t n = strlen(name);
    memcpy(addr.sun_path, name, n);
    addr.sun_path[0] = 0;
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s >= 0 &&
        connect(s, (struct sockaddr *)&addr,
                (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0) {
        close(s);
        s = -1;
    }
    return s;
}

/*
 * The fork server keeps the connections of its requesters open between
 * requests. Peers (same uid) that send it garbage, half a header, a start
 * request whose fd count lies or an absurd length, or that connect and
 * send nothing, lose their connection (or keep an idle one) and nothing
 * else: the server lives on and our starts work throughout.
 */
static void test_forkserver_hostile_peers(void)
{
    CHECK_EQ(join_code(run(t_return, NULL, MPROC_START_FORKSERVER)), 0);
    pid_t server = find_server();
    int idle = connect_own_server();
    CHECK(idle >= 0);
    struct {
        uint32_t magic, nfds;
        uint64_t len;
    } lies[] = {
        {0x6d706673, 3, 8},          /* says 3 fds, has none */
        {0x6d706673, 0, 8},          /* a start with no report pipe */
        {0x6d706673, 1, 1ull << 40}, /* absurd length */
        {0x6d70666b, 0, 12},         /* a kill of the wrong size */
        {0x12345678, 0, 0},          /* no such request */
    };
    for (size_t i = 0; i < sizeof lies / sizeof lies[0] + 2; i++) {
        int s = connect_own_server();
        CHECK(s >= 0);
        if (i < sizeof lies / sizeof lies[0]) {
            CHECK_EQ(write(s, &lies[i], sizeof lies[i]), sizeof lies[i]);
        } else if (i == sizeof lies / sizeof lies[0]) {
            CHECK_EQ(write(s, "mpf", 3), 3); /* half a header, then gone */
        } else {
            unsigned char junk[4096];
            fill_bytes(junk, sizeof junk, 99);
            CHECK_EQ(write(s, junk, sizeof junk), sizeof junk);
        }
        /* The server drops the connection: end of file, or a reset when
         * it had unread bytes. */
        char c;
        struct pollfd pf = {s, POLLIN, 0};
        CHECK_EQ(poll(&pf, 1, 20000), 1);
        CHECK(read(s, &c, 1) <= 0);
        close(s);
        mproc_args *a = mproc_args_of("i", 40 + (int)i);
        CHECK_EQ(join_code(run(t_return, a, MPROC_START_FORKSERVER)),
                 40 + (int)i);
        mproc_args_free(a);
    }
    CHECK(find_server() == server);
    close(idle);
}

/* ---- set_executable, set_forkserver_preload -------------------------------
 */

static int t_seven(const mproc_args *a)
{
    (void)a;
    return 7;
}

static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
    CHECK(in >= 0 && out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        CHECK_EQ(write(out, buf, (size_t)n), n);
    CHECK_EQ(n, 0);
    close(in);
    close(out);
}

/* Spawn children exec the program set_executable names; fork and the fork
 * server are not concerned; a program that cannot boot the child fails
 * start cleanly. */
static void test_set_executable(void)
{
    char self[4096], dir[] = "/tmp/mproc-exe-XXXXXX", copy[4200], link2[4200];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(n > 0);
    self[n] = 0;
    CHECK(mkdtemp(dir) != NULL);
    snprintf(copy, sizeof copy, "%s/copy", dir);
    copy_file(self, copy);
    char plain[4200];
    snprintf(plain, sizeof plain, "%s/plain", dir);
    int pf = open(plain, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    CHECK(pf >= 0);
    close(pf);

    CHECK_ERR(mproc_set_executable(""), -EINVAL);
    CHECK_ERR(mproc_set_executable("/nonexistent/program"), -ENOENT);
    CHECK_ERR(mproc_set_executable(dir), -EACCES); /* a directory */
    if (geteuid() != 0 || access(plain, X_OK) != 0)
        CHECK_ERR(mproc_set_executable(plain), -EACCES);

    /* Another program: targets in shared libraries both load resolve. */
    CHECK_OK(mproc_set_executable(copy));
    mproc_args *a = mproc_args_of("s", copy);
    CHECK_EQ(join_code(run(mproc_testlib_exe_is, a, MPROC_START_SPAWN)), 0);
    mproc_args_free(a);
    a = mproc_args_of("i", 1);
    CHECK_EQ(join_code(run(mproc_testlib_target, a, MPROC_START_SPAWN)), 41);
    mproc_args_free(a);
    /* ... but a function of this executable is not in that program.
     * Not under valgrind: there a stat of /proc/self/exe finds valgrind's
     * tool binary in every program (only readlink of it is emulated), so
     * the two programs look like one. */
    int fds0 = mproc_test_count_fds();
    mproc_process *p;
    if (!mproc_test_under_valgrind()) {
        CHECK_OK(mproc_process_new(&p, t_seven, NULL));
        CHECK_OK(mproc_process_set_start_method(p, MPROC_START_SPAWN));
        CHECK_ERR(mproc_process_start(p), MPROC_ERESOLVE);
        mproc_process_free(p);
    }
    CHECK_EQ(mproc_active_children(NULL, 0), 0);
    CHECK_EQ(mproc_test_count_fds(), fds0);
    /* Fork and forkserver children are this program still. */
    a = mproc_args_of("s", self);
    CHECK_EQ(join_code(run(mproc_testlib_exe_is, a, MPROC_START_FORK)), 0);
    CHECK_EQ(join_code(run(mproc_testlib_exe_is, a, MPROC_START_FORKSERVER)),
             0);
    CHECK_EQ(join_code(run(t_seven, NULL, MPROC_START_FORKSERVER)), 7);
    mproc_args_free(a);

    /* This very program under another name: everything resolves. */
    snprintf(link2, sizeof link2, "%s/link", dir);
    bool linked = link(self, link2) == 0;
    if (!linked) { /* another file system: next to the program */
        snprintf(link2, sizeof link2, "%s.mproc-link-%d", self, (int)getpid());
        linked = link(self, link2) == 0;
    }
    if (linked) {
        CHECK_OK(mproc_set_executable(link2));
        CHECK_EQ(join_code(run(t_seven, NULL, MPROC_START_SPAWN)), 7);
        a = mproc_args_of("s", link2);
        CHECK_EQ(join_code(run(mproc_testlib_exe_is, a, MPROC_START_SPAWN)), 0);
        mproc_args_free(a);
        CHECK_EQ(unlink(link2), 0);
    } else {
        printf("     (no hard link possible: that part skipped)\n");
    }

    /* Not an mproc program: it exits without booting. */
    fds0 = mproc_test_count_fds(); /* the fork server's are open now */
    CHECK_OK(mproc_set_executable("/bin/true"));
    CHECK_OK(mproc_process_new(&p, t_seven, NULL));
    CHECK_OK(mproc_process_set_start_method(p, MPROC_START_SPAWN));
    CHECK_ERR(mproc_process_start(p), MPROC_EBOOTSTRAP);
    CHECK_EQ(mproc_process_pid(p), 0);
    mproc_process_free(p);
    CHECK_EQ(mproc_active_children(NULL, 0), 0);
    CHECK_EQ(mproc_test_count_fds(), fds0);

    /* NULL: back to this program. */
    CHECK_OK(mproc_set_executable(NULL));
    CHECK_EQ(join_code(run(t_seven, NULL, MPROC_START_SPAWN)), 7);
    CHECK_EQ(unlink(copy), 0);
    CHECK_EQ(unlink(plain), 0);
    CHECK_EQ(rmdir(dir), 0);
}

/* 0 when libmproc_testpreload is loaded here and its constructor ran
 * once, in this process's parent (the fork server); 1 when it is not
 * loaded. */
static int t_preloaded(const mproc_args *a)
{
    (void)a;
    void *h = dlopen(MPROC_TESTPRELOAD, RTLD_NOW | RTLD_NOLOAD);
    if (!h)
        return 1;
    const int *pid = dlsym(h, "mproc_testpreload_ctor_pid");
    const int *runs = dlsym(h, "mproc_testpreload_ctor_runs");
    int r = !pid || !runs            ? 2
            : *runs != 1             ? 3
            : *pid == (int)getpid()  ? 4
            : *pid != (int)getppid() ? 5
                                     : 0;
    dlclose(h);
    return r;
}

static void test_forkserver_preload(void)
{
    const char *bad[] = {"libmproc-no-such-library.so", NULL};
    CHECK_ERR(mproc_set_forkserver_preload(NULL, 1), -EINVAL);
    CHECK_ERR(mproc_set_forkserver_preload(bad, 2), -EINVAL);
    const char *empty[] = {""};
    CHECK_ERR(mproc_set_forkserver_preload(empty, 1), -EINVAL);
    CHECK_OK(mproc_set_forkserver_preload(NULL, 0));
    CHECK_EQ(join_code(run(t_preloaded, NULL, MPROC_START_FORKSERVER)), 1);

    /* Set while a server runs: the next server loads them. One does not
     * exist: skipped with a DEBUG line. */
    const char *names[] = {"libmproc-no-such-library.so", MPROC_TESTPRELOAD};
    CHECK_OK(mproc_set_forkserver_preload(names, 2));
    CHECK_EQ(join_code(run(t_preloaded, NULL, MPROC_START_FORKSERVER)), 1);
    mproc_shutdown(); /* stops the server */
    int pp[2];
    CHECK_OK(pipe2(pp, O_CLOEXEC));
    CHECK_OK(mproc_log_to_fd(pp[1], MPROC_LOG_DEBUG));
    for (int i = 0; i < 3; i++) /* each child warm, the constructor once */
        CHECK_EQ(join_code(run(t_preloaded, NULL, MPROC_START_FORKSERVER)), 0);
    CHECK_EQ(join_code(run(t_preloaded, NULL, MPROC_START_SPAWN)), 1);
    CHECK_EQ(join_code(run(t_preloaded, NULL, MPROC_START_FORK)), 1);
    CHECK_OK(mproc_log_to_fd(-1, 0));
    close(pp[1]);
    mproc_shutdown(); /* the server lets go of the log pipe */
    char buf[8192];
    slurp(pp[0], buf, sizeof buf);
    close(pp[0]);
    CHECK(strstr(buf, "[DEBUG/ForkServer] fork server preload of "
                      "libmproc-no-such-library.so failed, ignored"));

    /* Cleared: the next server loads nothing. */
    CHECK_OK(mproc_set_forkserver_preload(names, 0));
    CHECK_EQ(join_code(run(t_preloaded, NULL, MPROC_START_FORKSERVER)), 1);
}

/* ---- waiting, active children ---------------------------------------------
 */

static void test_wait_sentinels(void)
{
    for (int m = 0; m < 3; m++) {
        mproc_args *slow = mproc_args_of("d", 5.0),
                   *fast = mproc_args_of("d", 0.05);
        mproc_process *ps = run(t_sleep, slow, mproc_test_methods[m]);
        mproc_process *pf = run(t_sleep, fast, mproc_test_methods[m]);
        mproc_args_free(slow);
        mproc_args_free(fast);
        int fds[2] = {mproc_process_sentinel(ps), mproc_process_sentinel(pf)};
        CHECK(fds[0] >= 0 && fds[1] >= 0);
        int ready[2];
        CHECK_EQ(mproc_wait(fds, 2, 0, ready), 0);
        CHECK_EQ(mproc_wait(fds, 2, 10, ready), 1);
        CHECK_EQ(ready[0], 0);
        CHECK_EQ(ready[1], 1);
        CHECK_EQ(mproc_process_is_alive(pf), 0);
        CHECK_EQ(mproc_active_children(NULL, 0), 1);
        mproc_process *v[4];
        CHECK_EQ(mproc_active_children(v, 4), 1);
        CHECK(v[0] == ps);
        mproc_process_free(v[0]);
        CHECK_OK(mproc_process_terminate(ps));
        CHECK_EQ(join_code(ps), -SIGTERM);
        CHECK_EQ(join_code(pf), 3);
        CHECK_EQ(mproc_active_children(NULL, 0), 0);
    }
    int bad[1] = {-1};
    CHECK_ERR(mproc_wait(bad, 1, 0, NULL), -EINVAL);
}

/* A process object freed while running is still reaped by
 * active_children, as Python keeps Process objects alive. */
static void test_free_running_then_reap(void)
{
    mproc_args *a = mproc_args_of("d", 0.05);
    mproc_process *p = run(t_sleep, a, MPROC_START_FORK);
    mproc_args_free(a);
    mproc_process_free(p);
    double t0 = mproc_test_now();
    while (mproc_active_children(NULL, 0) > 0 && mproc_test_now() - t0 < 10)
        usleep(10000);
    CHECK_EQ(mproc_active_children(NULL, 0), 0);
}

/* A fork child inherits its parent's process objects: they are its
 * siblings, not its children. */
static mproc_process *g_sibling;

static int t_touch_sibling(const mproc_args *a)
{
    if (mproc_process_join(g_sibling, 0) != -ECHILD ||
        mproc_process_kill(g_sibling) != -ECHILD ||
        mproc_process_is_alive(g_sibling) != 0 ||
        mproc_active_children(NULL, 0) != 0)
        return 1;
    /* Fds of our own, on the lowest free numbers (which fds the parent
     * kept for the sibling, closed in us at fork, may have had). */
    int mine[8];
    for (int i = 0; i < 8; i++)
        mine[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    /* The child's copy: touches nothing of others'. */
    if (mproc_process_close(g_sibling) != 0)
        return 3;
    mproc_process_free(g_sibling);
    for (int i = 0; i < 8; i++)
        if (mine[i] < 0 || fcntl(mine[i], F_GETFD) < 0)
            return 2;
    return 0;
}

static void test_fork_child_siblings(void)
{
    mproc_args *a = mproc_args_of("d", 30.0);
    g_sibling = run(t_sleep, a, MPROC_START_FORK);
    mproc_args_free(a);
    CHECK_EQ(join_code(run(t_touch_sibling, NULL, MPROC_START_FORK)), 0);
    CHECK_EQ(mproc_process_is_alive(g_sibling), 1);
    CHECK_OK(mproc_process_kill(g_sibling));
    CHECK_EQ(join_code(g_sibling), -SIGKILL);
}

/* ---- threads ------------------------------------------------------------- */

static void *thread_starter(void *arg)
{
    mproc_start_method m = (mproc_start_method)(intptr_t)arg;
    for (int i = 0; i < 20; i++) {
        mproc_args *a = mproc_args_of("i", i);
        mproc_process *p;
        if (mproc_process_new(&p, t_return, a) < 0 ||
            mproc_process_set_start_method(p, m) < 0 ||
            mproc_process_start(p) < 0 || mproc_process_join(p, 20) < 0 ||
            mproc_process_exitcode(p) != i)
            return (void *)1;
        mproc_process_free(p);
        mproc_args_free(a);
    }
    return NULL;
}

static void test_threads_start_concurrently(void)
{
    pthread_t t[6];
    for (int i = 0; i < 6; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, thread_starter,
                                (void *)(intptr_t)mproc_test_methods[i % 3]),
                 0);
    for (int i = 0; i < 6; i++) {
        void *r;
        pthread_join(t[i], &r);
        CHECK(r == NULL);
    }
}

/* ---- logging --------------------------------------------------------------
 */

static int t_log(const mproc_args *a)
{
    mproc_info("hello from %s", "child");
    mproc_debug("not shown");
    return 0;
}

static void test_logging_reaches_children(void)
{
    for (int m = 0; m < 3; m++) {
        int pp[2];
        CHECK_OK(pipe2(pp, O_CLOEXEC));
        CHECK_OK(mproc_log_to_fd(pp[1], MPROC_LOG_INFO));
        mproc_process *p;
        CHECK_OK(mproc_process_new(&p, t_log, NULL));
        CHECK_OK(mproc_process_set_name(p, "Logger"));
        CHECK_OK(mproc_process_set_start_method(p, mproc_test_methods[m]));
        CHECK_OK(mproc_process_start(p));
        CHECK_OK(mproc_process_join(p, 10));
        mproc_process_free(p);
        mproc_log(MPROC_LOG_WARNING, "parent %d", 5);
        CHECK_OK(mproc_log_to_fd(-1, 0));
        close(pp[1]);
        char buf[1024];
        slurp(pp[0], buf, sizeof buf);
        close(pp[0]);
        /* The library's own INFO lines may appear too; ours must. */
        CHECK(strstr(buf, "[INFO/Logger] hello from child\n"));
        CHECK(strstr(buf, "[WARNING/MainProcess] parent 5\n"));
        CHECK(!strstr(buf, "not shown"));
    }
    CHECK_STR(mproc_log_level_name(MPROC_LOG_SUBDEBUG), "SUBDEBUG");
}

/* A log level set without a log fd is inherited under every method. */
static int t_level(const mproc_args *a)
{
    (void)a;
    return mproc_log_get_level();
}

static void test_log_level_inherited(void)
{
    CHECK_OK(mproc_log_to_fd(-1, 0));
    CHECK_OK(mproc_log_set_level(MPROC_LOG_DEBUG));
    for (int m = 0; m < 3; m++) {
        mproc_process *p = run(t_level, NULL, mproc_test_methods[m]);
        CHECK_EQ(join_code(p), MPROC_LOG_DEBUG);
    }
    CHECK_OK(mproc_log_set_level(MPROC_LOG_OFF));
}

/* The very first thing a program does is log: its name is there. This
 * test binary re-run with MPROC_TEST_LOG_FIRST logs from a constructor,
 * before main() and before any other call into mproc. */
__attribute__((constructor)) static void log_first(void)
{
    if (!getenv("MPROC_TEST_LOG_FIRST"))
        return;
    mproc_log_to_fd(1, MPROC_LOG_INFO);
    mproc_log(MPROC_LOG_WARNING, "first words");
    mproc_test_exit(0);
}

static void test_log_first_line_named(void)
{
    int pp[2];
    CHECK_OK(pipe2(pp, O_CLOEXEC));
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pp[1], 1);
        setenv("MPROC_TEST_LOG_FIRST", "1", 1);
        /* (By its name: valgrind cannot exec /proc/self/exe.) */
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        self[n > 0 ? n : 0] = 0;
        execl(self, "test_process", (char *)NULL);
        mproc_test_exit(127);
    }
    close(pp[1]);
    char buf[256];
    slurp(pp[0], buf, sizeof buf);
    close(pp[0]);
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_STR(buf, "[WARNING/MainProcess] first words\n");
}

/* ---- finalizers ------------------------------------------------------------
 */

static char g_fin_path[256];

/* Appends the letter arg points at to g_fin_path. */
static void fin_note(void *arg)
{
    int fd = open(g_fin_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
        (void)!write(fd, arg, 1);
        close(fd);
    }
}

static mproc_process *g_fin_kid;

/* Notes whether the child g_fin_kid is still running. */
static void fin_kid_state(void *arg)
{
    (void)arg;
    fin_note(mproc_process_exitcode(g_fin_kid) == MPROC_EXITCODE_NONE ? "r"
                                                                      : "j");
}

static int t_nap(const mproc_args *a)
{
    (void)a;
    usleep(300000);
    return 0;
}

/* Registers finalizers of mixed priorities with a child still running,
 * then returns: they run at the child's exit in order. */
static int t_finalizers(const mproc_args *a)
{
    snprintf(g_fin_path, sizeof g_fin_path, "%s", mproc_args_str(a, 0));
    mproc_process *kid;
    if (mproc_process_new(&kid, t_nap, NULL) || mproc_process_start(kid))
        return 1;
    g_fin_kid = kid;
    mproc_finalize(fin_note, "A", 10);
    mproc_finalize(fin_note, "B", 0);
    mproc_finalize(fin_note, "C", -1);
    mproc_finalize(fin_note, "D", 10);
    mproc_finalize(fin_kid_state, NULL, 0);  /* before the join: "r" */
    mproc_finalize(fin_kid_state, NULL, -5); /* after it: "j" */
    int gone = mproc_finalize(fin_note, "X", 3);
    if (mproc_finalize_cancel(gone) != 0 ||
        mproc_finalize_cancel(gone) != -ENOENT)
        return 2;
    int now = mproc_finalize(fin_note, "N", 1);
    if (mproc_finalize_now(now) != 0 || mproc_finalize_now(now) != -ENOENT)
        return 3;
    return 0;
}

static void slurp_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? 0 : read(fd, buf, cap - 1);
    buf[n > 0 ? n : 0] = 0;
    if (fd >= 0)
        close(fd);
}

static void test_finalizers(void)
{
    /* The parent's own finalizer is not inherited by its children. */
    snprintf(g_fin_path, sizeof g_fin_path, "/tmp/mproc-fin-%d", (int)getpid());
    int mine = mproc_finalize(fin_note, "P", 0);
    CHECK(mine > 0);
    CHECK_ERR(mproc_finalize(NULL, NULL, 0), -EINVAL);
    for (int m = 0; m < 3; m++) {
        char path[64], got[64];
        snprintf(path, sizeof path, "/tmp/mproc-fin-%d-%d", (int)getpid(), m);
        unlink(path);
        mproc_args *a = mproc_args_of("s", path);
        mproc_process *p = run(t_finalizers, a, mproc_test_methods[m]);
        mproc_args_free(a);
        CHECK_EQ(join_code(p), 0);
        slurp_file(path, got, sizeof got);
        unlink(path);
        /* N ran at once; then 10 (newest first), 0 (newest first), and
         * after the child was joined -1, -5. */
        CHECK_STR(got, "NDArBCj");
    }
    CHECK_OK(mproc_finalize_cancel(mine));
}

/* Pool workers that exit normally run their finalizers too. */
static int fin_init(const mproc_args *a)
{
    snprintf(g_fin_path, sizeof g_fin_path, "%s", mproc_args_str(a, 0));
    return mproc_finalize(fin_note, "W", 0) > 0 ? 0 : 1;
}

static int fin_task(const void *in, size_t len, mproc_out *out)
{
    return mproc_out_write(out, in, len);
}

static void test_finalizers_in_pool_workers(void)
{
    for (int m = 0; m < 3; m++) {
        char path[64], got[64];
        snprintf(path, sizeof path, "/tmp/mproc-finpool-%d-%d", (int)getpid(),
                 m);
        unlink(path);
        mproc_args *a = mproc_args_of("s", path);
        mproc_pool_opts o = {.processes = 2,
                             .method = mproc_test_methods[m],
                             .initializer = fin_init,
                             .initargs = a};
        mproc_pool *pool;
        CHECK_OK(mproc_pool_new(&pool, &o));
        int x = 7;
        mproc_iov items[4] = {
            {&x, sizeof x}, {&x, sizeof x}, {&x, sizeof x}, {&x, sizeof x}};
        mproc_results *r = NULL;
        CHECK_OK(mproc_pool_map(pool, fin_task, items, 4, NULL, &r));
        mproc_results_free(r);
        CHECK_OK(mproc_pool_close(pool));
        CHECK_OK(mproc_pool_join(pool, 20));
        mproc_pool_free(pool);
        mproc_args_free(a);
        slurp_file(path, got, sizeof got);
        unlink(path);
        CHECK_STR(got, "WW");
    }
}

/* ---- affinity, nice, cpu counts -------------------------------------------
 */

static void test_affinity_and_nice(void)
{
    CHECK(mproc_cpu_count() >= 1);
    int n = mproc_cpu_count_usable();
    CHECK(n >= 1 && n <= mproc_cpu_count());
    int cpus[64];
    int k = mproc_affinity_get(0, cpus, 64);
    CHECK_EQ(k, n);
    mproc_args *a = mproc_args_of("d", 30.0);
    mproc_process *p = run(t_sleep, a, MPROC_START_FORK);
    mproc_args_free(a);
    pid_t pid = mproc_process_pid(p);
    int one = cpus[k - 1];
    CHECK_OK(mproc_affinity_set(pid, &one, 1));
    int got[64];
    CHECK_EQ(mproc_affinity_get(pid, got, 64), 1);
    CHECK_EQ(got[0], one);
    CHECK_OK(mproc_nice_set(pid, 5));
    int nv = 0;
    CHECK_OK(mproc_nice_get(pid, &nv));
    CHECK_EQ(nv, 5);
    CHECK_ERR(mproc_affinity_set(pid, NULL, 0), -EINVAL);
    int badcpu = 100000;
    CHECK_ERR(mproc_affinity_set(pid, &badcpu, 1), -EINVAL);
    CHECK_ERR(mproc_nice_set(pid, 99), -EINVAL);
    CHECK_OK(mproc_process_kill(p));
    CHECK_EQ(join_code(p), -SIGKILL);
}

/* ---- bad input --------------------------------------------------------------
 */

static void test_bad_input(void)
{
    mproc_process *p;
    CHECK_ERR(mproc_process_new(NULL, t_return, NULL), -EINVAL);
    CHECK_ERR(mproc_process_new(&p, NULL, NULL), -EINVAL);
    CHECK_ERR(mproc_process_start(NULL), -EINVAL);
    CHECK_ERR(mproc_process_join(NULL, 0), -EINVAL);
    CHECK_ERR(mproc_process_kill(NULL), -EINVAL);
    CHECK_EQ(mproc_process_is_alive(NULL), 0);
    mproc_process_free(NULL);
    CHECK_OK(mproc_process_new(&p, t_return, NULL));
    CHECK_ERR(mproc_process_join(p, 0), MPROC_ENOTSTARTED);
    CHECK_ERR(mproc_process_terminate(p), MPROC_ENOTSTARTED);
    CHECK_ERR(mproc_process_sentinel(p), MPROC_ENOTSTARTED);
    CHECK_ERR(mproc_process_set_start_method(p, (mproc_start_method)9),
              -EINVAL);
    CHECK_ERR(mproc_process_set_name(p, NULL), -EINVAL);
    CHECK_OK(mproc_process_start(p));
    CHECK_ERR(mproc_process_start(p), MPROC_ESTARTED);
    CHECK_ERR(mproc_process_set_name(p, "x"), MPROC_ESTARTED);
    CHECK_ERR(mproc_process_set_daemon(p, 1), MPROC_ESTARTED);
    CHECK_EQ(join_code(p), 0);
    CHECK_ERR(mproc_set_start_method((mproc_start_method)0), -EINVAL);
    mproc_start_method sm;
    CHECK_OK(mproc_start_method_parse("forkserver", &sm));
    CHECK_EQ(sm, MPROC_START_FORKSERVER);
    CHECK_ERR(mproc_start_method_parse("vfork", &sm), -EINVAL);
    CHECK_ERR(mproc_set_authkey("", 0), -EINVAL);
    CHECK(mproc_args_of("q", 1) == NULL);
    CHECK(mproc_args_of("s", (const char *)NULL) == NULL);
    CHECK_ERR(mproc_process_join(mproc_current_process(), 0), -EDEADLK);
    CHECK_STR(mproc_strerror(MPROC_ERESOLVE),
              "target cannot be resolved in the new process");
    CHECK_STR(mproc_errname(-ETIMEDOUT), "ETIMEDOUT");
    CHECK_STR(mproc_errname(MPROC_EAUTH), "MPROC_EAUTH");
    CHECK_STR(mproc_errname(-99999), "UNKNOWN");
}

/* A target that is not code in any loaded object cannot be found across
 * exec: start says so and leaves nothing behind. */
static void test_unresolvable_target(void)
{
    void *heap = malloc(64);
    for (int m = 1; m < 3; m++) {
        mproc_process *p;
        int fds0 = mproc_test_count_fds();
        CHECK_OK(mproc_process_new(&p, (mproc_target)heap, NULL));
        CHECK_OK(mproc_process_set_start_method(p, mproc_test_methods[m]));
        CHECK_ERR(mproc_process_start(p), MPROC_ERESOLVE);
        CHECK_EQ(mproc_process_pid(p), 0);
        CHECK_EQ(mproc_active_children(NULL, 0), 0);
        mproc_process_free(p);
        if (m == 1)
            CHECK_EQ(mproc_test_count_fds(), fds0);
    }
    free(heap);
}

/* A kind whose import fails in the child (say, the mapping cannot be made
 * there). Under spawn start reports the kind's error and reaps the child;
 * the fork server validates before it forks but the import itself happens
 * in the child, which then exits with 255 without running the target;
 * under fork there is no import at all. Nothing is left behind. */
static int fail_import(mproc_import *im, void **out)
{
    int fd = mproc_import_fd(im);
    if (fd >= 0)
        close(fd);
    return -ENOTRECOVERABLE;
}

static const mproc_kind failing_kind = {"test-failing", tpipe_export,
                                        fail_import, tpipe_free};

static int t_never(const mproc_args *a)
{
    return 9;
}

static void test_import_failure(void)
{
    int pp[2];
    CHECK_OK(pipe2(pp, O_CLOEXEC));
    tpipe tp = {pp[1]};
    mproc_args *a = mproc_args_of("o", &failing_kind, &tp);
    int fds0 = mproc_test_count_fds();
    mproc_process *p;
    CHECK_OK(mproc_process_new(&p, t_never, a));
    CHECK_OK(mproc_process_set_start_method(p, MPROC_START_SPAWN));
    CHECK_ERR(mproc_process_start(p), -ENOTRECOVERABLE);
    CHECK_EQ(mproc_active_children(NULL, 0), 0);
    CHECK_EQ(mproc_test_count_fds(), fds0);
    mproc_process_free(p);
    CHECK_EQ(join_code(run(t_never, a, MPROC_START_FORKSERVER)), 255);
    CHECK_EQ(join_code(run(t_never, a, MPROC_START_FORK)), 9);
    mproc_args_free(a);
    close(pp[0]);
    close(pp[1]);
}

/* Out of fds: start fails cleanly with -EMFILE and leaks nothing. */
static void test_fd_exhaustion(void)
{
    for (int m = 0; m < 3; m++) {
        mproc_process *p0 = run(t_return, NULL, mproc_test_methods[m]);
        CHECK_EQ(join_code(p0), 0); /* the fork server, if any, is up */
        struct rlimit old, lim;
        getrlimit(RLIMIT_NOFILE, &old);
        int fds0 = mproc_test_count_fds();
        int fill[64], nfill = 0;
        lim = old;
        lim.rlim_cur = (rlim_t)fds0 + 2;
        CHECK_OK(setrlimit(RLIMIT_NOFILE, &lim));
        while (nfill < 64) {
            int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                break;
            fill[nfill++] = fd;
        }
        mproc_process *p;
        CHECK_OK(mproc_process_new(&p, t_return, NULL));
        CHECK_OK(mproc_process_set_start_method(p, mproc_test_methods[m]));
        CHECK_ERR(mproc_process_start(p), -EMFILE);
        for (int i = 0; i < nfill; i++)
            close(fill[i]);
        CHECK_EQ(mproc_test_count_fds(), fds0);
        CHECK_OK(setrlimit(RLIMIT_NOFILE, &old));
        CHECK_OK(mproc_process_start(p)); /* and it can be retried */
        CHECK_EQ(join_code(p), 0);
    }
}

/* ---- without pidfds
 * ----------------------------------------------------------
 *
 * Where there are none (valgrind, kernels before 5.3) the library falls
 * back to pipes and pids. The ctest entries *_nopidfd run every test of
 * this program so (MPROC_NO_PIDFD=1); the tests below hold either way.
 */

/* Reads exactly n bytes from fd within timeout seconds; false if not. */
static bool read_within(int fd, void *buf, size_t n, double timeout)
{
    size_t got = 0;
    double t0 = mproc_test_now();
    while (got < n) {
        int ms = (int)((timeout - (mproc_test_now() - t0)) * 1000);
        struct pollfd p = {fd, POLLIN, 0};
        if (ms <= 0 || poll(&p, 1, ms) != 1)
            return false;
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

/* Starts fn(tpipe, x) under m; stores the read end of the tpipe's pipe,
 * which reads what the child says. */
static mproc_process *run_said(mproc_target fn, mproc_start_method m, int x,
                               int *rd)
{
    int pp[2];
    CHECK_OK(pipe2(pp, O_CLOEXEC));
    tpipe tp = {pp[1]};
    mproc_args *a = mproc_args_of("oi", &tpipe_kind, &tp, x);
    mproc_process *p = run(fn, a, m);
    mproc_args_free(a);
    close(pp[1]);
    *rd = pp[0];
    return p;
}

/* Makes pidfd_open and pidfd_send_signal fail with ENOSYS for this
 * process and all it starts, as a kernel without them would. */
static int deny_pidfds(void)
{
#ifdef __x86_64__
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pidfd_open, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pidfd_send_signal, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
    };
    struct sock_fprog prog = {(unsigned short)(sizeof f / sizeof f[0]), f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
        return -errno;
    return 0;
#else
    return -ENOTSUP;
#endif
}

/* Reports whether its parent looks alive, by is_alive and its sentinel. */
static int t_parent_alive(const mproc_args *a)
{
    mproc_process *par = mproc_parent_process();
    int fd = par ? mproc_process_sentinel(par) : -1;
    int ready = 0;
    if (fd < 0 || mproc_wait(&fd, 1, 0, &ready) != 0)
        return 2;
    return mproc_process_is_alive(par) == 1 ? 0 : 3;
}

/* On a kernel without pidfds, found by the library itself (no
 * MPROC_NO_PIDFD): every start method still starts, joins, waits on
 * sentinels and kills, and children still see their parent. */
static void test_kernel_without_pidfds(void)
{
    int r = deny_pidfds();
    if (r < 0)
        SKIP("no seccomp filter here");
    CHECK(mproc_test_no_pidfd());
    for (int m = 0; m < 3; m++) {
        mproc_start_method sm = mproc_test_methods[m];
        mproc_args *a = mproc_args_of("i", 7 + m);
        CHECK_EQ(join_code(run(t_return, a, sm)), 7 + m);
        mproc_args_free(a);
        CHECK_EQ(join_code(run(t_parent_alive, NULL, sm)), 0);
        a = mproc_args_of("d", 30.0);
        mproc_process *p = run(t_sleep, a, sm);
        mproc_args_free(a);
        int fd = mproc_process_sentinel(p), ready = 0;
        CHECK(fd >= 0);
        CHECK_EQ(mproc_wait(&fd, 1, 0.05, &ready), 0);
        CHECK_OK(mproc_process_kill(p));
        CHECK_EQ(mproc_wait(&fd, 1, 10, &ready), 1);
        CHECK_EQ(mproc_process_is_alive(p), 0);
        CHECK_EQ(join_code(p), -SIGKILL);
    }
}

/* Forks (plainly, as a library might) a grandchild that outlives us and
 * reports its pid. */
static int t_leave_grandchild(const mproc_args *a)
{
    pid_t g = fork();
    if (g == 0) {
        for (;;)
            pause();
    }
    say(a, 0, "%08d", (int)g);
    return 4;
}

/* A child's sentinel tells that the child ended even when a grandchild it
 * forked lives on (without pidfds: the grandchild must not keep the
 * child's end of the sentinel pipe). */
static void test_sentinel_despite_grandchild(void)
{
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    for (int m = 0; m < 3; m++) {
        int rd;
        mproc_process *p =
            run_said(t_leave_grandchild, mproc_test_methods[m], 0, &rd);
        char buf[9] = "";
        CHECK(read_within(rd, buf, 8, 20));
        close(rd);
        pid_t g = atoi(buf);
        CHECK(g > 0);
        int fd = mproc_process_sentinel(p), ready = 0;
        CHECK_EQ(mproc_wait(&fd, 1, 10, &ready), 1);
        CHECK_EQ(join_code(p), 4);
        CHECK(kill(g, 0) == 0); /* still there, and adopted by us */
        kill(g, SIGKILL);
        CHECK_EQ(waitpid(g, NULL, 0), g);
    }
}

/* Waits for its parent's sentinel, then says how that went. */
static int t_watch_parent(const mproc_args *a)
{
    mproc_process *par = mproc_parent_process();
    int fd = par ? mproc_process_sentinel(par) : -1, ready = 0;
    if (fd < 0 || mproc_process_is_alive(par) != 1)
        return 2;
    say(a, 0, "w");
    bool gone =
        mproc_wait(&fd, 1, 30, &ready) == 1 && mproc_process_is_alive(par) == 0;
    say(a, 0, "%s", gone ? "gone" : "stuck");
    return 0;
}

/* A parent that starts a watcher under method m and then a long sleeper
 * by fork, reports both pids, and waits to be killed. */
static int t_watched_parent(const mproc_args *a)
{
    tpipe *t = mproc_args_object(a, 0, &tpipe_kind);
    mproc_process *w, *s;
    mproc_args *sa = mproc_args_of("d", 30.0);
    if (!t || mproc_process_new(&w, t_watch_parent, a) < 0 ||
        mproc_process_set_start_method(
            w, (mproc_start_method)mproc_args_int(a, 1)) < 0 ||
        mproc_process_start(w) < 0 || mproc_process_new(&s, t_sleep, sa) < 0 ||
        mproc_process_set_start_method(s, MPROC_START_FORK) < 0 ||
        mproc_process_start(s) < 0)
        return 1;
    say(a, 0, "%08d%08d", (int)mproc_process_pid(w), (int)mproc_process_pid(s));
    pause();
    return 0;
}

/* A child sees its parent die (parent_process' sentinel and is_alive)
 * even while a sibling forked after it lives on (without pidfds: the
 * sibling must not keep the parent's end of the child's pipe). */
static void test_parent_death_seen_past_siblings(void)
{
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    for (int m = 0; m < 3; m++) {
        int rd;
        mproc_process *p = run_said(t_watched_parent, MPROC_START_FORK,
                                    (int)mproc_test_methods[m], &rd);
        /* "w" (the watcher runs) and the two pids, in either order. */
        char buf[32] = "";
        CHECK(read_within(rd, buf, 1 + 16, 20));
        char *pids = buf[0] == 'w' ? buf + 1 : buf;
        CHECK(buf[0] == 'w' || buf[16] == 'w');
        pids[16] = 0;
        pid_t s = atoi(pids + 8);
        pids[8] = 0;
        pid_t w = atoi(pids);
        CHECK(w > 0 && s > 0);
        CHECK_OK(mproc_process_kill(p));
        CHECK_EQ(join_code(p), -SIGKILL);
        memset(buf, 0, sizeof buf);
        CHECK(read_within(rd, buf, 4, 10));
        CHECK_STR(buf, "gone");
        close(rd);
        CHECK(wait_gone(w, 10));
        kill(s, SIGKILL);
        reap_adopted();
    }
}

static int t_exec_sh(const mproc_args *a)
{
    execl("/bin/sh", "sh", "-c", mproc_args_str(a, 0), (char *)NULL);
    return 127;
}

static int t_exec_sleep(const mproc_args *a)
{
    execl("/bin/sleep", "sleep", "30", (char *)NULL);
    return 127;
}

/* Waits until pid runs sleep (its command line says so). */
static bool wait_exec(pid_t pid, double timeout)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    for (double t0 = mproc_test_now(); mproc_test_now() - t0 < timeout;
         usleep(10000)) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? 0 : read(fd, buf, sizeof buf - 1);
        if (fd >= 0)
            close(fd);
        for (ssize_t i = 0; i < n; i++)
            buf[i] = buf[i] ? buf[i] : ' ';
        buf[n > 0 ? n : 0] = 0;
        if (strstr(buf, "sleep 30"))
            return true;
    }
    return false;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* A target that execs another program: the process lives on as that
 * program, join waits for it (without burning the CPU) and reports its
 * exit code, under every method. (Without pidfds its sentinel pipe reads
 * end of file at the exec: is_alive and join look past that.) */
static void test_target_execs(void)
{
    mproc_args *a = mproc_args_of("s", "sleep 1; exit 5");
    for (int m = 0; m < 3; m++) {
        double t0 = mproc_test_now();
        mproc_process *p = run(t_exec_sh, a, mproc_test_methods[m]);
        usleep(100000);
        CHECK_EQ(mproc_process_is_alive(p), 1);
        double c0 = cpu_seconds();
        CHECK_OK(mproc_process_join(p, 20));
        double wall = mproc_test_now() - t0, cpu = cpu_seconds() - c0;
        CHECK(wall >= 0.95);
        CHECK(cpu < 0.25);
        CHECK_EQ(join_code(p), 5);
        /* And it can be stopped. (Once it runs the other program: under
         * valgrind a signal that comes during the exec is lost.) */
        p = run(t_exec_sleep, NULL, mproc_test_methods[m]);
        CHECK(wait_exec(mproc_process_pid(p), 20));
        CHECK_EQ(mproc_process_is_alive(p), 1);
        CHECK_OK(mproc_process_terminate(p));
        CHECK_OK(mproc_process_join(p, 10));
        CHECK_EQ(join_code(p), -SIGTERM);
    }
    mproc_args_free(a);
}

/* A helper in the pid namespace: forks a pausing child on request ('f':
 * answers its pid) and says whether it still runs ('a': 1 or 0). */
static void pid_helper(int in, int out)
{
    pid_t v = 0;
    char c;
    while (read(in, &c, 1) == 1) {
        int32_t ans = 0;
        if (c == 'f') {
            v = fork();
            if (v == 0) {
                for (;;)
                    pause();
            }
            ans = v;
        } else if (c == 'a') {
            int st;
            ans = v > 0 && waitpid(v, &st, WNOHANG) == 0;
        }
        if (write(out, &ans, sizeof ans) != sizeof ans)
            break;
    }
    if (v > 0) {
        kill(v, SIGKILL);
        waitpid(v, NULL, 0);
    }
    mproc_test_exit(0);
}

static int32_t ask(int fd[2], char c)
{
    int32_t ans = -1;
    if (write(fd[1], &c, 1) != 1 || read(fd[0], &ans, sizeof ans) != sizeof ans)
        return -1;
    return ans;
}

/* As init of a pid namespace of our own: a child of method m ends and is
 * reaped by someone else than its process object (under fork and spawn
 * by a stray waitpid, as a careless library might; under forkserver by
 * the server, with our object not joined yet). Its pid is then handed to
 * a process of the helper's; a kill through the object must not touch
 * that process. Returns 0, 77 when the pid could not be handed on, or a
 * failure code. */
static int recycled_pid_case(mproc_start_method m, int hf[2])
{
    mproc_process *p;
    if (mproc_process_new(&p, t_return, NULL) < 0 ||
        mproc_process_set_start_method(p, m) < 0 || mproc_process_start(p) < 0)
        return 10;
    pid_t pid = mproc_process_pid(p);
    if (m == MPROC_START_FORKSERVER) {
        for (int i = 0; i < 2000 && kill(pid, 0) == 0; i++)
            usleep(5000);
    } else if (waitpid(pid, NULL, 0) != pid) {
        return 11;
    }
    int fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || dprintf(fd, "%d", (int)pid - 1) < 0) {
        mproc_test_exit(77);
    }
    close(fd);
    int32_t v = ask(hf, 'f');
    int code = 0;
    if (v != pid)
        code = 77;
    else if (mproc_process_kill(p) < 0)
        code = 12;
    else if (usleep(50000), ask(hf, 'a') != 1)
        code = 13; /* the process that got the pid was hit */
    if (mproc_process_join(p, 10) < 0)
        code = code ? code : 14;
    mproc_process_free(p);
    return code;
}

/* A signal through a process object never reaches a process that was
 * given the child's pid after the child was reaped, even by someone else.
 * (Needs to be root, for a pid namespace in which pids can be chosen.) */
static void test_signals_never_hit_recycled_pid(void)
{
    for (int m = 0; m < 3; m++) {
        /* A namespace per method: its first process is its init, and it
         * ends with it. */
        pid_t x = fork();
        CHECK(x >= 0);
        if (x == 0) {
            if (unshare(CLONE_NEWPID) < 0)
                mproc_test_exit(78);
            pid_t init = fork();
            if (init == 0) {
                int to[2], from[2];
                if (pipe2(to, O_CLOEXEC) < 0 || pipe2(from, O_CLOEXEC) < 0)
                    mproc_test_exit(2);
                pid_t h = fork();
                if (h == 0) {
                    close(to[1]);
                    close(from[0]);
                    pid_helper(to[0], from[1]);
                }
                close(to[0]);
                close(from[1]);
                int hf[2] = {from[0], to[1]};
                int code = recycled_pid_case(mproc_test_methods[m], hf);
                close(to[1]);
                waitpid(h, NULL, 0);
                mproc_shutdown();
                mproc_test_exit(code);
            }
            int st = 0;
            if (init < 0 || waitpid(init, &st, 0) != init || !WIFEXITED(st))
                mproc_test_exit(3);
            mproc_test_exit(WEXITSTATUS(st));
        }
        int st = 0;
        CHECK_EQ(waitpid(x, &st, 0), x);
        CHECK(WIFEXITED(st));
        if (WEXITSTATUS(st) == 78)
            SKIP("no pid namespace of our own (not root?)");
        if (WEXITSTATUS(st) == 77)
            SKIP("the pid could not be handed on");
        CHECK_EQ(WEXITSTATUS(st), 0);
    }
}

static const mproc_test tests[] = {
    {"exit_codes", test_exit_codes, 60},
    {"join_timeout_and_terminate", test_join_timeout_and_terminate, 60},
    {"kill", test_kill, 30},
    {"kill_reaped", test_kill_reaped_never_hits_recycled_pid, 30},
    {"library_target", test_library_target, 30},
    {"main_not_rerun", test_main_not_rerun, 30},
    {"library_constructors_run", test_library_constructors_run, 30},
    {"args_and_objects", test_args_and_objects, 30},
    {"names_and_parent", test_names_and_parent, 30},
    {"names_count_up", test_names_count_up, 10},
    {"stdio_flushed_before_fork", test_stdio_flushed_before_fork, 30},
    {"no_fd_leaks_into_children", test_no_fd_leaks_into_children, 30},
    {"daemon_killed_with_parent", test_daemon_killed_with_parent, 60},
    {"daemon_terminated_at_exit", test_daemon_terminated_at_exit, 60},
    {"daemon_may_not_have_children", test_daemon_may_not_have_children, 30},
    {"forkserver_1000_starts", test_forkserver_1000_starts, 180},
    {"forkserver_killed", test_forkserver_killed, 60},
    {"forkserver_spare_killed", test_forkserver_spare_killed, 60},
    {"forkserver_killed_while_idle", test_forkserver_killed_while_idle, 60},
    {"forkserver_fork_children_own_connection",
     test_forkserver_fork_children_own_connection, 120},
    {"forkserver_threads_one_connection",
     test_forkserver_threads_one_connection, 120},
    {"forkserver_hostile_peers", test_forkserver_hostile_peers, 60},
    {"set_executable", test_set_executable, 60},
    {"forkserver_preload", test_forkserver_preload, 60},
    {"wait_sentinels", test_wait_sentinels, 60},
    {"free_running_then_reap", test_free_running_then_reap, 30},
    {"fork_child_siblings", test_fork_child_siblings, 30},
    {"threads_start_concurrently", test_threads_start_concurrently, 120},
    {"finalizers", test_finalizers, 30},
    {"finalizers_in_pool_workers", test_finalizers_in_pool_workers, 60},
    {"log_level_inherited", test_log_level_inherited, 30},
    {"log_first_line_named", test_log_first_line_named, 10},
    {"logging_reaches_children", test_logging_reaches_children, 30},
    {"affinity_and_nice", test_affinity_and_nice, 30},
    {"bad_input", test_bad_input, 30},
    {"unresolvable_target", test_unresolvable_target, 30},
    {"fd_exhaustion", test_fd_exhaustion, 60},
    {"import_failure", test_import_failure, 30},
    {"kernel_without_pidfds", test_kernel_without_pidfds, 60},
    {"sentinel_despite_grandchild", test_sentinel_despite_grandchild, 60},
    {"parent_death_seen_past_siblings", test_parent_death_seen_past_siblings,
     60},
    {"target_execs", test_target_execs, 60},
    {"signals_never_hit_recycled_pid", test_signals_never_hit_recycled_pid, 60},
};

MPROC_TEST_MAIN(tests)
