/*
 * subprocess/popen.c - the Popen object: creating and freeing it, reaping
 * its child (poll, wait with a timeout), signals to it and to its process
 * group, and the children of freed objects, reaped later.
 *
 * Reaping and signalling take the object's lock, so that no signal is
 * sent to a pid after it was reaped (where there are no pidfds, when a
 * pid could be someone else's). Waits sleep unlocked: on the pidfd, or
 * without pidfds on the sentinel pipe, whose write end only the child
 * holds, then in short naps once it reads end of file.
 */
#include "subprocess/subprocess_impl.h"

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- children of freed objects (Popen.__del__'s _active list) ----------- */

typedef struct orphan {
    pid_t pid;
    int pidfd;
} orphan;

static pthread_mutex_t g_orphan_mu = PTHREAD_MUTEX_INITIALIZER;
static orphan *g_orphans;
static size_t g_norphans, g_orphan_cap;

static void orphans_prepare(void)
{
    pthread_mutex_lock(&g_orphan_mu);
}

static void orphans_parent(void)
{
    pthread_mutex_unlock(&g_orphan_mu);
}

/* A fork child: its parent's children are not its own. */
static void orphans_child(void)
{
    for (size_t i = 0; i < g_norphans; i++)
        mproc__close(g_orphans[i].pidfd);
    g_norphans = 0;
    pthread_mutex_unlock(&g_orphan_mu);
}

__attribute__((constructor)) static void orphans_init(void)
{
    /* Never fork with the list half-edited. */
    mproc__atfork_register(); /* first: see there */
    pthread_atfork(orphans_prepare, orphans_parent, orphans_child);
}

/* Reaps what has ended of the freed objects' children. */
static void reap_orphans(void)
{
    pthread_mutex_lock(&g_orphan_mu);
    size_t w = 0;
    for (size_t i = 0; i < g_norphans; i++) {
        orphan *o = &g_orphans[i];
        siginfo_t si;
        memset(&si, 0, sizeof si);
        idtype_t idt = o->pidfd >= 0 ? (idtype_t)P_PIDFD : P_PID;
        id_t id = o->pidfd >= 0 ? (id_t)o->pidfd : (id_t)o->pid;
        int r;
        while ((r = waitid(idt, id, &si, WEXITED | WNOHANG)) < 0 &&
               errno == EINTR)
            ;
        if (r == 0 && si.si_pid == 0) {
            g_orphans[w++] = *o; /* still running */
            continue;
        }
        mproc__close(o->pidfd); /* reaped, or not ours (ECHILD) */
    }
    g_norphans = w;
    pthread_mutex_unlock(&g_orphan_mu);
}

/* Keeps a running child of a freed object to reap later; if even that
 * cannot be had, the child is left to init. Takes the pidfd. */
static void adopt(pid_t pid, int pidfd)
{
    pthread_mutex_lock(&g_orphan_mu);
    if (MPROC__GROW(g_orphans, g_orphan_cap, g_norphans + 1) == 0)
        g_orphans[g_norphans++] = (orphan){pid, pidfd};
    else
        mproc__close(pidfd);
    pthread_mutex_unlock(&g_orphan_mu);
}

/* ---- the object --------------------------------------------------------- */

int mproc_popen_new(mproc_popen **out, const char *const *argv,
                    const mproc_popen_opts *opts, const char **step)
{
    const char *dummy;
    if (!step)
        step = &dummy;
    *step = "";
    if (!out)
        return -EINVAL;
    *out = NULL;
    reap_orphans();
    mproc_popen *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    int r = mproc__sp_start(p, argv, opts, step);
    if (r < 0) {
        free(p);
        return r;
    }
    pthread_mutex_init(&p->mu, NULL);
    p->owner = getpid();
    p->returncode = MPROC_RETURNCODE_NONE;
    *out = p;
    return 0;
}

int mproc__sp_owned(const mproc_popen *p)
{
    return p->owner == getpid() ? 0 : -ECHILD;
}

void mproc_popen_free(mproc_popen *p)
{
    if (!p)
        return;
    int kept = -1;
    if (mproc__sp_owned(p) == 0 && mproc__sp_reap(p, NULL) == 0) {
        adopt(p->pid, p->pidfd);
        kept = p->pidfd;
    }
    if (p->pidfd != kept)
        mproc__close(p->pidfd);
    if (p->sentinel != p->pidfd)
        mproc__close(p->sentinel);
    for (int i = 0; i < 3; i++)
        mproc__close(p->fd[i]);
    for (int i = 0; i < 2; i++) {
        mproc__buf_free(&p->cap[i]);
        mproc__buf_free(&p->line[i]);
    }
    mproc__buf_free(&p->rbuf);
    mproc__buf_free(&p->lineout);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

pid_t mproc_popen_pid(const mproc_popen *p)
{
    return p ? p->pid : 0;
}

int mproc_popen_stdin(const mproc_popen *p)
{
    return p ? p->fd[0] : -1;
}

int mproc_popen_stdout(const mproc_popen *p)
{
    return p ? p->fd[1] : -1;
}

int mproc_popen_stderr(const mproc_popen *p)
{
    return p ? p->fd[2] : -1;
}

int mproc_popen_close_stdin(mproc_popen *p)
{
    if (!p || p->fd[0] < 0)
        return -EBADF;
    mproc__close(p->fd[0]);
    p->fd[0] = -1;
    return 0;
}

int mproc_popen_sentinel(const mproc_popen *p)
{
    return p ? p->sentinel : -EINVAL;
}

int mproc_popen_returncode(const mproc_popen *p)
{
    if (!p)
        return MPROC_RETURNCODE_NONE;
    mproc_popen *q = (mproc_popen *)p;
    pthread_mutex_lock(&q->mu);
    int rc = q->returncode;
    pthread_mutex_unlock(&q->mu);
    return rc;
}

/* ---- reaping ------------------------------------------------------------ */

/* p->mu held: 1 reaped (now or before), 0 running, or -errno. */
static int reap_locked(mproc_popen *p)
{
    if (p->returncode != MPROC_RETURNCODE_NONE)
        return 1;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    idtype_t idt = p->pidfd >= 0 ? (idtype_t)P_PIDFD : P_PID;
    id_t id = p->pidfd >= 0 ? (id_t)p->pidfd : (id_t)p->pid;
    while (waitid(idt, id, &si, WEXITED | WNOHANG) < 0) {
        if (errno == EINTR)
            continue;
        if (errno == ECHILD) {
            /* Reaped by someone else (SIGCHLD ignored, a waitpid(-1)):
             * the status is lost; Python says 0. */
            p->returncode = 0;
            return 1;
        }
        return -errno;
    }
    if (si.si_pid == 0)
        return 0;
    p->returncode = si.si_code == CLD_EXITED ? si.si_status : -si.si_status;
    return 1;
}

static int reap_once(mproc_popen *p)
{
    pthread_mutex_lock(&p->mu);
    int r = reap_locked(p);
    pthread_mutex_unlock(&p->mu);
    return r;
}

int mproc__sp_reap(mproc_popen *p, const mproc__deadline *d)
{
    int r = reap_once(p);
    if (r != 0 || !d)
        return r;
    bool eof = false;
    long nap_us = 100;
    for (;;) {
        if (p->pidfd >= 0) {
            int pr = mproc__poll_fd(p->pidfd, POLLIN, d, NULL);
            if (pr < 0)
                return pr;
            r = reap_once(p);
            if (r != 0)
                return r;
            if (pr == 0)
                return -ETIMEDOUT;
            continue;
        }
        /* Without pidfds: the sentinel tells the end at once, unless the
         * program closed it or a grandchild holds it: then naps. */
        if (mproc__deadline_expired(d))
            return -ETIMEDOUT;
        int ms = mproc__deadline_poll_ms(d);
        if (!eof) {
            mproc__deadline slice = mproc__deadline_from(0.05);
            if (ms >= 0 && ms < 50)
                slice = *d;
            int pr = mproc__poll_fd(p->sentinel, POLLIN, &slice, NULL);
            if (pr < 0)
                return pr;
            eof = pr == 1;
        } else {
            long us =
                ms >= 0 && (long)ms * 1000 < nap_us ? (long)ms * 1000 : nap_us;
            struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
            nanosleep(&ts, NULL);
            if (nap_us < 50000)
                nap_us *= 2;
        }
        r = reap_once(p);
        if (r != 0)
            return r;
    }
}

int mproc_popen_poll(mproc_popen *p, int *returncode)
{
    if (!p)
        return -EINVAL;
    int r = mproc__sp_owned(p);
    if (r == 0)
        r = mproc__sp_reap(p, NULL);
    if (r == 1 && returncode)
        *returncode = mproc_popen_returncode(p);
    return r;
}

int mproc_popen_wait(mproc_popen *p, double timeout, int *returncode)
{
    if (!p)
        return -EINVAL;
    int r = mproc__sp_owned(p);
    if (r < 0)
        return r;
    mproc__deadline d = mproc__deadline_from(timeout);
    r = mproc__sp_reap(p, &d);
    if (r < 0)
        return r;
    if (returncode)
        *returncode = mproc_popen_returncode(p);
    return 0;
}

/* ---- signals ------------------------------------------------------------ */

int mproc_popen_send_signal(mproc_popen *p, int sig)
{
    if (!p || sig < 0 || sig >= 65)
        return -EINVAL;
    int r = mproc__sp_owned(p);
    if (r < 0)
        return r;
    pthread_mutex_lock(&p->mu);
    if (p->returncode != MPROC_RETURNCODE_NONE)
        r = MPROC_EREAPED;
    else if (p->pidfd >= 0)
        r = mproc__pidfd_send_signal(p->pidfd, sig);
    else
        r = kill(p->pid, sig) < 0 ? -errno : 0;
    pthread_mutex_unlock(&p->mu);
    return r == -ESRCH ? MPROC_EREAPED : r;
}

int mproc_popen_terminate(mproc_popen *p)
{
    return mproc_popen_send_signal(p, SIGTERM);
}

int mproc_popen_kill(mproc_popen *p)
{
    return mproc_popen_send_signal(p, SIGKILL);
}

int mproc_popen_kill_group(mproc_popen *p, int sig)
{
    if (!p || !p->group_leader || sig < 0 || sig >= 65)
        return -EINVAL;
    int r = mproc__sp_owned(p);
    if (r < 0)
        return r;
    return killpg(p->pid, sig) < 0 ? -errno : 0;
}
