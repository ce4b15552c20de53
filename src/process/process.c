/*
 * process/process.c - process objects: create, join, signal, reap; the
 * current and parent process; the registry of children that
 * active_children and shutdown walk; the sentinel pipes that stand in for
 * pidfds where there are none. Starting one is start.c's.
 *
 * Each child has exactly one reaper: the object that started it (through
 * its pidfd, or under forkserver the status the server sends back). Once
 * reaped a process is marked done and never signalled again; signals go
 * through the pidfd, so a recycled pid can never be hit. Without pidfds
 * (valgrind, old kernels) a child's pid is still safe to signal while we
 * have not reaped it, and a forkserver child is signalled by its server.
 */
#include "process/process.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
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

/* Sentinel pipes (process.h). The guarded fds are under the library lock,
 * which every fork takes (self.c), so a fork sees them whole. */
static int *g_guard;
static size_t g_nguard, g_capguard;
static __thread int tl_fork_keep = -1;

static void atfork_child(void)
{
    /* The child must not see its siblings as children. */
    g_children = NULL;
    /* Nor hold the write ends of others' sentinels: only the one a start
     * by fork hands it stays (guarded: its own children close it). */
    size_t kept = 0;
    for (size_t i = 0; i < g_nguard; i++) {
        if (g_guard[i] == tl_fork_keep)
            g_guard[kept++] = g_guard[i];
        else
            close(g_guard[i]);
    }
    g_nguard = kept;
}

static void object_init(mproc_process *p, int role)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    p->role = role;
    p->sentinel = -1;
    p->life_w = -1;
    p->conn = -1;
    p->exitcode = MPROC_EXITCODE_NONE;
    atomic_init(&p->refs, 1);
}

/* Registered when the library loads: glibc skips a handler registered
 * while another thread forks, and that child would see its siblings. */
__attribute__((constructor)) static void process_atfork(void)
{
    pthread_atfork(NULL, NULL, atfork_child);
}

static void process_init_once(void)
{
    mproc__self_init();
    object_init(&g_current, MPROC__P_CURRENT);
}

static void process_init(void)
{
    pthread_once(&g_once, process_init_once);
}

/* ---- sentinel pipes ----------------------------------------------------- */

/* Library lock held. */
static int guard_locked(int fd)
{
    if (MPROC__GROW(g_guard, g_capguard, g_nguard + 1) < 0)
        return -ENOMEM;
    g_guard[g_nguard++] = fd;
    return 0;
}

int mproc__guard_fd(int fd)
{
    process_init();
    mproc__lock();
    int r = guard_locked(fd);
    mproc__unlock();
    return r;
}

int mproc__guarded_pipe(int fds[2])
{
    process_init();
    mproc__lock();
    int r = pipe2(fds, O_CLOEXEC) < 0 ? mproc__neg_errno() : 0;
    if (r == 0 && (r = guard_locked(fds[1])) < 0) {
        close(fds[0]);
        close(fds[1]);
    }
    mproc__unlock();
    return r;
}

void mproc__unguard_close(int fd)
{
    if (fd < 0)
        return;
    mproc__lock();
    for (size_t i = 0; i < g_nguard; i++)
        if (g_guard[i] == fd) {
            g_guard[i] = g_guard[--g_nguard];
            break;
        }
    mproc__close(fd);
    mproc__unlock();
}

void mproc__fork_mark(int keep)
{
    tl_fork_keep = keep;
}

/* ---- parent ------------------------------------------------------------ */

void mproc__set_parent(pid_t pid, const char *name, int sentinel)
{
    /* A fork child of a child: the grandparent's sentinel is not ours. */
    if (g_have_parent)
        mproc__close(g_parent.sentinel);
    object_init(&g_parent, MPROC__P_PARENT);
    g_parent.pid = pid;
    g_parent.sentinel = sentinel;
    g_parent.state = MPROC__ST_RUNNING;
    snprintf(g_parent.name, sizeof g_parent.name, "%s", name);
    g_have_parent = true;
}

/*
 * The parent's sentinel, opened when first needed: a fork child gets no
 * pidfd on its parent at start (a fork child's first instructions stay
 * cheap). The pidfd is the parent's only while the parent is still ours:
 * checked after opening, so a recycled pid is never taken for it. Returns
 * the fd or -ESRCH when the parent has ended already. g_parent.mu held.
 */
static int parent_sentinel_locked(void)
{
    if (g_parent.sentinel >= 0)
        return g_parent.sentinel;
    if (getppid() != g_parent.pid)
        return -ESRCH;
    int fd = mproc__pidfd_open(g_parent.pid);
    if (fd == -ENOSYS)
        return fd; /* without pidfds every child has one from the start */
    if (fd < 0 || getppid() != g_parent.pid) {
        mproc__close(fd);
        return -ESRCH;
    }
    g_parent.sentinel = fd;
    return fd;
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

/* Closes p->life_w, if this process holds it: in a fork child that
 * inherited p it is gone already (guarded), its number maybe reused. */
static void life_close(mproc_process *p)
{
    if (p->owner == getpid())
        mproc__unguard_close(p->life_w);
    p->life_w = -1;
}

static void process_destroy(mproc_process *p)
{
    mproc__close(p->sentinel);
    life_close(p);
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
    if (p == &g_parent) {
        pthread_mutex_lock(&g_parent.mu);
        int fd = parent_sentinel_locked();
        pthread_mutex_unlock(&g_parent.mu);
        return fd;
    }
    if (p->state == MPROC__ST_NEW || p->role != MPROC__P_CHILD)
        return MPROC_ENOTSTARTED;
    return p->sentinel;
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

/* Our own child (fork, spawn): reaps it if it has ended, by its pidfd or
 * by its pid, which cannot have been given to another process while we
 * have not reaped it. p->mu held; returns as reap_locked. */
static int reap_own(mproc_process *p)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    idtype_t idt = p->pidfd ? (idtype_t)P_PIDFD : P_PID;
    id_t id = p->pidfd ? (id_t)p->sentinel : (id_t)p->pid;
    for (;;) {
        if (waitid(idt, id, &si, WEXITED | WNOHANG) == 0)
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

/* Reads one 8-byte message from p->conn, the report pipe (non-blocking;
 * its messages are written whole). Returns 1, 0 at its end of file, or
 * -EAGAIN when there is none yet. */
static int report_read(const mproc_process *p, int32_t msg[2])
{
    ssize_t n;
    while ((n = read(p->conn, msg, 2 * sizeof(int32_t))) < 0 && errno == EINTR)
        ;
    if (n < 0)
        return errno == EAGAIN ? -EAGAIN : 0;
    return n == 2 * sizeof(int32_t);
}

/* A fork server child with a pidfd, which has told that it ended: its
 * code is on the report pipe, written by the child itself when its
 * target returned (before it exited, so it is there now), else by the
 * server once it has reaped it. p->mu held. */
static int reap_forkserver_pidfd(mproc_process *p)
{
    int32_t msg[2] = {0, 255};
    int r = report_read(p, msg);
    if (r == -EAGAIN) {
        mproc__deadline soon = mproc__deadline_from(10);
        if (mproc__poll_fd(p->conn, POLLIN, &soon, NULL) == 1)
            r = report_read(p, msg);
    }
    /* No word (the server died): the code is lost. */
    if (r != 1)
        msg[1] = 255;
    p->exitcode = msg[1];
    p->state = MPROC__ST_DONE;
    return 1;
}

/* A fork server child without pidfds: ended and reaped once the report
 * pipe reads end of file, as both the child (at its exit) and the server
 * (once it has reaped it and sent the code, or when it died) have closed
 * their ends. The first code to come is the exit code, as with a pidfd.
 * p->mu held; returns as reap_locked. */
static int reap_forkserver_pipe(mproc_process *p)
{
    for (;;) {
        int32_t msg[2];
        int n = report_read(p, msg);
        if (n == -EAGAIN)
            return 0; /* not reaped yet */
        if (n == 0) { /* end of file: ended and reaped */
            p->exitcode = p->early == INT32_MIN ? 255 : p->early;
            p->state = MPROC__ST_DONE;
            return 1;
        }
        if ((msg[0] == 'C' || msg[0] == 'S') && p->early == INT32_MIN)
            p->early = msg[1];
    }
}

/*
 * Collects the exit status if the child has finished. Called with p->mu
 * held. Returns 1 when done (now or before), 0 when still running, -errno.
 */
static int reap_locked(mproc_process *p)
{
    if (p->state == MPROC__ST_DONE)
        return 1;
    if (p->pidfd && p->conn < 0)
        return reap_own(p);
    mproc__deadline now = mproc__deadline_from(0);
    int r = mproc__poll_fd(p->sentinel, POLLIN, &now, NULL);
    if (r <= 0)
        return r;
    if (p->pidfd)
        return reap_forkserver_pidfd(p);
    /* The sentinel pipe read end of file: the child is in its last
     * instructions. A moment more and the kernel has made it a zombie, or
     * the fork server has reaped it; unless it lives on (it exec'd, or
     * closed fds it did not open). Wait that moment, once: users take a
     * ready sentinel to mean that is_alive() says 0. */
    mproc__deadline grace = mproc__deadline_from(p->lingers ? 0 : 0.2);
    long nap_us = 20;
    for (int tries = 0;; tries++) {
        r = p->conn >= 0 ? reap_forkserver_pipe(p) : reap_own(p);
        if (r != 0)
            return r;
        if (mproc__deadline_expired(&grace)) {
            p->lingers = true;
            return 0;
        }
        if (tries < 64) { /* the usual microseconds: no timer slack */
            sched_yield();
            continue;
        }
        struct timespec ts = {0, nap_us * 1000};
        nanosleep(&ts, NULL);
        nap_us = nap_us < 1000 ? nap_us * 2 : 2000;
    }
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
    if (r == 1)
        life_close(p); /* the child is gone: no one watches us by it */
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
    long nap_ms = 0;
    for (;;) {
        if (p->state == MPROC__ST_DONE)
            return 0;
        /* The sentinel becomes readable when the child ends; only then
         * reap. A sentinel pipe can also read end of file while the child
         * lives on (it exec'd, or closed fds it did not open): then look
         * again every few milliseconds. */
        if (nap_ms == 0) {
            r = mproc__poll_fd(p->sentinel, POLLIN, &d, NULL);
            if (r < 0)
                return r;
            if (r == 1 && !p->pidfd)
                nap_ms = 1;
        } else {
            int left = mproc__deadline_poll_ms(&d);
            struct timespec ts = {0, 1000000L * nap_ms};
            if (left >= 0 && left < nap_ms)
                ts.tv_nsec = 1000000L * left;
            nanosleep(&ts, NULL);
            nap_ms = nap_ms < 32 ? nap_ms * 2 : 50;
        }
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
        pthread_mutex_lock(&p->mu);
        int fd = parent_sentinel_locked();
        pthread_mutex_unlock(&p->mu);
        /* No sentinel at all (no pidfds, and a parent that gave none):
         * alive while it is still our parent. */
        if (fd == -ENOSYS)
            return getppid() == p->pid;
        mproc__deadline now = mproc__deadline_from(0);
        return fd >= 0 && mproc__poll_fd(fd, POLLIN, &now, NULL) == 0;
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

/* Has the fork server that forked p send it sig (MPROC__FS_KILL): it is
 * the parent, and knows whether it has reaped p, so a pid given to
 * another process since is never hit. Returns 0, -ESRCH (reaped already),
 * -errno from kill, or MPROC_EFORKSERVER when that server is gone. */
static int forkserver_signal(const mproc_process *p, int sig)
{
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return mproc__neg_errno();
    int r;
    while ((r = connect(s, (const struct sockaddr *)&p->server,
                        p->server_len)) < 0 &&
           errno == EINTR)
        ;
    struct {
        struct mproc__fs_req h;
        int32_t body[2];
    } req = {{MPROC__FS_KILL, 0, 8}, {p->pid, sig}};
    int32_t reply[2] = {0, 0};
    mproc__deadline d = mproc__deadline_from(10);
    if (r < 0 || mproc__write_all(s, &req, sizeof req) < 0 ||
        mproc__poll_fd(s, POLLIN, &d, NULL) != 1 ||
        mproc__read_all(s, reply, sizeof reply) < 0 || reply[0] != 'K' ||
        reply[1] > 0)
        r = MPROC_EFORKSERVER;
    else
        r = reply[1];
    close(s);
    return r;
}

/* Sends sig to p, never to a process that has its pid after it. p->mu
 * held, p not reaped by us. */
static int signal_locked(mproc_process *p, int sig)
{
    if (p->pidfd)
        return mproc__pidfd_send_signal(p->sentinel, sig);
    if (p->conn >= 0) {
        /* The fork server is its parent and reaper: it signals it for us,
         * knowing whether it has reaped it. */
        int r = forkserver_signal(p, sig);
        if (r != MPROC_EFORKSERVER)
            return r;
        /* That server is gone, and whoever adopted the child reaps it:
         * signal by pid while its sentinel says it runs. (The one window
         * left: it ends, is reaped and its pid reused between the two.) */
        mproc__deadline now = mproc__deadline_from(0);
        r = mproc__poll_fd(p->sentinel, POLLIN, &now, NULL);
        if (r != 0)
            return r < 0 ? r : 0;
        return kill(p->pid, sig) < 0 ? mproc__neg_errno() : 0;
    }
    /* Our own child, which we have not reaped, so its pid is still its
     * own; unless something else reaped it (a waitpid(-1) elsewhere,
     * SIGCHLD ignored), which a look that reaps nothing tells. */
    siginfo_t si;
    while (waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0) {
        if (errno == EINTR)
            continue;
        return errno == ECHILD ? -ESRCH : mproc__neg_errno();
    }
    return kill(p->pid, sig) < 0 ? mproc__neg_errno() : 0;
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
        r = signal_locked(p, sig);
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
    mproc__close(p->sentinel);
    mproc__close(p->conn);
    life_close(p);
    p->sentinel = p->conn = -1;
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
