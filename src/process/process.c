/*
 * process/process.c - process objects: create, join, signal, reap; the
 * current and parent process; the registry of children that
 * active_children and shutdown walk. Starting one is start.c's.
 *
 * Each child has exactly one reaper: the object that started it (through
 * its pidfd, or under forkserver the status the server sends back). Once
 * reaped a process is marked done and never signalled again; signals go
 * through the pidfd, so a recycled pid can never be hit.
 */
#include "process/process.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static mproc_process *g_children; /* under the library lock */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static mproc_process g_current, g_parent;
static bool g_have_parent;

static void atfork_child(void)
{
    /* The child must not see its siblings as children. */
    g_children = NULL;
}

static void object_init(mproc_process *p, int role)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    p->role = role;
    p->pidfd = -1;
    p->conn = -1;
    p->exitcode = MPROC_EXITCODE_NONE;
    atomic_init(&p->refs, 1);
}

static void process_init_once(void)
{
    mproc__self_init();
    object_init(&g_current, MPROC__P_CURRENT);
    pthread_atfork(NULL, NULL, atfork_child);
}

static void process_init(void)
{
    pthread_once(&g_once, process_init_once);
}

/* ---- parent ------------------------------------------------------------ */

void mproc__set_parent(pid_t pid, const char *name, int pidfd)
{
    object_init(&g_parent, MPROC__P_PARENT);
    g_parent.pid = pid;
    g_parent.pidfd = pidfd;
    g_parent.state = MPROC__ST_RUNNING;
    snprintf(g_parent.name, sizeof g_parent.name, "%s", name);
    g_have_parent = true;
}

mproc_process *mproc_parent_process(void)
{
    process_init();
    return g_have_parent ? &g_parent : NULL;
}

mproc_process *mproc_current_process(void)
{
    process_init();
    g_current.pid = getpid();
    g_current.daemon = mproc__me.daemon;
    g_current.state = MPROC__ST_RUNNING;
    return &g_current;
}

/* ---- objects ------------------------------------------------------------ */

int mproc_process_new(mproc_process **out, mproc_target target,
                      const mproc_args *args)
{
    if (!out || !target)
        return -EINVAL;
    process_init();
    mproc_process *p = malloc(sizeof *p);
    if (!p)
        return -ENOMEM;
    object_init(p, MPROC__P_CHILD);
    p->args = mproc__args_copy(args);
    if (!p->args) {
        free(p);
        return -ENOMEM;
    }
    p->target = target;
    p->daemon = mproc__me.daemon;
    mproc__lock();
    unsigned n = ++mproc__me.counter;
    mproc__unlock();
    if (mproc__me.identity[0])
        snprintf(p->identity, sizeof p->identity, "%s:%u", mproc__me.identity,
                 n);
    else
        snprintf(p->identity, sizeof p->identity, "%u", n);
    snprintf(p->name, sizeof p->name, "Process-%s", p->identity);
    *out = p;
    return 0;
}

static void process_destroy(mproc_process *p)
{
    mproc__close(p->pidfd);
    mproc__close(p->conn);
    mproc_args_free(p->args);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

static void process_unref(mproc_process *p)
{
    if (atomic_fetch_sub(&p->refs, 1) == 1)
        process_destroy(p);
}

void mproc_process_free(mproc_process *p)
{
    if (!p || p->role != MPROC__P_CHILD)
        return;
    process_unref(p);
}

static int check_settable(mproc_process *p)
{
    if (!p || p->role != MPROC__P_CHILD)
        return -EINVAL;
    return p->state == MPROC__ST_NEW ? 0 : MPROC_ESTARTED;
}

int mproc_process_set_name(mproc_process *p, const char *name)
{
    int r = check_settable(p);
    if (r == 0 && (!name || !name[0]))
        r = -EINVAL;
    if (r == 0)
        snprintf(p->name, sizeof p->name, "%s", name);
    return r;
}

int mproc_process_set_daemon(mproc_process *p, int daemon)
{
    int r = check_settable(p);
    if (r == 0)
        p->daemon = daemon != 0;
    return r;
}

int mproc_process_set_start_method(mproc_process *p, mproc_start_method m)
{
    int r = check_settable(p);
    if (r == 0 && (m < MPROC_START_DEFAULT || m > MPROC_START_FORKSERVER))
        r = -EINVAL;
    if (r == 0)
        p->method = m;
    return r;
}

const char *mproc_process_name(const mproc_process *p)
{
    if (!p)
        return NULL;
    return p->role == MPROC__P_CURRENT ? mproc__me.name : p->name;
}

int mproc_process_daemon(const mproc_process *p)
{
    if (!p)
        return 0;
    return p->role == MPROC__P_CURRENT ? mproc__me.daemon : p->daemon;
}

pid_t mproc_process_pid(const mproc_process *p)
{
    if (!p)
        return 0;
    return p->role == MPROC__P_CURRENT ? getpid() : p->pid;
}

int mproc_process_sentinel(const mproc_process *p)
{
    if (!p)
        return -EINVAL;
    if (p->closed)
        return MPROC_ECLOSED;
    if (p->role == MPROC__P_PARENT)
        return p->pidfd >= 0 ? p->pidfd : MPROC_ENOTSTARTED;
    if (p->state == MPROC__ST_NEW || p->role == MPROC__P_CURRENT)
        return MPROC_ENOTSTARTED;
    return p->pidfd;
}

/* ---- registry ----------------------------------------------------------- */

void mproc__registry_add(mproc_process *p)
{
    atomic_fetch_add(&p->refs, 1);
    mproc__lock();
    p->next = g_children;
    g_children = p;
    mproc__unlock();
}

static void registry_remove(mproc_process *p)
{
    bool found = false;
    mproc__lock();
    for (mproc_process **pp = &g_children; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            found = true;
            break;
        }
    mproc__unlock();
    if (found)
        process_unref(p);
}

/* ---- reaping ------------------------------------------------------------ */

static int exitcode_of(const siginfo_t *si)
{
    if (si->si_code == CLD_EXITED)
        return si->si_status;
    return -si->si_status;
}

/*
 * Collects the exit status if the child has finished. Called with p->mu
 * held. Returns 1 when done (now or before), 0 when still running, -errno.
 */
static int reap_locked(mproc_process *p)
{
    if (p->state == MPROC__ST_DONE)
        return 1;
    mproc__deadline now = mproc__deadline_from(0);
    if (p->conn >= 0) {
        /* Fork server child. The pidfd tells that it ended; its code then
         * is on the connection: written by the child itself when its
         * target returned, else by the server once it has reaped it. */
        int r = mproc__poll_fd(p->pidfd, POLLIN, &now, NULL);
        if (r <= 0)
            return r;
        mproc__deadline soon = mproc__deadline_from(10);
        int32_t msg[2] = {0, p->early == INT32_MIN ? 255 : p->early};
        if (p->early == INT32_MIN) {
            r = mproc__poll_fd(p->conn, POLLIN, &soon, NULL);
            if (r == 1)
                r = mproc__read_all(p->conn, msg, sizeof msg);
            /* No word (the server died): the code is lost. */
            if (r != 0)
                msg[1] = 255;
        }
        p->exitcode = msg[1];
        p->state = MPROC__ST_DONE;
        return 1;
    }
    siginfo_t si;
    memset(&si, 0, sizeof si);
    for (;;) {
        if (waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG) ==
            0)
            break;
        if (errno == EINTR)
            continue;
        if (errno == ECHILD) {
            /* Someone else reaped it (SIGCHLD set to SIG_IGN, or a stray
             * waitpid(-1)): the status is lost. */
            p->exitcode = 255;
            p->state = MPROC__ST_DONE;
            return 1;
        }
        return -errno;
    }
    if (si.si_pid == 0)
        return 0;
    p->exitcode = exitcode_of(&si);
    p->state = MPROC__ST_DONE;
    return 1;
}

static int check_child(mproc_process *p)
{
    if (!p)
        return -EINVAL;
    if (p->role != MPROC__P_CHILD)
        return -ECHILD;
    if (p->closed)
        return MPROC_ECLOSED;
    if (p->state == MPROC__ST_NEW)
        return MPROC_ENOTSTARTED;
    if (p->owner != getpid())
        return -ECHILD;
    return 0;
}

/* Polls for completion and reaps; 1 done, 0 running, <0 error. */
static int poll_done(mproc_process *p)
{
    pthread_mutex_lock(&p->mu);
    int was = p->state;
    int r = reap_locked(p);
    pthread_mutex_unlock(&p->mu);
    if (r == 1 && was != MPROC__ST_DONE) {
        mproc_debug("process %s (pid %d) exited with code %d", p->name,
                    (int)p->pid, p->exitcode);
        registry_remove(p);
    }
    return r;
}

int mproc_process_join(mproc_process *p, double timeout)
{
    if (p == &g_current)
        return -EDEADLK;
    int r = check_child(p);
    if (r < 0)
        return r;
    mproc__deadline d = mproc__deadline_from(timeout);
    for (;;) {
        if (p->state == MPROC__ST_DONE)
            return 0;
        /* The sentinel becomes readable when the child ends (a pidfd) or
         * when the fork server reports it; only then reap. */
        r = mproc__poll_fd(p->pidfd, POLLIN, &d, NULL);
        if (r < 0)
            return r;
        r = poll_done(p);
        if (r < 0)
            return r;
        if (r == 1)
            return 0;
        if (mproc__deadline_expired(&d) || timeout == 0)
            return -ETIMEDOUT;
    }
}

int mproc_process_is_alive(mproc_process *p)
{
    if (!p)
        return 0;
    if (p->role == MPROC__P_CURRENT)
        return 1;
    if (p->role == MPROC__P_PARENT) {
        if (p->pidfd < 0) {
            int fd = mproc__pidfd_open(p->pid);
            /* The parent is alive iff it is still our parent. */
            if (fd < 0 || getppid() != p->pid) {
                mproc__close(fd);
                return 0;
            }
            p->pidfd = fd;
        }
        mproc__deadline now = mproc__deadline_from(0);
        return mproc__poll_fd(p->pidfd, POLLIN, &now, NULL) == 0;
    }
    int r = check_child(p);
    if (r == MPROC_ECLOSED)
        return r; /* Python: ValueError, the object is closed */
    if (r < 0)
        return 0;
    return poll_done(p) == 0;
}

int mproc_process_exitcode(mproc_process *p)
{
    if (!p || p->role != MPROC__P_CHILD || p->state == MPROC__ST_NEW)
        return MPROC_EXITCODE_NONE;
    if (!p->closed && p->owner == getpid())
        (void)poll_done(p);
    return p->state == MPROC__ST_DONE ? p->exitcode : MPROC_EXITCODE_NONE;
}

int mproc_process_signal(mproc_process *p, int sig)
{
    int r = check_child(p);
    if (r < 0)
        return r;
    if (sig < 0 || sig >= NSIG)
        return -EINVAL;
    pthread_mutex_lock(&p->mu);
    if (p->state == MPROC__ST_DONE)
        r = MPROC_EREAPED;
    else
        r = mproc__pidfd_send_signal(p->pidfd, sig);
    pthread_mutex_unlock(&p->mu);
    /* A zombie not yet reaped reports ESRCH on some kernels: it has
     * exited, which is what the caller wanted. */
    return r == -ESRCH ? 0 : r;
}

int mproc_process_terminate(mproc_process *p)
{
    return mproc_process_signal(p, SIGTERM);
}

int mproc_process_kill(mproc_process *p)
{
    return mproc_process_signal(p, SIGKILL);
}

int mproc_process_close(mproc_process *p)
{
    if (!p || p->role != MPROC__P_CHILD)
        return -EINVAL;
    if (p->closed)
        return 0;
    if (p->state == MPROC__ST_RUNNING && p->owner == getpid()) {
        if (poll_done(p) != 1)
            return MPROC_ERUNNING;
    }
    /* poll_done may drop the registry's reference; the caller's keeps p. */
    // NOLINTBEGIN(clang-analyzer-unix.Malloc)
    pthread_mutex_lock(&p->mu);
    p->closed = true;
    mproc__close(p->pidfd);
    mproc__close(p->conn);
    p->pidfd = p->conn = -1;
    pthread_mutex_unlock(&p->mu);
    // NOLINTEND(clang-analyzer-unix.Malloc)
    return 0;
}

int mproc_active_children(mproc_process **out, size_t max)
{
    process_init();
    /* Snapshot under the lock with references, then reap outside it. */
    size_t n = 0, cap = 0;
    mproc_process **v = NULL;
    mproc__lock();
    for (mproc_process *p = g_children; p; p = p->next) {
        if (MPROC__GROW(v, cap, n + 1) < 0) {
            mproc__unlock();
            for (size_t i = 0; i < n; i++)
                process_unref(v[i]);
            free(v);
            return -ENOMEM;
        }
        atomic_fetch_add(&p->refs, 1);
        v[n++] = p;
    }
    mproc__unlock();
    int alive = 0;
    for (size_t i = 0; i < n; i++) {
        if (poll_done(v[i]) == 0) {
            if (out && (size_t)alive < max) {
                out[alive++] = v[i];
                continue;
            }
            alive++;
        }
        /* poll_done may drop the registry's reference, never this one
         * (the analyzer cannot count atomic references). */
        process_unref(v[i]); // NOLINT(clang-analyzer-unix.Malloc)
    }
    free(v);
    return alive;
}

int mproc_shutdown(void)
{
    process_init();
    mproc__run_finalizers(0);
    /* Python's exit work: terminate daemonic children, join the rest. */
    mproc_process *v[256];
    mproc__lock();
    bool any = g_children != NULL;
    mproc__unlock();
    for (int round = 0; any && round < 2; round++) {
        int n = mproc_active_children(v, MPROC__ARRAY_LEN(v));
        if (n <= 0)
            break;
        if ((size_t)n > MPROC__ARRAY_LEN(v))
            n = (int)MPROC__ARRAY_LEN(v);
        for (int i = 0; i < n; i++)
            if (v[i]->daemon && round == 0) {
                mproc_info("calling terminate() for daemon %s", v[i]->name);
                mproc_process_terminate(v[i]);
            }
        for (int i = 0; i < n; i++) {
            mproc_info("calling join() for process %s", v[i]->name);
            mproc_process_join(v[i], -1);
            /* Our reference from mproc_active_children: see above. */
            mproc_process_free(v[i]); // NOLINT(clang-analyzer-unix.Malloc)
        }
    }
    mproc__run_finalizers(INT_MIN);
    mproc__run_shutdown_hooks();
    return 0;
}
