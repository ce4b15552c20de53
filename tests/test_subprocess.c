/*
 * test_subprocess.c - running other programs (mproc/subprocess.h): run and
 * the shortcuts, every Popen option, return codes and signals, exec
 * failures with their step, communicate at any size and resumed after a
 * timeout, streaming (chunks, lines, sinks, 1 GiB through a sink),
 * timeouts with and without grandchildren (the process-group kill of
 * CPython gh-75628), a child that exits without reading (no SIGPIPE), a
 * closed stdin, EINTR, the child's fds (its own /proc/self/fd), the
 * pre-exec notification (opts.notify), 1,000
 * starts from 4 threads, and Popen inside children of every start method.
 *
 * The child that lists its fds is this very program, run with
 * --list-fds: it prints the numbers of its open fds but its listing's
 * own, in order.
 */
#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>

#define ARGV(...) ((const char *[]){__VA_ARGS__, NULL})

static const mproc_stdio PIPE = {MPROC_STDIO_PIPE, -1, NULL, false};

/* The --list-fds child: "0 1 2 ..." on stdout. */
static int list_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 2;
    int mine = dirfd(d), fds[256], n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256) {
        if (e->d_name[0] == '.')
            continue;
        int fd = atoi(e->d_name);
        if (fd != mine)
            fds[n++] = fd;
    }
    closedir(d);
    for (int i = 0; i < n; i++) /* readdir's order is the fd order */
        printf("%s%d", i ? " " : "", fds[i]);
    printf("\n");
    return 0;
}

/* run with stdout (and stderr) captured; out checked against want. */
static void run_out(const char *const *argv, const char *want, int rc)
{
    mproc_completed res;
    mproc_run_opts o = {.capture_output = true};
    CHECK_OK(mproc_run(&res, argv, &o, 20));
    CHECK_EQ(res.returncode, rc);
    if (want)
        CHECK_STR(res.out, want);
    mproc_completed_free(&res);
}

static void test_run_basics(void)
{
    mproc_completed res;
    mproc_run_opts o = {.capture_output = true};
    CHECK_OK(
        mproc_run(&res, MPROC_SHELL("echo out; echo err >&2; exit 3"), &o, 20));
    CHECK(res.pid > 0);
    CHECK_EQ(res.returncode, 3);
    CHECK_STR(res.out, "out\n");
    CHECK_EQ(res.out_len, 4);
    CHECK_STR(res.err, "err\n");
    mproc_completed_free(&res);
    CHECK(res.out == NULL && res.returncode == MPROC_RETURNCODE_NONE);

    /* check: a non-zero code is an error carrying the code and stderr. */
    o.check = true;
    CHECK_ERR(mproc_run(&res, MPROC_SHELL("echo bad >&2; exit 4"), &o, 20),
              MPROC_ECALLEDPROCESS);
    CHECK_EQ(res.returncode, 4);
    CHECK_STR(res.err, "bad\n");
    mproc_completed_free(&res);
    CHECK_OK(mproc_run(&res, ARGV("true"), &o, 20));
    CHECK_EQ(res.returncode, 0);
    mproc_completed_free(&res);

    /* input= */
    mproc_run_opts in = {
        .capture_output = true, .input = "x\ny\n", .input_len = 4};
    CHECK_OK(mproc_run(&res, ARGV("wc", "-l"), &in, 20));
    CHECK(strstr(res.out, "2") != NULL);
    mproc_completed_free(&res);
    in.popen.in = PIPE; /* input and stdin together: as Python, refused */
    CHECK_ERR(mproc_run(&res, ARGV("true"), &in, 20), -EINVAL);
    mproc_completed_free(&res);

    /* Nothing captured: inherited (to /dev/null here, via the opts). */
    mproc_run_opts q = {.popen.out = {MPROC_STDIO_DEVNULL}};
    CHECK_OK(mproc_run(&res, ARGV("echo", "hidden"), &q, 20));
    CHECK(res.out == NULL && res.out_len == 0 && res.returncode == 0);
    mproc_completed_free(&res);
    CHECK_ERR(mproc_run(NULL, ARGV("true"), NULL, 1), -EINVAL);
    CHECK_OK(mproc_run(&res, ARGV("true"), NULL, 20));
    mproc_completed_free(&res);
}

static void test_shortcuts(void)
{
    int rc = -1;
    CHECK_OK(mproc_call(ARGV("false"), NULL, 20, &rc));
    CHECK_EQ(rc, 1);
    CHECK_ERR(mproc_call(ARGV("false"), NULL, 20, NULL), -EINVAL);
    CHECK_OK(mproc_check_call(ARGV("true"), NULL, 20, &rc));
    CHECK_EQ(rc, 0);
    CHECK_ERR(mproc_check_call(MPROC_SHELL("exit 7"), NULL, 20, &rc),
              MPROC_ECALLEDPROCESS);
    CHECK_EQ(rc, 7);
    char *out;
    size_t n;
    CHECK_OK(mproc_check_output(ARGV("printf", "a\\0b"), NULL, 20, &out, &n));
    CHECK_EQ(n, 3);
    CHECK(memcmp(out, "a\0b", 4) == 0); /* NUL inside, NUL after */
    free(out);
    CHECK_ERR(mproc_check_output(MPROC_SHELL("echo part; exit 2"), NULL, 20,
                                 &out, &n),
              MPROC_ECALLEDPROCESS);
    CHECK_STR(out, "part\n");
    free(out);
    CHECK_ERR(mproc_check_output(ARGV("true"), NULL, 20, NULL, &n), -EINVAL);
    /* A timeout kills and reaps. */
    double t0 = mproc_test_now();
    CHECK_ERR(mproc_call(ARGV("sleep", "10"), NULL, 0.2, &rc), -ETIMEDOUT);
    CHECK(mproc_test_now() - t0 < 3);
}

static void test_signals_and_codes(void)
{
    run_out(MPROC_SHELL("exit 255"), "", 255);
    run_out(MPROC_SHELL("kill -TERM $$"), "", -SIGTERM);
    run_out(MPROC_SHELL("kill -KILL $$"), "", -SIGKILL);
    run_out(MPROC_SHELL("kill -SEGV $$"), "", -SIGSEGV);

    mproc_popen *p;
    CHECK_OK(mproc_popen_new(&p, ARGV("sleep", "30"), NULL, NULL));
    int rc = 12345;
    CHECK_EQ(mproc_popen_poll(p, &rc), 0);
    CHECK_EQ(rc, 12345);
    CHECK_EQ(mproc_popen_returncode(p), MPROC_RETURNCODE_NONE);
    double t0 = mproc_test_now();
    CHECK_ERR(mproc_popen_wait(p, 0.2, &rc), -ETIMEDOUT);
    double dt = mproc_test_now() - t0;
    CHECK(dt >= 0.19 && dt < 2);
    CHECK_ERR(mproc_popen_kill_group(p, SIGTERM), -EINVAL); /* no group */
    CHECK_ERR(mproc_popen_send_signal(p, 999), -EINVAL);
    CHECK_OK(mproc_popen_send_signal(p, 0));
    CHECK_OK(mproc_popen_terminate(p));
    CHECK_OK(mproc_popen_wait(p, 10, &rc));
    CHECK_EQ(rc, -SIGTERM);
    CHECK_EQ(mproc_popen_poll(p, &rc), 1);
    CHECK_EQ(mproc_popen_returncode(p), -SIGTERM);
    /* Reaped: nothing is signalled, ever (the pid may be someone's). */
    CHECK_ERR(mproc_popen_kill(p), MPROC_EREAPED);
    CHECK_ERR(mproc_popen_terminate(p), MPROC_EREAPED);
    mproc_popen_free(p);

    CHECK_OK(mproc_popen_new(&p, ARGV("sleep", "30"), NULL, NULL));
    CHECK_OK(mproc_popen_kill(p));
    CHECK_OK(mproc_popen_wait(p, -1, &rc));
    CHECK_EQ(rc, -SIGKILL);
    mproc_popen_free(p);
    mproc_popen_free(NULL);
    CHECK_EQ(mproc_popen_pid(NULL), 0);
    CHECK_ERR(mproc_popen_poll(NULL, NULL), -EINVAL);
}

/* The sentinel works with mproc_wait beside a raw pipe, a connection and
 * a queue. */
static void test_sentinel_wait(void)
{
    mproc_popen *p;
    int pp[2];
    mproc_conn *ca, *cb;
    mproc_queue *q;
    CHECK_OK(pipe2(pp, O_CLOEXEC));
    CHECK_OK(mproc_pipe(&ca, &cb, 1));
    CHECK_OK(mproc_queue_new(&q, 0));
    CHECK_OK(mproc_popen_new(&p, ARGV("sleep", "30"), NULL, NULL));
    int fds[4] = {mproc_popen_sentinel(p), pp[0], mproc_conn_fileno(cb),
                  mproc_queue_fileno(q)};
    int ready[4];
    CHECK(fds[0] >= 0 && fds[2] >= 0 && fds[3] >= 0);
    CHECK_EQ(mproc_wait(fds, 2, 0.05, ready), 0);
    CHECK_EQ(write(pp[1], "x", 1), 1);
    CHECK_OK(mproc_conn_send_bytes(ca, "c", 1));
    CHECK_EQ(mproc_wait(fds, 3, 5, ready), 2);
    CHECK(!ready[0] && ready[1] && ready[2]);
    CHECK_OK(mproc_popen_kill(p));
    CHECK_EQ(mproc_wait(fds, 1, 5, ready), 1);
    CHECK(ready[0]);
    CHECK_OK(mproc_queue_put(q, "q", 1, 5));
    CHECK_EQ(mproc_wait(fds, 4, 5, ready), 4);
    mproc_conn_free(ca);
    mproc_conn_free(cb);
    mproc_queue_free(q);
    int rc;
    CHECK_OK(mproc_popen_wait(p, 5, &rc));
    CHECK_EQ(rc, -SIGKILL);
    mproc_popen_free(p);
    close(pp[0]);
    close(pp[1]);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    static char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void test_stdio_kinds(void)
{
    char dir[] = "/tmp/mproc_sp_XXXXXX";
    CHECK(mkdtemp(dir));
    char in_path[128], out_path[128];
    snprintf(in_path, sizeof in_path, "%s/in", dir);
    snprintf(out_path, sizeof out_path, "%s/out", dir);
    FILE *f = fopen(in_path, "we");
    CHECK(f);
    fputs("from file\n", f);
    fclose(f);

    /* stdin from a path, stdout to a path (truncate, then append). */
    mproc_popen_opts o = {.in = {MPROC_STDIO_PATH, -1, in_path, false},
                          .out = {MPROC_STDIO_PATH, -1, out_path, false}};
    int rc;
    CHECK_OK(mproc_call(ARGV("cat"), &o, 20, &rc));
    CHECK_EQ(rc, 0);
    CHECK_STR(slurp(out_path), "from file\n");
    o.out.append = true;
    CHECK_OK(mproc_call(ARGV("cat"), &o, 20, &rc));
    CHECK_STR(slurp(out_path), "from file\nfrom file\n");
    o.out.append = false;
    CHECK_OK(mproc_call(ARGV("echo", "new"), &o, 20, &rc));
    CHECK_STR(slurp(out_path), "new\n");

    /* The caller's fd as stdout, stderr merged into it. */
    int fd = open(out_path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    CHECK(fd >= 0);
    mproc_popen_opts m = {.out = {MPROC_STDIO_FD, fd, NULL, false},
                          .err = {MPROC_STDIO_STDOUT}};
    CHECK_OK(
        mproc_call(MPROC_SHELL("echo 1; echo 2 >&2; echo 3"), &m, 20, &rc));
    close(fd);
    CHECK_STR(slurp(out_path), "1\n2\n3\n");

    /* Merged into a pipe: one stream, in order. */
    mproc_completed res;
    mproc_run_opts r = {.popen = {.out = PIPE, .err = {MPROC_STDIO_STDOUT}}};
    CHECK_OK(
        mproc_run(&res, MPROC_SHELL("echo a; echo b >&2; echo c"), &r, 20));
    CHECK_STR(res.out, "a\nb\nc\n");
    CHECK(res.err == NULL);
    mproc_completed_free(&res);

    /* /dev/null in and out; stdin inherited is ours. */
    mproc_run_opts dn = {.capture_output = true,
                         .popen.in = {MPROC_STDIO_DEVNULL}};
    CHECK_OK(mproc_run(&res, ARGV("wc", "-c"), &dn, 20));
    CHECK(strstr(res.out, "0") != NULL);
    mproc_completed_free(&res);

    /* Swapped fds: our 1 as its stdin and our 0 as its stdout. */
    int pa[2], pb[2];
    CHECK_OK(pipe2(pa, O_CLOEXEC));
    CHECK_OK(pipe2(pb, O_CLOEXEC));
    int save0 = dup(0), save1 = dup(1);
    CHECK(dup2(pb[1], 0) == 0 && dup2(pa[0], 1) == 1);
    CHECK_EQ(write(pa[1], "swap\n", 5), 5);
    close(pa[1]);
    mproc_popen_opts sw = {.in = {MPROC_STDIO_FD, 1, NULL, false},
                           .out = {MPROC_STDIO_FD, 0, NULL, false}};
    rc = mproc_call(ARGV("cat"), &sw, 20, &rc) == 0 ? rc : -1;
    dup2(save0, 0);
    dup2(save1, 1);
    close(save0);
    close(save1);
    close(pb[1]);
    CHECK_EQ(rc, 0);
    char buf[16] = "";
    CHECK_EQ(read(pb[0], buf, sizeof buf), 5);
    CHECK(memcmp(buf, "swap\n", 5) == 0);
    close(pa[0]);
    close(pb[0]);

    unlink(in_path);
    unlink(out_path);
    rmdir(dir);
}

static void test_environment_options(void)
{
    char dir[] = "/tmp/mproc_sp_XXXXXX";
    CHECK(mkdtemp(dir));
    char real[4096];
    CHECK(realpath(dir, real));
    char want[4200];

    /* cwd */
    mproc_completed res;
    mproc_run_opts o = {.capture_output = true, .popen.cwd = dir};
    CHECK_OK(mproc_run(&res, ARGV("pwd"), &o, 20));
    snprintf(want, sizeof want, "%s\n", real);
    CHECK_STR(res.out, want);
    mproc_completed_free(&res);

    /* env replaced; then extended (set, override, remove). */
    const char *env[] = {"A=1", "B=2", "PATH=/usr/bin:/bin", NULL};
    mproc_run_opts e = {.capture_output = true, .popen.env = env};
    CHECK_OK(
        mproc_run(&res, ARGV("sh", "-c", "echo $A$B${HOME:-nohome}"), &e, 20));
    CHECK_STR(res.out, "12nohome\n");
    mproc_completed_free(&res);
    const char *ext[] = {"A=9", "B", "C=3", NULL};
    e.popen.env_extend = ext;
    CHECK_OK(mproc_run(&res, ARGV("sh", "-c", "echo $A${B:-none}$C"), &e, 20));
    CHECK_STR(res.out, "9none3\n");
    mproc_completed_free(&res);
    setenv("MPROC_SP_MINE", "inherited", 1);
    mproc_run_opts x = {.capture_output = true, .popen.env_extend = ext};
    CHECK_OK(mproc_run(&res, MPROC_SHELL("echo $MPROC_SP_MINE$C"), &x, 20));
    CHECK_STR(res.out, "inherited3\n");
    mproc_completed_free(&res);
    unsetenv("MPROC_SP_MINE");

    /* umask */
    mproc_run_opts u = {
        .capture_output = true, .popen.set_umask = true, .popen.umask = 027};
    CHECK_OK(mproc_run(&res, MPROC_SHELL("umask"), &u, 20));
    CHECK_STR(res.out, "0027\n");
    mproc_completed_free(&res);

    /* executable: argv[0] stays as given. */
    mproc_run_opts a0 = {.capture_output = true, .popen.executable = "/bin/sh"};
    CHECK_OK(mproc_run(&res, ARGV("my-name", "-c", "echo $0"), &a0, 20));
    CHECK_STR(res.out, "my-name\n");
    mproc_completed_free(&res);

    /* PATH search in the child's environment: a script of ours. */
    char script[4300];
    snprintf(script, sizeof script, "%s/mproc-sp-tool", dir);
    FILE *f = fopen(script, "we");
    CHECK(f);
    fputs("#!/bin/sh\necho tool ran\n", f);
    fclose(f);
    CHECK_OK(chmod(script, 0755));
    char path[4200];
    snprintf(path, sizeof path, "PATH=/nonexistent:%s:/usr/bin:/bin", dir);
    const char *pe[] = {path, NULL};
    mproc_run_opts ps = {.capture_output = true, .popen.env_extend = pe};
    CHECK_OK(mproc_run(&res, ARGV("mproc-sp-tool"), &ps, 20));
    CHECK_STR(res.out, "tool ran\n");
    mproc_completed_free(&res);
    /* Not executable: EACCES wins over the other entries' ENOENT. */
    CHECK_OK(chmod(script, 0644));
    CHECK_ERR(mproc_run(&res, ARGV("mproc-sp-tool"), &ps, 20), -EACCES);
    CHECK_STR(res.step, "exec");
    CHECK_EQ(res.pid, 0);
    mproc_completed_free(&res);
    unlink(script);
    rmdir(dir);
}

static void test_sessions_and_groups(void)
{
    mproc_popen *p;
    mproc_popen_opts s = {.start_new_session = true};
    CHECK_OK(mproc_popen_new(&p, ARGV("sleep", "30"), &s, NULL));
    pid_t pid = mproc_popen_pid(p);
    CHECK_EQ(getsid(pid), pid);
    CHECK_EQ(getpgid(pid), pid);
    CHECK_OK(mproc_popen_kill_group(p, SIGKILL));
    int rc;
    CHECK_OK(mproc_popen_wait(p, 10, &rc));
    CHECK_EQ(rc, -SIGKILL);
    mproc_popen_free(p);

    mproc_popen_opts g = {.set_pgid = true, .pgid = 0};
    CHECK_OK(mproc_popen_new(&p, ARGV("sleep", "30"), &g, NULL));
    pid = mproc_popen_pid(p);
    CHECK_EQ(getpgid(pid), pid);
    CHECK_EQ(getsid(pid), getsid(0));
    /* A second child joins the first one's group. */
    mproc_popen *q;
    mproc_popen_opts j = {.set_pgid = true, .pgid = pid};
    CHECK_OK(mproc_popen_new(&q, ARGV("sleep", "30"), &j, NULL));
    CHECK_EQ(getpgid(mproc_popen_pid(q)), pid);
    CHECK_OK(mproc_popen_kill_group(p, SIGTERM)); /* both */
    CHECK_OK(mproc_popen_wait(p, 10, &rc));
    CHECK_EQ(rc, -SIGTERM);
    CHECK_OK(mproc_popen_wait(q, 10, &rc));
    CHECK_EQ(rc, -SIGTERM);
    mproc_popen_free(p);
    mproc_popen_free(q);

    /* Joining a group that does not exist fails at the start. */
    const char *step;
    mproc_popen_opts bad = {.set_pgid = true, .pgid = 0x3ffffff0};
    CHECK_ERR(mproc_popen_new(&p, ARGV("true"), &bad, &step), -EPERM);
    CHECK_STR(step, "setpgid");
    CHECK(p == NULL);
}

/* opts.notify: the child's pid reaches notify_fd before the program runs
 * (a program writing to the same pipe comes after it), the group already
 * set; a failed exec withdraws it (-pid); the fd is not the program's; a
 * reader that is gone costs nothing (no SIGPIPE). */
static void test_notify(void)
{
    signal(SIGPIPE, SIG_DFL);
    int np[2];
    CHECK_OK(pipe2(np, O_CLOEXEC));
    char script[64];
    snprintf(script, sizeof script, "printf X >&%d; exec sleep 30", np[1]);
    mproc_popen *p;
    mproc_popen_opts o = {.set_pgid = true,
                          .notify = true,
                          .notify_fd = np[1],
                          .pass_fds = &np[1],
                          .npass_fds = 1};
    CHECK_OK(mproc_popen_new(&p, ARGV("/bin/sh", "-c", script), &o, NULL));
    pid_t pid = mproc_popen_pid(p);
    int32_t got = 0;
    CHECK_EQ(read(np[0], &got, sizeof got), (ssize_t)sizeof got);
    CHECK_EQ(got, pid);
    CHECK_EQ(getpgid(pid), pid);
    char x = 0;
    CHECK_EQ(read(np[0], &x, 1), 1);
    CHECK_EQ(x, 'X');
    CHECK_OK(mproc_popen_kill_group(p, SIGKILL));
    int rc;
    CHECK_OK(mproc_popen_wait(p, 10, &rc));
    mproc_popen_free(p);

    /* Not passed: closed in the program. */
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(sl > 0);
    self[sl] = '\0';
    mproc_popen_opts h = {.out = PIPE, .notify = true, .notify_fd = np[1]};
    CHECK_OK(mproc_popen_new(&p, ARGV(self, "--list-fds"), &h, NULL));
    char *out = NULL;
    size_t n = 0;
    CHECK_OK(mproc_popen_communicate(p, NULL, 0, &out, &n, NULL, NULL, 20));
    char list[128], fdw[16];
    snprintf(list, sizeof list, " %.*s ", (int)strcspn(out, "\n"), out);
    snprintf(fdw, sizeof fdw, " %d ", np[1]);
    CHECK(strncmp(list, " 0 1 2", 6) == 0);
    CHECK(strstr(list, fdw) == NULL);
    free(out);
    CHECK_EQ(read(np[0], &got, sizeof got), (ssize_t)sizeof got);
    CHECK_EQ(got, mproc_popen_pid(p));
    mproc_popen_free(p);

    /* The exec fails (on every PATH entry): +pid, then -pid. */
    const char *step = NULL;
    CHECK_ERR(mproc_popen_new(&p, ARGV("mproc-no-such-program"), &h, &step),
              -ENOENT);
    CHECK_STR(step, "exec");
    int32_t two[2] = {0, 0};
    CHECK_EQ(read(np[0], two, sizeof two), (ssize_t)sizeof two);
    CHECK(two[0] > 0);
    CHECK_EQ(two[1], -two[0]);
    /* A step before it fails: nothing was said. */
    mproc_popen_opts c = {
        .cwd = "/nonexistent-dir", .notify = true, .notify_fd = np[1]};
    CHECK_ERR(mproc_popen_new(&p, ARGV("true"), &c, &step), -ENOENT);
    struct pollfd pf = {.fd = np[0], .events = POLLIN};
    CHECK_EQ(poll(&pf, 1, 0), 0);

    /* Nobody reads: the program runs all the same. */
    close(np[0]);
    mproc_popen_opts g = {.notify = true, .notify_fd = np[1]};
    CHECK_OK(mproc_popen_new(&p, ARGV("true"), &g, NULL));
    CHECK_OK(mproc_popen_wait(p, 10, &rc));
    CHECK_EQ(rc, 0);
    mproc_popen_free(p);
    close(np[1]);

    /* Bad fds. */
    mproc_popen_opts neg = {.notify = true, .notify_fd = -1};
    CHECK_ERR(mproc_popen_new(&p, ARGV("true"), &neg, NULL), -EINVAL);
    mproc_popen_opts shut = {.notify = true, .notify_fd = 979};
    CHECK_ERR(mproc_popen_new(&p, ARGV("true"), &shut, NULL), -EBADF);
}

static void test_exec_failures(void)
{
    mproc_popen *p = (mproc_popen *)1;
    const char *step = NULL;
    CHECK_ERR(mproc_popen_new(&p, ARGV("/nonexistent/prog"), NULL, &step),
              -ENOENT);
    CHECK_STR(step, "exec");
    CHECK(p == NULL);
    CHECK_ERR(mproc_popen_new(&p, ARGV("mproc-no-such-program"), NULL, &step),
              -ENOENT);
    CHECK_STR(step, "exec");
    CHECK_ERR(mproc_popen_new(&p, ARGV("/etc/passwd"), NULL, &step), -EACCES);
    CHECK_ERR(mproc_popen_new(&p, ARGV("/"), NULL, &step), -EACCES);
    CHECK_ERR(mproc_popen_new(&p, ARGV("/etc/passwd/x"), NULL, &step),
              -ENOTDIR);
    CHECK_ERR(mproc_popen_new(&p, ARGV(""), NULL, &step), -ENOENT);
    mproc_popen_opts c = {.cwd = "/nonexistent-dir"};
    CHECK_ERR(mproc_popen_new(&p, ARGV("true"), &c, &step), -ENOENT);
    CHECK_STR(step, "chdir");
    c.cwd = "/etc/passwd";
    CHECK_ERR(mproc_popen_new(&p, ARGV("true"), &c, &step), -ENOTDIR);
    CHECK_STR(step, "chdir");
    mproc_popen_opts o = {
        .out = {MPROC_STDIO_PATH, -1, "/nonexistent/f", false}};
    CHECK_ERR(mproc_popen_new(&p, ARGV("true"), &o, &step), -ENOENT);
    CHECK_STR(step, "open stdout");
    mproc_popen_opts i = {.in = {MPROC_STDIO_PATH, -1, "/nonexistent", false}};
    CHECK_ERR(mproc_popen_new(&p, ARGV("true"), &i, &step), -ENOENT);
    CHECK_STR(step, "open stdin");
    /* Bad arguments. */
    CHECK_ERR(mproc_popen_new(&p, NULL, NULL, NULL), -EINVAL);
    CHECK_ERR(mproc_popen_new(&p, (const char *[]){NULL}, NULL, NULL), -EINVAL);
    CHECK_ERR(mproc_popen_new(NULL, ARGV("true"), NULL, NULL), -EINVAL);
    mproc_popen_opts so = {.out = {MPROC_STDIO_STDOUT}};
    CHECK_ERR(mproc_popen_new(&p, ARGV("true"), &so, NULL), -EINVAL);
    mproc_popen_opts bf = {.out = {MPROC_STDIO_FD, 977, NULL, false}};
    CHECK_ERR(mproc_popen_new(&p, ARGV("true"), &bf, NULL), -EBADF);
    int bad_pass = 978;
    mproc_popen_opts bp = {.pass_fds = &bad_pass, .npass_fds = 1};
    CHECK_ERR(mproc_popen_new(&p, ARGV("true"), &bp, NULL), -EBADF);
    mproc_popen_opts np = {.out = {MPROC_STDIO_PATH, -1, NULL, false}};
    CHECK_ERR(mproc_popen_new(&p, ARGV("true"), &np, NULL), -EINVAL);
    /* A script without #! is not run through a shell (as Python). */
    char path[] = "/tmp/mproc_sp_noexec_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK_EQ(write(fd, "echo hi\n", 8), 8);
    close(fd);
    CHECK_OK(chmod(path, 0755));
    CHECK_ERR(mproc_popen_new(&p, ARGV(path), NULL, &step), -ENOEXEC);
    CHECK_STR(step, "exec");
    unlink(path);
}

/* Every fd but 0, 1, 2 and the passed ones is closed in the child, the
 * caller's inheritable ones too. */
static void test_fd_hygiene(void)
{
    int leak = open("/dev/null", O_RDONLY); /* no O_CLOEXEC, on purpose */
    int leak2 = dup(leak);
    int keep = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK(leak >= 3 && keep >= 3 && leak2 >= 3);
    const int pass[] = {keep};
    mproc_completed res;
    mproc_run_opts o = {.capture_output = true,
                        .popen = {.pass_fds = pass, .npass_fds = 1}};
    o.input = "";
    o.input_len = 0;
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(sl > 0);
    self[sl] = 0; /* not /proc/self/exe itself: valgrind cannot exec it */
    double scale = mproc_test_time_scale();
    CHECK_OK(mproc_run(&res, ARGV(self, "--list-fds"), &o, 30 * scale));
    char want[64];
    snprintf(want, sizeof want, "0 1 2 %d\n", keep);
    if (mproc_test_no_pidfd()) {
        /* Without pidfds the child holds its sentinel pipe's write end. */
        int a, b, c, d, e;
        CHECK_EQ(sscanf(res.out, "%d %d %d %d %d", &a, &b, &c, &d, &e), 5);
        CHECK(a == 0 && b == 1 && c == 2 && (d == keep || e == keep));
    } else {
        CHECK_STR(res.out, want);
    }
    mproc_completed_free(&res);

    /* Nothing passed: only stdio. */
    mproc_run_opts q = {.capture_output = true};
    CHECK_OK(mproc_run(&res, ARGV(self, "--list-fds"), &q, 30 * scale));
    if (!mproc_test_no_pidfd())
        CHECK_STR(res.out, "0 1 2\n");
    mproc_completed_free(&res);
    close(leak);
    close(leak2);
    close(keep);
}

/* The parent's own stdin and stdout are closed: the pipes may land on 0
 * and 1, and must still reach the child's 0 and 1. */
static void test_closed_stdio(void)
{
    int save0 = dup(0), save1 = dup(1);
    close(0);
    close(1);
    mproc_popen *p;
    mproc_popen_opts o = {.in = PIPE, .out = PIPE};
    int r = mproc_popen_new(&p, ARGV("cat"), &o, NULL);
    char *out = NULL;
    size_t n = 0;
    if (r == 0)
        r = mproc_popen_communicate(p, "both closed", 11, &out, &n, NULL, NULL,
                                    20);
    dup2(save0, 0);
    dup2(save1, 1);
    close(save0);
    close(save1);
    CHECK_OK(r);
    CHECK_STR(out, "both closed");
    CHECK_EQ(mproc_popen_returncode(p), 0);
    free(out);
    mproc_popen_free(p);

    /* The child's stdin closed before it reads: it sees EOF/EBADF, we see
     * no error. */
    mproc_completed res;
    mproc_run_opts c = {
        .capture_output = true, .input = "data", .input_len = 4};
    CHECK_OK(mproc_run(&res, MPROC_SHELL("exec 0<&-; echo ran"), &c, 20));
    CHECK_STR(res.out, "ran\n");
    mproc_completed_free(&res);
}

/* A child that exits without reading megabytes of input: no SIGPIPE kills
 * us (its default action here), no error; also one SIGKILLed mid-way. */
static void test_sigpipe_early_exit(void)
{
    signal(SIGPIPE, SIG_DFL);
    size_t n = 8 << 20;
    char *in = malloc(n);
    CHECK(in);
    memset(in, 'z', n);
    mproc_completed res;
    mproc_run_opts o = {.capture_output = true, .input = in, .input_len = n};
    CHECK_OK(mproc_run(&res, ARGV("true"), &o, 20));
    CHECK_EQ(res.returncode, 0);
    mproc_completed_free(&res);
    CHECK_OK(mproc_run(&res,
                       MPROC_SHELL("head -c 100000 >/dev/null; kill "
                                   "-9 $$"),
                       &o, 20));
    CHECK_EQ(res.returncode, -SIGKILL);
    mproc_completed_free(&res);
    sigset_t pend;
    sigpending(&pend);
    CHECK(!sigismember(&pend, SIGPIPE));
    /* Popen: a write of our own to its stdin after it died is EPIPE, and
     * communicate still works. */
    mproc_popen *p;
    mproc_popen_opts po = {.in = PIPE};
    CHECK_OK(mproc_popen_new(&p, ARGV("true"), &po, NULL));
    CHECK_OK(mproc_popen_wait(p, 10, NULL));
    CHECK_OK(mproc_popen_communicate(p, in, n, NULL, NULL, NULL, NULL, 10));
    CHECK_ERR(mproc_popen_communicate(p, in, n, NULL, NULL, NULL, NULL, 10), 0);
    mproc_popen_free(p);
    free(in);
}

static void test_communicate_big(void)
{
    size_t n = 32 << 20;
    char *in = malloc(n);
    CHECK(in);
    for (size_t i = 0; i < n; i++)
        in[i] = (char)(i * 7 + (i >> 12));
    /* Both ways at once, and stderr at the same time: no deadlock. */
    mproc_popen *p;
    mproc_popen_opts o = {.in = PIPE, .out = PIPE, .err = PIPE};
    CHECK_OK(mproc_popen_new(
        &p, MPROC_SHELL("tee /dev/stderr | cat; echo end >&2"), &o, NULL));
    char *out, *err;
    size_t on, en;
    CHECK_OK(mproc_popen_communicate(p, in, n, &out, &on, &err, &en, 60));
    CHECK_EQ(on, n);
    CHECK_EQ(en, n + 4);
    CHECK(memcmp(out, in, n) == 0 && memcmp(err, in, n) == 0);
    CHECK(memcmp(err + n, "end\n", 5) == 0);
    CHECK_EQ(mproc_popen_returncode(p), 0);
    free(out);
    free(err);
    /* Again: nothing left, stdout/stderr were pipes. */
    CHECK_OK(mproc_popen_communicate(p, NULL, 0, &out, &on, &err, &en, 1));
    CHECK(out && on == 0 && err && en == 0);
    free(out);
    free(err);
    mproc_popen_free(p);

    /* Input to a child whose stdin is not a pipe. */
    CHECK_OK(mproc_popen_new(&p, ARGV("true"), NULL, NULL));
    CHECK_ERR(mproc_popen_communicate(p, "x", 1, NULL, NULL, NULL, NULL, 5),
              -EINVAL);
    CHECK_OK(mproc_popen_communicate(p, NULL, 0, &out, &on, NULL, NULL, 5));
    CHECK(out == NULL && on == 0);
    mproc_popen_free(p);
    free(in);
}

/* A communicate that times out keeps what it read and wrote; the next
 * one goes on from there. */
static void test_communicate_resume(void)
{
    mproc_popen *p;
    mproc_popen_opts o = {.out = PIPE};
    CHECK_OK(mproc_popen_new(
        &p, MPROC_SHELL("echo first; sleep 0.6; echo second"), &o, NULL));
    char *out;
    size_t n;
    double t0 = mproc_test_now();
    CHECK_ERR(mproc_popen_communicate(p, NULL, 0, &out, &n, NULL, NULL, 0.2),
              -ETIMEDOUT);
    CHECK(mproc_test_now() - t0 < 0.5);
    CHECK(out == NULL);
    CHECK_EQ(mproc_popen_returncode(p), MPROC_RETURNCODE_NONE);
    CHECK_OK(mproc_popen_communicate(p, NULL, 0, &out, &n, NULL, NULL, 10));
    CHECK_STR(out, "first\nsecond\n");
    free(out);
    mproc_popen_free(p);

    /* Input half-written when it times out: resumed with the same input. */
    size_t len = 1 << 20;
    char *in = malloc(len);
    CHECK(in);
    for (size_t i = 0; i < len; i++)
        in[i] = (char)('a' + i % 23);
    mproc_popen_opts io = {.in = PIPE, .out = PIPE};
    CHECK_OK(mproc_popen_new(&p, MPROC_SHELL("sleep 0.4; cat"), &io, NULL));
    CHECK_ERR(mproc_popen_communicate(p, in, len, &out, &n, NULL, NULL, 0.1),
              -ETIMEDOUT);
    CHECK_OK(mproc_popen_communicate(p, in, len, &out, &n, NULL, NULL, 30));
    CHECK_EQ(n, len);
    CHECK(memcmp(out, in, len) == 0);
    free(out);
    free(in);
    mproc_popen_free(p);
}

typedef struct counter {
    size_t bytes, calls, nonzero;
    char lines[8][16];
    size_t nlines;
} counter;

static int count_sink(void *ctx, const void *data, size_t n)
{
    counter *c = ctx;
    const unsigned char *b = data;
    c->bytes += n;
    c->calls++;
    if (b[0] != 0 || b[n - 1] != 0)
        c->nonzero++;
    return 0;
}

static int line_sink(void *ctx, const void *data, size_t n)
{
    counter *c = ctx;
    if (c->nlines < 8 && n < 16)
        memcpy(c->lines[c->nlines], data, n);
    c->nlines++;
    return 0;
}

static int failing_sink(void *ctx, const void *data, size_t n)
{
    (void)ctx;
    (void)data;
    (void)n;
    return MPROC_EUSER(5);
}

static void test_streaming(void)
{
    /* readline and read, mixed. */
    mproc_popen *p;
    mproc_popen_opts o = {.out = PIPE};
    CHECK_OK(
        mproc_popen_new(&p, ARGV("printf", "one\\ntwo\\0x\\nrest"), &o, NULL));
    char *line;
    size_t n;
    CHECK_EQ(mproc_popen_readline(p, &line, &n, 10), 1);
    CHECK_STR(line, "one\n");
    CHECK_EQ(mproc_popen_readline(p, &line, &n, 10), 1);
    CHECK_EQ(n, 6);
    CHECK(memcmp(line, "two\0x\n", 6) == 0);
    char buf[3];
    CHECK_EQ(mproc_popen_read(p, buf, 2, 10), 2);
    CHECK(memcmp(buf, "re", 2) == 0);
    CHECK_EQ(mproc_popen_readline(p, &line, &n, 10), 1);
    CHECK_STR(line, "st");
    CHECK_EQ(mproc_popen_readline(p, &line, &n, 10), 0);
    CHECK_EQ(mproc_popen_read(p, buf, 2, 10), 0);
    CHECK_OK(mproc_popen_wait(p, 10, NULL));
    mproc_popen_free(p);

    /* A line that is slow to come: a timeout keeps the partial line. */
    CHECK_OK(mproc_popen_new(
        &p, MPROC_SHELL("printf part; sleep 0.5; printf 'ial\\n'"), &o, NULL));
    CHECK_ERR(mproc_popen_readline(p, &line, &n, 0.2), -ETIMEDOUT);
    CHECK_EQ(mproc_popen_readline(p, &line, &n, 10), 1);
    CHECK_STR(line, "partial\n");
    CHECK_OK(mproc_popen_wait(p, 10, NULL));
    mproc_popen_free(p);
    CHECK_OK(mproc_popen_new(&p, ARGV("true"), NULL, NULL));
    CHECK_ERR(mproc_popen_readline(p, &line, &n, 1), -EBADF);
    CHECK_ERR(mproc_popen_read(p, buf, 1, 1), -EBADF);
    CHECK_OK(mproc_popen_wait(p, 10, NULL));
    mproc_popen_free(p);

    /* Line sinks on both streams; an fd sink. */
    mproc_popen_opts oe = {.out = PIPE, .err = PIPE};
    CHECK_OK(mproc_popen_new(
        &p, MPROC_SHELL("printf 'a\\nbb\\n'; printf 'e1\\ne2' >&2"), &oe,
        NULL));
    counter co = {0}, ce = {0};
    mproc_sink so = {line_sink, &co, -1, true}, se = {line_sink, &ce, -1, true};
    CHECK_OK(mproc_popen_stream(p, NULL, 0, &so, &se, 10));
    CHECK_EQ(co.nlines, 2);
    CHECK_STR(co.lines[0], "a\n");
    CHECK_STR(co.lines[1], "bb\n");
    CHECK_EQ(ce.nlines, 2);
    CHECK_STR(ce.lines[1], "e2");
    CHECK_EQ(mproc_popen_returncode(p), 0);
    mproc_popen_free(p);

    int pp[2];
    CHECK_OK(pipe2(pp, O_CLOEXEC));
    mproc_sink fd_sink = {NULL, NULL, pp[1], false};
    mproc_completed res;
    mproc_run_opts r = {.out_sink = &fd_sink};
    CHECK_OK(mproc_run(&res, ARGV("echo", "to fd"), &r, 10));
    CHECK(res.out == NULL);
    mproc_completed_free(&res);
    char got[16] = "";
    CHECK_EQ(read(pp[0], got, sizeof got), 6);
    CHECK(memcmp(got, "to fd\n", 6) == 0);
    close(pp[0]);
    close(pp[1]);

    /* A sink's error stops run, which kills and reaps the child. */
    mproc_sink bad = {failing_sink, NULL, -1, false};
    mproc_run_opts rb = {.out_sink = &bad};
    CHECK_ERR(mproc_run(&res, MPROC_SHELL("echo x; exec sleep 30"), &rb, 20),
              MPROC_EUSER(5));
    CHECK_EQ(res.returncode, -SIGKILL);
    mproc_completed_free(&res);
}

/* 1 GiB through a sink without holding it. */
static void test_gigabyte_sink(void)
{
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    counter c = {0};
    mproc_sink s = {count_sink, &c, -1, false};
    mproc_completed res;
    mproc_run_opts o = {.out_sink = &s};
    double t0 = mproc_test_now();
    CHECK_OK(mproc_run(&res, ARGV("head", "-c", "1073741824", "/dev/zero"), &o,
                       120));
    double dt = mproc_test_now() - t0;
    CHECK_EQ(res.returncode, 0);
    mproc_completed_free(&res);
    CHECK_EQ(c.bytes, (size_t)1 << 30);
    CHECK_EQ(c.nonzero, 0);
    getrusage(RUSAGE_SELF, &ru1);
    /* maxrss is in KiB: far below the gigabyte. */
    CHECK(ru1.ru_maxrss - ru0.ru_maxrss < 64 * 1024);
    fprintf(stderr, "  1 GiB in %.2f s (%.0f MB/s), %zu chunks\n", dt,
            1073.741824 / dt, c.calls);
}

/* Timeouts, and the gh-75628 case: a grandchild holding the pipe. */
static void test_timeouts_grandchild(void)
{
    mproc_completed res;
    mproc_run_opts o = {.capture_output = true};
    double t0 = mproc_test_now();
    CHECK_ERR(mproc_run(&res, ARGV("sleep", "30"), &o, 0.2), -ETIMEDOUT);
    CHECK(mproc_test_now() - t0 < 2);
    CHECK_EQ(res.returncode, -SIGKILL);
    mproc_completed_free(&res);

    /* The shell prints its grandchild's pid and waits; a timeout must not
     * hang on the pipe the grandchild still holds, and with kill_group the
     * grandchild dies too. */
    const char *sh = "sleep 30 & echo $!; wait";
    for (int group = 0; group < 2; group++) {
        mproc_run_opts g = {.capture_output = true, .kill_group = group};
        t0 = mproc_test_now();
        CHECK_ERR(mproc_run(&res, MPROC_SHELL(sh), &g, 0.5), -ETIMEDOUT);
        double dt = mproc_test_now() - t0;
        CHECK(dt >= 0.45 && dt < 3);
        CHECK_EQ(res.returncode, -SIGKILL);
        pid_t gpid = (pid_t)atoi(res.out ? res.out : "0");
        CHECK(gpid > 0);
        mproc_completed_free(&res);
        bool gone = false;
        for (int i = 0; i < (group ? 300 : 10) && !gone; i++) {
            gone = kill(gpid, 0) < 0 && errno == ESRCH;
            if (!gone)
                usleep(10000);
        }
        if (group) {
            CHECK(gone);
        } else {
            CHECK(!gone); /* Python's behaviour without the group kill */
            kill(gpid, SIGKILL);
        }
    }
}

static volatile sig_atomic_t g_alarms;

static void on_alarm(int sig)
{
    (void)sig;
    g_alarms++;
}

/* A signal every millisecond: every call retries, no timeout stretches. */
static void test_eintr(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART */
    CHECK_OK(sigaction(SIGALRM, &sa, NULL));
    double scale = mproc_test_time_scale(); /* valgrind: 10 ms */
    suseconds_t every = (suseconds_t)(1000 * scale);
    struct itimerval it = {{0, every}, {0, every}};
    CHECK_OK(setitimer(ITIMER_REAL, &it, NULL));
    size_t n = 4 << 20;
    char *in = malloc(n);
    CHECK(in);
    memset(in, 'q', n);
    mproc_completed res;
    mproc_run_opts o = {.capture_output = true, .input = in, .input_len = n};
    CHECK_OK(mproc_run(&res, MPROC_SHELL("sleep 0.1; cat"), &o, 30 * scale));
    CHECK_EQ(res.out_len, n);
    CHECK_EQ(res.returncode, 0);
    mproc_completed_free(&res);
    mproc_popen *p;
    mproc_popen_opts po = {.out = PIPE};
    CHECK_OK(mproc_popen_new(&p, ARGV("sleep", "30"), &po, NULL));
    double t0 = mproc_test_now();
    CHECK_ERR(mproc_popen_wait(p, 0.3, NULL), -ETIMEDOUT);
    char *line;
    size_t ln;
    CHECK_ERR(mproc_popen_readline(p, &line, &ln, 0.2), -ETIMEDOUT);
    double dt = mproc_test_now() - t0;
    CHECK(dt >= 0.49 && dt < 2 * scale);
    CHECK_OK(mproc_popen_kill(p));
    CHECK_OK(mproc_popen_wait(p, -1, NULL));
    mproc_popen_free(p);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    signal(SIGALRM, SIG_DFL);
    /* (ThreadSanitizer delivers signals at its own pace.) */
    CHECK(g_alarms > (mproc_test_under_tsan() ? 0 : 100 / scale));
    free(in);
}

/* 4 threads start 1,000 programs at once, each with its pipes: every
 * child sees only its own three (ls's listing of /proc/self/fd: 0 1 2
 * and its own directory fd 3; without pidfds one more, its sentinel), and
 * nothing is left. */
static int g_thread_fail;
static bool g_no_pidfd; /* read before the threads start */

/* ls's lines (sorted as text) are 0, 1, 2, 3 and, with n == 5, one more. */
static bool only_stdio(const char *out, int n)
{
    int seen = 0, k = 0;
    for (const char *c = out; *c; k++) {
        int fd = atoi(c);
        if (fd < 4)
            seen |= 1 << fd;
        c = strchr(c, '\n');
        if (!c)
            return false;
        c++;
    }
    return k == n && seen == 15;
}

static void *starter(void *arg)
{
    (void)arg;
    mproc_run_opts o = {.capture_output = true,
                        .popen.in = {MPROC_STDIO_DEVNULL}};
    for (int i = 0; i < 250; i++) {
        mproc_completed res;
        int r = mproc_run(&res, ARGV("ls", "/proc/self/fd"), &o, 60);
        bool ok = r == 0 && res.returncode == 0 && res.out &&
                  only_stdio(res.out, g_no_pidfd ? 5 : 4);
        if (!ok && !g_thread_fail) {
            g_thread_fail = 1;
            fprintf(stderr, "start %d: r=%d out=%s\n", i, r,
                    res.out ? res.out : "(null)");
        }
        mproc_completed_free(&res);
    }
    return NULL;
}

static void test_threads_1000(void)
{
    int before = mproc_test_count_fds();
    g_no_pidfd = mproc_test_no_pidfd();
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        CHECK_OK(-pthread_create(&t[i], NULL, starter, NULL));
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK(!g_thread_fail);
    CHECK_EQ(mproc_test_count_fds(), before);
    CHECK_EQ(waitpid(-1, NULL, WNOHANG), -1); /* no child, no zombie */
    CHECK_EQ(errno, ECHILD);
}

/* kill_on_parent_death: the child dies with the process that started it,
 * even SIGKILLed. */
static void test_parent_death(void)
{
    int pp[2];
    CHECK_OK(pipe2(pp, O_CLOEXEC));
    pid_t mid = fork();
    CHECK(mid >= 0);
    if (mid == 0) {
        mproc_popen *p;
        mproc_popen_opts o = {.kill_on_parent_death = true};
        pid_t pid = 0;
        if (mproc_popen_new(&p, ARGV("sleep", "30"), &o, NULL) == 0)
            pid = mproc_popen_pid(p);
        if (write(pp[1], &pid, sizeof pid) != sizeof pid)
            mproc_test_exit(2);
        pause();
        mproc_test_exit(0);
    }
    close(pp[1]);
    pid_t pid = 0;
    CHECK_EQ(read(pp[0], &pid, sizeof pid), (ssize_t)sizeof pid);
    close(pp[0]);
    CHECK(pid > 0);
    CHECK_OK(kill(mid, SIGKILL));
    CHECK_EQ(waitpid(mid, NULL, 0), mid);
    bool gone = false;
    for (int i = 0; i < 300 && !gone; i++) {
        gone = kill(pid, 0) < 0 && errno == ESRCH;
        if (!gone)
            usleep(10000);
    }
    CHECK(gone);
}

/* A freed object's running child is reaped by a later start; a fork
 * child's inherited object may only be freed. */
static void test_free_running_and_fork(void)
{
    mproc_popen *p;
    CHECK_OK(mproc_popen_new(&p, ARGV("sleep", "0.2"), NULL, NULL));
    pid_t pid = mproc_popen_pid(p);
    pid_t c = fork();
    CHECK(c >= 0);
    if (c == 0) {
        int ok = mproc_popen_poll(p, NULL) == -ECHILD &&
                 mproc_popen_kill(p) == -ECHILD &&
                 mproc_popen_wait(p, 0, NULL) == -ECHILD;
        mproc_popen_free(p);
        mproc_test_exit(ok ? 0 : 1);
    }
    int st;
    CHECK_EQ(waitpid(c, &st, 0), c);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    mproc_popen_free(p); /* still running */
    usleep(400000);
    siginfo_t si = {0};
    CHECK_OK(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT));
    CHECK_EQ(si.si_pid, pid); /* a zombie now */
    CHECK_OK(mproc_popen_new(&p, ARGV("true"), NULL, NULL));
    CHECK_OK(mproc_popen_wait(p, 10, NULL));
    mproc_popen_free(p);
    CHECK_EQ(waitpid(pid, NULL, WNOHANG), -1); /* reaped by that start */
}

/* Out of fds: an error, nothing left behind. */
static void test_fd_limit(void)
{
    SKIP_UNDER_VALGRIND("valgrind keeps RLIMIT_NOFILE to itself");
    struct rlimit old, rl;
    CHECK_OK(getrlimit(RLIMIT_NOFILE, &old));
    rl = old;
    rl.rlim_cur = (rlim_t)mproc_test_count_fds() + 3;
    CHECK_OK(setrlimit(RLIMIT_NOFILE, &rl));
    mproc_popen *p;
    mproc_popen_opts o = {.in = PIPE, .out = PIPE, .err = PIPE};
    int r = mproc_popen_new(&p, ARGV("true"), &o, NULL);
    setrlimit(RLIMIT_NOFILE, &old);
    CHECK_ERR(r, -EMFILE);
    CHECK(p == NULL);
}

static int t_run_in_child(const mproc_args *a)
{
    (void)a;
    char *out;
    size_t n;
    if (mproc_check_output(ARGV("echo", "inner"), NULL, 20, &out, &n) != 0)
        return 1;
    int ok = strcmp(out, "inner\n") == 0;
    free(out);
    return ok ? 0 : 2;
}

/* Children of every start method run programs too. */
static void test_start_methods(void)
{
    for (int m = 0; m < 3; m++) {
        mproc_process *p;
        CHECK_OK(mproc_process_new(&p, t_run_in_child, NULL));
        CHECK_OK(mproc_process_set_start_method(p, mproc_test_methods[m]));
        CHECK_OK(mproc_process_start(p));
        CHECK_OK(mproc_process_join(p, 30));
        CHECK_EQ(mproc_process_exitcode(p), 0);
        mproc_process_free(p);
    }
}

static const mproc_test tests[] = {
    {"run_basics", test_run_basics, 30},
    {"shortcuts", test_shortcuts, 30},
    {"signals_and_codes", test_signals_and_codes, 30},
    {"sentinel_wait", test_sentinel_wait, 30},
    {"stdio_kinds", test_stdio_kinds, 30},
    {"environment_options", test_environment_options, 30},
    {"sessions_and_groups", test_sessions_and_groups, 30},
    {"exec_failures", test_exec_failures, 30},
    {"notify", test_notify, 30},
    {"fd_hygiene", test_fd_hygiene, 60},
    {"closed_stdio", test_closed_stdio, 30},
    {"sigpipe_early_exit", test_sigpipe_early_exit, 30},
    {"communicate_big", test_communicate_big, 120},
    {"communicate_resume", test_communicate_resume, 30},
    {"streaming", test_streaming, 30},
    {"gigabyte_sink", test_gigabyte_sink, 180},
    {"timeouts_grandchild", test_timeouts_grandchild, 30},
    {"eintr", test_eintr, 60},
    {"threads_1000", test_threads_1000, 300},
    {"parent_death", test_parent_death, 30},
    {"free_running_and_fork", test_free_running_and_fork, 30},
    {"fd_limit", test_fd_limit, 30},
    {"start_methods", test_start_methods, 120},
};

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--list-fds") == 0)
        return list_fds();
    return mproc_test_main(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
