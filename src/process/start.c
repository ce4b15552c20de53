/*
 * process/start.c - mproc_process_start: the three start methods. Under
 * fork the child is a copy of this process (boot.c's fork path); under
 * spawn it is this program started anew with a boot description in a
 * memfd and a status pipe on which it reports that it booted; under
 * forkserver the fork server validates the description, forks, and sends
 * back the pid and later the exit code.
 *
 * The child's sentinel is a pidfd, and so is the child's view of us. Where
 * there are none, each is a pipe (process.h): the child holds the write end
 * of its sentinel (under spawn the status pipe, which the child then keeps
 * open), we hold the write end of its view of us (p->life_w).
 */
#include "process/process.h"

#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int start_fork(mproc_process *p)
{
    char parent_name[MPROC__NAME_MAX];
    snprintf(parent_name, sizeof parent_name, "%s", mproc__me.name);
    pid_t parent = getpid();
    bool pidfd = mproc__have_pidfd();
    int sp[2] = {-1, -1}, lp[2] = {-1, -1};
    if (!pidfd) {
        /* The child's sentinel (sp) and its view of us (lp). */
        int r = mproc__guarded_pipe(sp);
        if (r == 0 && (r = mproc__guarded_pipe(lp)) < 0) {
            close(sp[0]);
            mproc__unguard_close(sp[1]);
        }
        if (r < 0)
            return r;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    mproc__fork_mark(sp[1]);
    pid_t pid = fork();
    int e = errno;
    mproc__fork_mark(-1);
    if (pid == 0) {
        /* (lp[1] is guarded: gone already.) */
        mproc__close(sp[0]);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        mproc__fork_child(p, parent, parent_name, lp[0]);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    mproc__unguard_close(sp[1]);
    mproc__close(lp[0]);
    if (pid < 0) {
        mproc__close(sp[0]);
        mproc__unguard_close(lp[1]);
        return -e;
    }
    int fd = pidfd ? mproc__pidfd_open(pid) : sp[0];
    if (fd < 0) {
        /* Still unreaped, so the pid cannot have been recycled. */
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return fd;
    }
    p->pid = pid;
    p->sentinel = fd;
    p->pidfd = pidfd;
    p->life_w = lp[1];
    return 0;
}

static int start_exec(mproc_process *p, mproc_start_method m)
{
    int sp[2] = {-1, -1}, lp[2] = {-1, -1};
    mproc__boot b;
    memset(&b, 0, sizeof b);
    /* The child's view of us: a pidfd so parent_process() is race-free
     * even under forkserver, where we are not its real parent; without
     * pidfds a pipe whose write end we keep (lp). */
    bool spawn = m == MPROC_START_SPAWN;
    bool pidfd = mproc__have_pidfd();
    int r = 0, spid = -1;
    if (!pidfd)
        r = mproc__guarded_pipe(lp);
    else
        r = spawn ? mproc__pidfd_open(getpid())
                  : mproc__forkserver_parent_pidfd();
    if (r < 0)
        return r;
    spid = pidfd ? r : lp[0];
    bool own_spid = spawn || !pidfd;
    /* Spawn: the status pipe (and without pidfds the sentinel, kept open
     * by the child); forkserver without pidfds: the sentinel pipe. */
    unsigned use =
        (spawn ? MPROC__PIPE_STATUS : 0) | (pidfd ? 0 : MPROC__PIPE_SENTINEL);
    if (use && (r = mproc__guarded_pipe(sp)) < 0)
        goto out_close;
    r = mproc__boot_build(p, &b, sp[1], use, spid);
    if (r < 0)
        goto out_close;
    if (b.blob.oom) {
        r = -ENOMEM;
        goto out_close;
    }
    pid_t pid;
    int pidfd_fd = -1, conn = -1;
    if (m == MPROC_START_SPAWN) {
        int memfd = mproc__memfd_with("mproc-boot", b.blob.p, b.blob.len);
        if (memfd < 0) {
            r = memfd;
            goto out_close;
        }
        /* fd 3 is the description; the slots follow from fd 4. */
        int all[MPROC__ARRAY_LEN(b.fds) + 1];
        all[0] = memfd;
        memcpy(all + 1, b.fds, b.nfds * sizeof(int));
        pid = mproc__spawn_child(all, b.nfds + 1);
        close(memfd);
        if (pid < 0) {
            r = pid;
            goto out_close;
        }
        if (pidfd && (pidfd_fd = mproc__pidfd_open(pid)) < 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            r = pidfd_fd;
            goto out_close;
        }
    } else {
        /* The server validates the description before it forks and
         * answers with an error instead of a pid: no status round trip. */
        r = mproc__forkserver_start(p, b.blob.p, b.blob.len, b.fds, b.nfds,
                                    &pidfd_fd, &conn);
        if (r < 0)
            goto out_close;
        p->sentinel = pidfd ? pidfd_fd : sp[0];
        p->pidfd = pidfd;
        p->conn = conn;
        p->life_w = lp[1];
        sp[0] = lp[1] = -1;
        goto out_close;
    }
    mproc__unguard_close(sp[1]);
    sp[1] = -1;
    int32_t status = 0;
    r = mproc__read_all(sp[0], &status, sizeof status);
    if (r < 0 || status < 0) {
        /* The child failed before running the target and is on its way
         * out (it reported and returns 255, or it died): reap it here so
         * nothing is left behind. No signal: one arriving during its exit
         * work (a sanitizer's leak check forks helpers) would strand
         * them. */
        r = r < 0 ? MPROC_EBOOTSTRAP : status;
        siginfo_t si;
        idtype_t idt = pidfd ? (idtype_t)P_PIDFD : P_PID;
        id_t id = pidfd ? (id_t)pidfd_fd : (id_t)pid;
        while (waitid(idt, id, &si, WEXITED) < 0 && errno == EINTR)
            ;
        mproc__close(pidfd_fd);
        goto out_close;
    }
    p->pid = pid;
    p->sentinel = pidfd ? pidfd_fd : sp[0];
    p->pidfd = pidfd;
    p->conn = conn;
    p->life_w = lp[1];
    if (!pidfd)
        sp[0] = -1; /* the child keeps the write end open: our sentinel */
    lp[1] = -1;
    r = 0;
out_close:
    mproc__close(sp[0]);
    mproc__unguard_close(sp[1]);
    mproc__unguard_close(lp[1]);
    if (own_spid)
        mproc__close(spid);
    mproc__buf_free(&b.blob);
    return r;
}

static void register_atexit(void)
{
    static atomic_flag done = ATOMIC_FLAG_INIT;
    if (!mproc__me.is_child && !atomic_flag_test_and_set(&done))
        atexit((void (*)(void))mproc_shutdown);
}

int mproc_process_start(mproc_process *p)
{
    if (!p || p->role != MPROC__P_CHILD)
        return -EINVAL;
    pthread_mutex_lock(&p->mu);
    int r = 0;
    if (p->closed)
        r = MPROC_ECLOSED;
    else if (p->state != MPROC__ST_NEW)
        r = MPROC_ESTARTED;
    else if (mproc__me.daemon)
        r = MPROC_EDAEMON;
    if (r < 0) {
        pthread_mutex_unlock(&p->mu);
        return r;
    }
    mproc_start_method m = p->method;
    if (m == MPROC_START_DEFAULT)
        m = mproc_get_start_method();
    register_atexit();
    /* Whatever the method, the child must not print before output the
     * parent buffered earlier (and under fork would print it twice). */
    fflush(NULL);
    r = m == MPROC_START_FORK ? start_fork(p) : start_exec(p, m);
    if (r == 0) {
        p->state = MPROC__ST_RUNNING;
        p->owner = getpid();
        mproc_debug("started %s (pid %d) with %s", p->name, (int)p->pid,
                    mproc_start_method_name(m));
    }
    pthread_mutex_unlock(&p->mu);
    if (r == 0)
        mproc__registry_add(p);
    return r;
}
