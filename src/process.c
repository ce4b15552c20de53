/*
 * process.c - process objects: create, start under fork / spawn /
 * forkserver, join, signal, reap; the current and parent process; the
 * registry of children that active_children and shutdown walk.
 *
 * Each child has exactly one reaper: the object that started it (through
 * its pidfd, or under forkserver the status the server sends back). Once
 * reaped a process is marked done and never signalled again; signals go
 * through the pidfd, so a recycled pid can never be hit.
 */
#include "internal.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

enum { ST_NEW, ST_RUNNING, ST_DONE };
enum { P_CHILD, P_CURRENT, P_PARENT };

struct mproc_process {
    pthread_mutex_t mu; /* state, pidfd, conn, exitcode */
    _Atomic int refs;
    int role;
    mproc_target target;
    mproc_args *args;
    char name[MPROC__NAME_MAX];
    char identity[MPROC__NAME_MAX];
    int daemon;
    mproc_start_method method;
    int state;
    bool closed;
    pid_t pid;
    pid_t owner; /* pid of the process that started it */
    int pidfd;
    int conn;  /* forkserver: exit status arrives here */
    int early; /* forkserver: exit code that came with the pid, or MIN */
    int exitcode;
    struct mproc_process *next; /* registry link, under the global lock */
};

mproc__self mproc__me;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static mproc_process *g_children;
static _Atomic int g_default_method = MPROC_START_FORK;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static mproc_process g_current, g_parent;
static bool g_have_parent;
static int g_report_fd = -1; /* fork server child: the requester's socket */

void mproc__lock(void)
{
    pthread_mutex_lock(&g_lock);
}

void mproc__unlock(void)
{
    pthread_mutex_unlock(&g_lock);
}

static void atfork_prepare(void)
{
    pthread_mutex_lock(&g_lock);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&g_lock);
}

static void atfork_child(void)
{
    /* The child must not see its siblings as children, nor reuse a lock
     * another thread of the parent may have held. */
    pthread_mutex_init(&g_lock, NULL);
    g_children = NULL;
    if (g_report_fd >= 0) { /* the connection is our parent's business */
        close(g_report_fd);
        g_report_fd = -1;
    }
    mproc__me.pid = getpid();
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

static void self_init_once(void)
{
    if (mproc__me.name[0] == 0)
        snprintf(mproc__me.name, sizeof mproc__me.name, "MainProcess");
    if (mproc__me.authkey_len == 0) {
        if (mproc__random(mproc__me.authkey, 32) == 0)
            mproc__me.authkey_len = 32;
    }
    mproc__me.pid = getpid();
    object_init(&g_current, P_CURRENT);
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

void mproc__self_init(void)
{
    pthread_once(&g_once, self_init_once);
}

/* ---- parent ------------------------------------------------------------ */

void mproc__set_parent(pid_t pid, const char *name, int pidfd)
{
    object_init(&g_parent, P_PARENT);
    g_parent.pid = pid;
    g_parent.pidfd = pidfd;
    g_parent.state = ST_RUNNING;
    snprintf(g_parent.name, sizeof g_parent.name, "%s", name);
    g_have_parent = true;
}

mproc_process *mproc_parent_process(void)
{
    mproc__self_init();
    return g_have_parent ? &g_parent : NULL;
}

mproc_process *mproc_current_process(void)
{
    mproc__self_init();
    g_current.pid = getpid();
    g_current.daemon = mproc__me.daemon;
    g_current.state = ST_RUNNING;
    return &g_current;
}

int mproc_set_current_name(const char *name)
{
    if (!name || !name[0])
        return -EINVAL;
    mproc__self_init();
    snprintf(mproc__me.name, sizeof mproc__me.name, "%s", name);
    return 0;
}

/* ---- authkey and start methods ---------------------------------------- */

int mproc_authkey(void *buf, size_t cap)
{
    mproc__self_init();
    if (!buf && cap)
        return -EINVAL;
    size_t n = mproc__me.authkey_len < cap ? mproc__me.authkey_len : cap;
    if (n)
        memcpy(buf, mproc__me.authkey, n);
    return (int)mproc__me.authkey_len;
}

int mproc_set_authkey(const void *key, size_t len)
{
    if (!key || len == 0 || len > MPROC__AUTHKEY_MAX)
        return -EINVAL;
    mproc__self_init();
    memcpy(mproc__me.authkey, key, len);
    mproc__me.authkey_len = len;
    return 0;
}

int mproc_set_start_method(mproc_start_method m)
{
    if (m < MPROC_START_FORK || m > MPROC_START_FORKSERVER)
        return -EINVAL;
    atomic_store(&g_default_method, (int)m);
    return 0;
}

mproc_start_method mproc_get_start_method(void)
{
    return (mproc_start_method)atomic_load(&g_default_method);
}

const char *mproc_start_method_name(mproc_start_method m)
{
    switch (m) {
    case MPROC_START_FORK:
        return "fork";
    case MPROC_START_SPAWN:
        return "spawn";
    case MPROC_START_FORKSERVER:
        return "forkserver";
    default:
        return NULL;
    }
}

int mproc_start_method_parse(const char *name, mproc_start_method *out)
{
    if (!name || !out)
        return -EINVAL;
    for (int m = MPROC_START_FORK; m <= MPROC_START_FORKSERVER; m++)
        if (strcmp(name, mproc_start_method_name((mproc_start_method)m)) == 0) {
            *out = (mproc_start_method)m;
            return 0;
        }
    return -EINVAL;
}

/* ---- objects ------------------------------------------------------------ */

int mproc_process_new(mproc_process **out, mproc_target target,
                      const mproc_args *args)
{
    if (!out || !target)
        return -EINVAL;
    mproc__self_init();
    mproc_process *p = malloc(sizeof *p);
    if (!p)
        return -ENOMEM;
    object_init(p, P_CHILD);
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
    if (!p || p->role != P_CHILD)
        return;
    process_unref(p);
}

static int check_settable(mproc_process *p)
{
    if (!p || p->role != P_CHILD)
        return -EINVAL;
    return p->state == ST_NEW ? 0 : MPROC_ESTARTED;
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
    return p->role == P_CURRENT ? mproc__me.name : p->name;
}

int mproc_process_daemon(const mproc_process *p)
{
    if (!p)
        return 0;
    return p->role == P_CURRENT ? mproc__me.daemon : p->daemon;
}

pid_t mproc_process_pid(const mproc_process *p)
{
    if (!p)
        return 0;
    return p->role == P_CURRENT ? getpid() : p->pid;
}

int mproc_process_sentinel(const mproc_process *p)
{
    if (!p)
        return -EINVAL;
    if (p->closed)
        return MPROC_ECLOSED;
    if (p->role == P_PARENT)
        return p->pidfd >= 0 ? p->pidfd : MPROC_ENOTSTARTED;
    if (p->state == ST_NEW || p->role == P_CURRENT)
        return MPROC_ENOTSTARTED;
    return p->pidfd;
}

/* ---- registry ----------------------------------------------------------- */

static void registry_add(mproc_process *p)
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
    if (p->state == ST_DONE)
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
        p->state = ST_DONE;
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
            p->state = ST_DONE;
            return 1;
        }
        return -errno;
    }
    if (si.si_pid == 0)
        return 0;
    p->exitcode = exitcode_of(&si);
    p->state = ST_DONE;
    return 1;
}

static int check_child(mproc_process *p)
{
    if (!p)
        return -EINVAL;
    if (p->role != P_CHILD)
        return -ECHILD;
    if (p->closed)
        return MPROC_ECLOSED;
    if (p->state == ST_NEW)
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
    if (r == 1 && was != ST_DONE) {
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
        if (p->state == ST_DONE)
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
    if (p->role == P_CURRENT)
        return 1;
    if (p->role == P_PARENT) {
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
    if (check_child(p) < 0)
        return 0;
    return poll_done(p) == 0;
}

int mproc_process_exitcode(mproc_process *p)
{
    if (!p || p->role != P_CHILD || p->state == ST_NEW)
        return MPROC_EXITCODE_NONE;
    if (!p->closed && p->owner == getpid())
        (void)poll_done(p);
    return p->state == ST_DONE ? p->exitcode : MPROC_EXITCODE_NONE;
}

int mproc_process_signal(mproc_process *p, int sig)
{
    int r = check_child(p);
    if (r < 0)
        return r;
    if (sig < 0 || sig >= NSIG)
        return -EINVAL;
    pthread_mutex_lock(&p->mu);
    if (p->state == ST_DONE)
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
    if (!p || p->role != P_CHILD)
        return -EINVAL;
    if (p->closed)
        return 0;
    if (p->state == ST_RUNNING && p->owner == getpid()) {
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
    mproc__self_init();
    /* Snapshot under the lock with references, then reap outside it. */
    size_t n = 0, cap = 16;
    mproc_process **v = malloc(cap * sizeof(mproc_process *));
    if (!v)
        return -ENOMEM;
    mproc__lock();
    for (mproc_process *p = g_children; p; p = p->next) {
        if (n == cap) {
            mproc_process **w = realloc(v, 2 * cap * sizeof(mproc_process *));
            if (!w) {
                mproc__unlock();
                for (size_t i = 0; i < n; i++)
                    process_unref(v[i]);
                free(v);
                return -ENOMEM;
            }
            v = w;
            cap *= 2;
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
        process_unref(v[i]);
    }
    free(v);
    return alive;
}

/* ---- starting ----------------------------------------------------------- */

/* The end of every child: the library's own exit work, then flush. */
static void child_finish(void)
{
    mproc_shutdown();
    fflush(NULL);
}

extern void __gcov_dump(void) __attribute__((weak));

static void __attribute__((noreturn))
fork_child(mproc_process *p, pid_t parent, const char *parent_name)
{
    if (p->daemon) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
    }
    /* Both are NUL-terminated within the same sizes: plain copies keep
     * the child's first instructions cheap. */
    memcpy(mproc__me.name, p->name, sizeof mproc__me.name);
    memcpy(mproc__me.identity, p->identity, sizeof mproc__me.identity);
    mproc__me.counter = 0;
    mproc__me.daemon = p->daemon;
    mproc__me.is_child = 1;
    mproc__set_parent(parent, parent_name, -1);
    mproc__forkserver_forget();
    mproc_debug("child process calling target");
    int code = p->target(p->args);
    mproc_debug("process exiting with exitcode %d", code);
    child_finish();
    mproc__exit_child(code);
}

void mproc__set_report_fd(int fd)
{
    g_report_fd = fd;
}

void mproc__exit_child(int code)
{
    if (g_report_fd >= 0) {
        int32_t msg[2] = {'C', code & 0xff};
        (void)send(g_report_fd, msg, sizeof msg, MSG_NOSIGNAL);
    }
    /* _exit skips the atexit handlers a forked child inherited; coverage
     * counters would be lost with them unless dumped here. */
    if (__gcov_dump)
        __gcov_dump();
    _exit(code & 0xff);
}

static int start_fork(mproc_process *p)
{
    char parent_name[MPROC__NAME_MAX];
    snprintf(parent_name, sizeof parent_name, "%s", mproc__me.name);
    pid_t parent = getpid();
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        fork_child(p, parent, parent_name);
    }
    int e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0)
        return -e;
    int fd = mproc__pidfd_open(pid);
    if (fd < 0) {
        /* Still unreaped, so the pid cannot have been recycled. */
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return fd;
    }
    p->pid = pid;
    p->pidfd = fd;
    return 0;
}

/* Flags in the boot description. */
enum { BOOT_STATUS = 1, BOOT_LOG = 2 };

/*
 * Builds the description a spawn or forkserver child boots from. Fixed fd
 * slots first: the parent's pidfd, then the status pipe (spawn only: the
 * fork server validates before forking instead), then the log fd when
 * logging is on; the objects' fds follow.
 */
static int build_boot(mproc_process *p, mproc__boot *b, int status_w,
                      int self_pidfd)
{
    mproc__buf *o = &b->blob;
    int logfd = mproc__log_fd();
    bool log_on = logfd >= 0 && mproc_log_get_level() < MPROC_LOG_OFF;
    uint32_t flags =
        (status_w >= 0 ? BOOT_STATUS : 0) | (log_on ? BOOT_LOG : 0);
    b->nfds = 0;
    b->fds[b->nfds++] = self_pidfd;
    if (status_w >= 0)
        b->fds[b->nfds++] = status_w;
    if (log_on)
        b->fds[b->nfds++] = logfd;
    mproc__buf_u32(o, 0x6d70726f); /* "mpro" */
    mproc__buf_u32(o, flags);
    mproc__buf_str(o, p->name);
    mproc__buf_str(o, p->identity);
    mproc__buf_u32(o, (uint32_t)p->daemon);
    mproc__buf_u64(o, mproc__me.authkey_len);
    mproc__buf_put(o, mproc__me.authkey, mproc__me.authkey_len);
    mproc__buf_u32(o, (uint32_t)getpid());
    mproc__buf_str(o, mproc__me.name);
    mproc__buf_u32(o, log_on ? (uint32_t)mproc_log_get_level() : 0);
    mproc__buf_u32(o, (uint32_t)mproc_get_start_method());
    int r = mproc__ref_write(o, (const void *)p->target);
    if (r < 0)
        return r;
    return mproc__args_export(p->args, o, b->fds, &b->nfds,
                              MPROC__ARRAY_LEN(b->fds));
}

/* The fixed part of a boot description. */
typedef struct boot_head {
    uint32_t flags;
    char name[MPROC__NAME_MAX], identity[MPROC__NAME_MAX];
    char pname[MPROC__NAME_MAX];
    unsigned char key[MPROC__AUTHKEY_MAX];
    size_t klen;
    int daemon, level;
    pid_t ppid;
    uint32_t method;
    size_t nfixed; /* fd slots before the objects' */
} boot_head;

static int read_head(mproc__reader *r, boot_head *h, size_t nfds)
{
    if (mproc__rd_u32(r) != 0x6d70726f)
        return MPROC_EPROTO;
    h->flags = mproc__rd_u32(r);
    mproc__rd_str(r, h->name, sizeof h->name);
    mproc__rd_str(r, h->identity, sizeof h->identity);
    h->daemon = (int)mproc__rd_u32(r);
    uint64_t klen = mproc__rd_u64(r);
    if (klen > MPROC__AUTHKEY_MAX)
        return MPROC_EPROTO;
    mproc__rd_get(r, h->key, (size_t)klen);
    h->klen = (size_t)klen;
    h->ppid = (pid_t)mproc__rd_u32(r);
    mproc__rd_str(r, h->pname, sizeof h->pname);
    h->level = (int)mproc__rd_u32(r);
    h->method = mproc__rd_u32(r);
    h->nfixed = 1 + !!(h->flags & BOOT_STATUS) + !!(h->flags & BOOT_LOG);
    return r->bad || nfds < h->nfixed ? MPROC_EPROTO : 0;
}

int mproc__boot_validate(const unsigned char *blob, size_t len, size_t nfds)
{
    mproc__reader r = {.p = blob, .len = len};
    boot_head h;
    void *target;
    int rc = read_head(&r, &h, nfds);
    if (rc == 0)
        rc = mproc__ref_read(&r, &target);
    if (rc == 0)
        rc = mproc__args_validate(&r, nfds - h.nfixed);
    return rc;
}

int mproc__child_run(const unsigned char *blob, size_t len, int *fds,
                     size_t nfds, pid_t expected_ppid)
{
    mproc__reader r = {.p = blob, .len = len};
    int status_w = -1;
    mproc_args *args = NULL;
    boot_head h;
    mproc__self_init();
    int rc = read_head(&r, &h, nfds);
    if (rc < 0)
        goto out_report;
    if (h.flags & BOOT_STATUS) {
        status_w = fds[1];
        fds[1] = -1;
    }
    memcpy(mproc__me.name, h.name, sizeof h.name);
    memcpy(mproc__me.identity, h.identity, sizeof h.identity);
    memcpy(mproc__me.authkey, h.key, h.klen);
    mproc__me.authkey_len = h.klen;
    mproc__me.daemon = h.daemon;
    mproc__me.counter = 0;
    mproc__me.is_child = 1;
    mproc__me.pid = getpid();
    mproc__set_parent(h.ppid, h.pname, fds[0]);
    fds[0] = -1;
    if (h.flags & BOOT_LOG) {
        mproc__log_restore(fds[h.nfixed - 1], h.level);
        fds[h.nfixed - 1] = -1;
    }
    (void)mproc_set_start_method((mproc_start_method)h.method);
    if (h.daemon) {
        /* Parent here is whoever forked or spawned us: the requesting
         * process under spawn, the fork server (which exits when the
         * requesting process dies) under forkserver. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != (expected_ppid ? expected_ppid : h.ppid)) {
            rc = MPROC_EBOOTSTRAP;
            goto out_report;
        }
    }
    void *target = NULL;
    rc = mproc__ref_read(&r, &target);
    if (rc < 0)
        goto out_report;
    rc = mproc__args_import(&r, fds + h.nfixed, nfds - h.nfixed, &args);
    if (rc < 0)
        goto out_report;
    if (status_w >= 0) {
        int32_t ok = 0;
        (void)mproc__write_all(status_w, &ok, sizeof ok);
        close(status_w);
    }
    mproc_debug("child process calling target");
    int code = ((mproc_target)target)(args);
    mproc_debug("process exiting with exitcode %d", code);
    mproc__args_free_imported(args);
    child_finish();
    return code & 0xff;

out_report:
    mproc_error("child failed to start: %s", mproc_strerror(rc));
    if (status_w >= 0) {
        int32_t err = rc;
        (void)mproc__write_all(status_w, &err, sizeof err);
        close(status_w);
    }
    for (size_t i = 0; i < nfds; i++)
        mproc__close(fds[i]);
    return 255;
}

static int start_exec(mproc_process *p, mproc_start_method m)
{
    int sp[2];
    mproc__boot b;
    memset(&b, 0, sizeof b);
    /* The child's view of us: a pidfd so parent_process() is race-free
     * even under forkserver, where we are not its real parent. */
    bool spawn = m == MPROC_START_SPAWN;
    int spid =
        spawn ? mproc__pidfd_open(getpid()) : mproc__forkserver_parent_pidfd();
    sp[0] = sp[1] = -1;
    if (spid < 0)
        return spid;
    if (spawn && pipe2(sp, O_CLOEXEC) < 0) {
        close(spid);
        return -errno;
    }
    int r = build_boot(p, &b, sp[1], spid);
    if (r < 0)
        goto out_close;
    if (b.blob.oom) {
        r = -ENOMEM;
        goto out_close;
    }
    pid_t pid;
    int pidfd = -1, conn = -1;
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
        char mode[32];
        snprintf(mode, sizeof mode, "child:%zu", b.nfds);
        pid = mproc__spawn_exe(all, b.nfds + 1, mode);
        close(memfd);
        if (pid < 0) {
            r = pid;
            goto out_close;
        }
        pidfd = mproc__pidfd_open(pid);
        if (pidfd < 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            r = pidfd;
            goto out_close;
        }
    } else {
        /* The server validates the description before it forks and
         * answers with an error instead of a pid: no status round trip. */
        r = mproc__forkserver_start(b.blob.p, b.blob.len, b.fds, b.nfds, &pid,
                                    &pidfd, &conn, &p->early);
        if (r < 0)
            goto out_close;
        p->pid = pid;
        p->pidfd = pidfd;
        p->conn = conn;
        goto out_close;
    }
    close(sp[1]);
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
        while (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0 &&
               errno == EINTR)
            ;
        mproc__close(pidfd);
        goto out_close;
    }
    p->pid = pid;
    p->pidfd = pidfd;
    p->conn = conn;
    r = 0;
out_close:
    mproc__close(sp[0]);
    mproc__close(sp[1]);
    if (spawn)
        close(spid);
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
    if (!p || p->role != P_CHILD)
        return -EINVAL;
    pthread_mutex_lock(&p->mu);
    int r = 0;
    if (p->closed)
        r = MPROC_ECLOSED;
    else if (p->state != ST_NEW)
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
        p->state = ST_RUNNING;
        p->owner = getpid();
        mproc_debug("started %s (pid %d) with %s", p->name, (int)p->pid,
                    mproc_start_method_name(m));
    }
    pthread_mutex_unlock(&p->mu);
    if (r == 0)
        registry_add(p);
    return r;
}

int mproc_shutdown(void)
{
    mproc__self_init();
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
            mproc_process_free(v[i]);
        }
    }
    mproc__forkserver_stop();
    mproc__tracker_stop();
    return 0;
}
