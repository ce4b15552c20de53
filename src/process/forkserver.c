/*
 * process/forkserver.c - the forkserver start method.
 *
 * On first use the process spawns a fork server: a fresh exec of the same
 * program that runs no user code and stays single-threaded, so forking it is
 * always safe. The requester creates the server's listening socket itself
 * (an abstract AF_UNIX name with a random part; only peers with our uid are
 * served) and a control pipe whose end of file tells the server that its
 * owner is gone. Each requesting process keeps one connection to the
 * server (fork children make their own). Per child it sends the boot
 * description with its fds (SCM_RIGHTS) and the write end of a report
 * pipe; the server hands it to a child forked ahead of time (the spare),
 * answers on the connection with the child's pid and a pidfd for it, and
 * the exit code (int32, Python's convention) comes on the report pipe:
 * from the child as it exits, or from the server once it has reaped it.
 * At its start the server dlopens the libraries of
 * mproc_set_forkserver_preload, so that every child starts with them
 * loaded and initialized (CPython's preloaded modules).
 *
 * Without pidfds (valgrind, old kernels) the answer carries no pidfd: the
 * child's sentinel is a pipe the requester made (process.h), and signals
 * to the child go through the server (a request of their own), the one
 * process that knows whether the pid is still the child's.
 */
#include "process/process.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static pthread_mutex_t fs_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    bool running;
    pid_t owner;
    pid_t pid;
    int pidfd; /* on the server; -1 without pidfds */
    int self;  /* pidfd on the owner, for its children's parent_process */
    int ctl;   /* write end of the control pipe */
    /* Our connection to the server, on which every start sends its
     * request (fs_mu held while sending); -1 until the first start. */
    int conn;
    pid_t conn_pid; /* the process that opened it */
    struct sockaddr_un addr;
    socklen_t addrlen;
} fs = {.pidfd = -1, .self = -1, .ctl = -1, .conn = -1};

static void server_entry(void);
static void fs_stop(void);

/* mproc_set_forkserver_preload's names for the next server, each as
 * mproc__buf_str writes it. fs_mu. */
static mproc__buf fs_preload;
static uint32_t fs_npreload;

/* The server's configuration, in a memfd at its fd 5: magic, the log
 * level for the preloads (MPROC_LOG_OFF: none; else the log fd is its fd
 * 6, which the server closes once they are done: nothing else it does is
 * logged, and a log pipe must see its end of file when the program is
 * done with it), the number of libraries to preload, their names. */
#define FS_CONFIG_MAGIC 0x6366706d /* "mpfc" */
#define FS_CONFIG_FD    5
#define FS_LOG_FD       6

int mproc_set_forkserver_preload(const char *const *names, size_t n)
{
    if ((n && !names) || n > UINT32_MAX)
        return -EINVAL;
    mproc__buf b = {0};
    for (size_t i = 0; i < n; i++) {
        if (!names[i] || !names[i][0] || strlen(names[i]) >= PATH_MAX) {
            mproc__buf_free(&b);
            return -EINVAL;
        }
        mproc__buf_str(&b, names[i]);
    }
    if (b.oom) {
        mproc__buf_free(&b);
        return -ENOMEM;
    }
    pthread_mutex_lock(&fs_mu);
    mproc__buf old = fs_preload;
    fs_preload = b;
    fs_npreload = (uint32_t)n;
    pthread_mutex_unlock(&fs_mu);
    mproc__buf_free(&old);
    return 0;
}

/* The configuration memfd for a new server. fs_mu held. */
static int fs_config(int *logfd)
{
    mproc__buf c = {0};
    int lfd = mproc__log_fd(), level = mproc_log_get_level();
    bool log = lfd >= 0 && level < MPROC_LOG_OFF && fs_npreload > 0;
    mproc__buf_u32(&c, FS_CONFIG_MAGIC);
    mproc__buf_u32(&c, (uint32_t)(log ? level : MPROC_LOG_OFF));
    mproc__buf_u32(&c, fs_npreload);
    mproc__buf_put(&c, fs_preload.p, fs_preload.len);
    int fd = c.oom ? -ENOMEM : mproc__memfd_with("mproc-fs-config", c.p, c.len);
    mproc__buf_free(&c);
    *logfd = log ? lfd : -1;
    return fd;
}

/* pthread_atfork child handler (fs_atfork). */
static void fs_forget(void)
{
    /* In a fork child: the server stays the parent's. Drop our copy of the
     * control pipe so the parent's death still reaches the server; keep the
     * address so this child can ask the same server. */
    pthread_mutex_init(&fs_mu, NULL);
    /* The connection is the parent's: one of our own when we need it. */
    mproc__close(fs.conn);
    mproc__close(fs.self); /* a pidfd on the parent */
    fs.conn = fs.self = -1;
    if (fs.running) {
        mproc__close(fs.ctl);
        mproc__close(fs.pidfd);
        fs.ctl = fs.pidfd = -1;
        fs.owner = 0;
    }
}

/* Registered when the library loads, not at first use: a child forked by
 * another thread while we hold fs_mu (launching a server, waiting for an
 * answer) must find it reset, or its exit (fs_stop) would wait forever,
 * and a fork whose atfork handlers had begun when a handler was
 * registered does not run that handler in its child. */
__attribute__((constructor)) static void fs_atfork(void)
{
    pthread_atfork(NULL, NULL, fs_forget);
}

static void fs_hooks(void)
{
    (void)mproc__at_shutdown(fs_stop);
}

/* Registers the shutdown hook (the first start). */
static void fs_init(void)
{
    static pthread_once_t hooks = PTHREAD_ONCE_INIT;
    pthread_once(&hooks, fs_hooks);
}

static int fs_launch(void)
{
    int lsn = -1, ctl[2] = {-1, -1}, r;
    unsigned char rnd[8];
    r = mproc__random(rnd, sizeof rnd);
    if (r < 0)
        return r;
    memset(&fs.addr, 0, sizeof fs.addr);
    fs.addr.sun_family = AF_UNIX;
    int n = snprintf(fs.addr.sun_path + 1, sizeof fs.addr.sun_path - 1,
                     "mproc-fs-%d-%02x%02x%02x%02x%02x%02x%02x%02x",
                     (int)getpid(), rnd[0], rnd[1], rnd[2], rnd[3], rnd[4],
                     rnd[5], rnd[6], rnd[7]);
    fs.addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    lsn = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lsn < 0)
        return -errno;
    if (bind(lsn, (struct sockaddr *)&fs.addr, fs.addrlen) < 0 ||
        listen(lsn, 128) < 0) {
        r = -errno;
        goto out_close;
    }
    if (pipe2(ctl, O_CLOEXEC) < 0) {
        r = -errno;
        goto out_close;
    }
    int logfd;
    int cfg = fs_config(&logfd);
    if (cfg < 0) {
        r = cfg;
        goto out_close;
    }
    int give[4] = {ctl[0], lsn, cfg, logfd};
    pid_t pid = mproc__spawn_helper(server_entry, give, logfd >= 0 ? 4 : 3);
    close(cfg);
    if (pid < 0) {
        r = pid;
        goto out_close;
    }
    /* Without pidfds the server is watched by its pid (our child, which
     * only we reap), and each child gets a pipe to watch its owner by. */
    int pidfd = mproc__have_pidfd() ? mproc__pidfd_open(pid) : -1;
    if (mproc__have_pidfd() && pidfd < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        r = pidfd;
        goto out_close;
    }
    close(ctl[0]);
    close(lsn);
    fs.pid = pid;
    fs.pidfd = pidfd;
    fs.ctl = ctl[1];
    fs.owner = getpid();
    fs.running = true;
    mproc_debug("fork server started (pid %d)", (int)pid);
    return 0;
out_close:
    mproc__close(lsn);
    mproc__close(ctl[0]);
    mproc__close(ctl[1]);
    return r;
}

/* True when our server has exited (its pidfd is readable, or a look at
 * our child that reaps nothing finds it ended). fs_mu held. */
static bool server_dead(void)
{
    if (fs.pidfd < 0) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        int r;
        while ((r = waitid(P_PID, (id_t)fs.pid, &si,
                           WEXITED | WNOHANG | WNOWAIT)) < 0 &&
               errno == EINTR)
            ;
        return r < 0 || si.si_pid != 0;
    }
    mproc__deadline now = mproc__deadline_from(0);
    return mproc__poll_fd(fs.pidfd, POLLIN, &now, NULL) == 1;
}

/* Reaps our server and forgets it. fs.self stays: it is on this process,
 * whichever server runs, and a start may hold it borrowed. fs_mu held. */
static void fs_reap(void)
{
    siginfo_t si;
    mproc__close(fs.ctl);
    mproc__close(fs.conn);
    fs.conn = -1;
    idtype_t idt = fs.pidfd >= 0 ? (idtype_t)P_PIDFD : P_PID;
    id_t id = fs.pidfd >= 0 ? (id_t)fs.pidfd : (id_t)fs.pid;
    while (waitid(idt, id, &si, WEXITED) < 0 && errno == EINTR)
        ;
    mproc__close(fs.pidfd);
    fs.ctl = fs.pidfd = -1;
    fs.running = false;
}

/* Opens fs.conn to the server at fs.addr. Returns 0 or -errno from
 * socket or connect (-ECONNREFUSED: nobody listens). fs_mu held. */
static int fs_connect(void)
{
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    int r;
    while ((r = connect(s, (struct sockaddr *)&fs.addr, fs.addrlen)) < 0 &&
           errno == EINTR)
        ;
    if (r < 0) {
        r = -errno;
        close(s);
        return r;
    }
    fs.conn = s;
    fs.conn_pid = getpid();
    return 0;
}

/* Makes sure we hold a connection to a running server. While we do, the
 * server is taken to be alive: a dead one fails the next send, which
 * drops the connection and comes back here. fs_mu held. */
static int fs_ensure(void)
{
    if (fs.self < 0 && mproc__have_pidfd()) {
        /* A pidfd on us, for the children to watch us by. */
        int self = mproc__pidfd_open(getpid());
        if (self < 0)
            return self;
        fs.self = self;
    }
    if (fs.conn >= 0 && fs.conn_pid != getpid())
        fs.conn = -1; /* a copy in a child forked without atfork: not ours */
    if (fs.conn >= 0)
        return 0;
    if (fs.running && fs.owner == getpid() && server_dead())
        fs_reap(); /* killed under us: start a new one */
    int r = -ECONNREFUSED;
    if (fs.running && fs.owner != getpid()) {
        /* A fork child asks its parent's server while it listens. */
        r = fs_connect();
        if (r == -ECONNREFUSED)
            fs.running = false; /* the parent's server is gone: have our own */
        else if (r < 0)
            return r;
    }
    if (!fs.running && (r = fs_launch()) < 0)
        return r;
    if (fs.conn < 0 && (r = fs_connect()) < 0)
        return r == -EMFILE || r == -ENFILE || r == -ENOMEM ? r
                                                            : MPROC_EFORKSERVER;
    return 0;
}

int mproc__forkserver_parent_pidfd(void)
{
    if (!mproc__have_pidfd())
        return -ENOSYS;
    fs_init();
    pthread_mutex_lock(&fs_mu);
    int r = fs_ensure();
    if (r == 0)
        r = fs.self;
    pthread_mutex_unlock(&fs_mu);
    return r;
}

/* Sends a start request on our connection, over a new one (to a new
 * server if ours died) when that fails: once. fs_mu held. */
static int fs_send(struct iovec *iov, const int *fds, size_t nfds)
{
    for (int tries = 0;; tries++) {
        int r = fs_ensure();
        if (r < 0)
            return r;
        if (mproc__sendv_fds(fs.conn, iov, 2, fds, nfds, 0) >= 0)
            return 0;
        /* Whatever went (maybe part of a request), this connection is
         * done with. */
        close(fs.conn);
        fs.conn = -1;
        if (tries == 1)
            return MPROC_EFORKSERVER;
    }
}

/* Reads the server's answer to our start request from fs.conn: 'P' pid
 * (a pidfd attached, where there are pidfds) or 'E' error, 8 bytes each.
 * The kernel never merges a message carrying fds with another in one
 * read. A connection that breaks or goes out of step is dropped. fs_mu
 * held. */
static int fs_answer(pid_t *pid, int *pidfd)
{
    int32_t msg[2] = {0, 0};
    int got[1] = {-1};
    size_t ngot = 1, want = mproc__have_pidfd() ? 1 : 0;
    /* Wait in poll, not in recvmsg: the server reading our request wakes
     * whoever sleeps in a read of this socket (room to write), a wake-up
     * and a context switch for nothing; poll waits for input only. */
    mproc__deadline forever = mproc__deadline_from(-1);
    int r = mproc__poll_fd(fs.conn, POLLIN, &forever, NULL);
    if (r == 1)
        r = mproc__recv_fds(fs.conn, msg, sizeof msg, got, &ngot);
    if (r <= 0)
        ngot = 0; /* nothing came with it */
    if (r > 0 && r < (int)sizeof msg &&
        mproc__read_all(fs.conn, (char *)msg + r, sizeof msg - (size_t)r) == 0)
        r = (int)sizeof msg;
    bool whole = r == (int)sizeof msg;
    if (whole && msg[0] == 'P' && ngot == want && msg[1] > 0) {
        *pid = msg[1];
        *pidfd = want ? got[0] : -1;
        return 0;
    }
    for (size_t i = 0; i < ngot; i++)
        close(got[i]);
    if (whole && msg[0] == 'E' && msg[1] < 0)
        return msg[1];
    close(fs.conn);
    fs.conn = -1;
    return MPROC_EFORKSERVER;
}

int mproc__forkserver_start(mproc_process *p, const void *blob, size_t len,
                            const int *fds, size_t nfds, int *pidfd, int *conn)
{
    if (nfds > 250)
        return -EMFILE;
    fs_init();
    /* The child's report pipe: the child writes its exit code on it ('C')
     * when its target returns, the server ('S') once it has reaped it.
     * The server and then the child get the write end with the request.
     * (A pipe, not a socket: a Unix socket in flight in a message makes
     * the kernel queue its garbage collector at the next close of one.)
     * Without pidfds its end of file tells that the child is reaped, so no
     * fork child of ours may keep a copy of the write end: guarded until
     * sent. */
    bool pidfds = mproc__have_pidfd();
    int rep[2], all[251];
    int r = 0;
    if (pidfds)
        r = pipe2(rep, O_CLOEXEC | O_NONBLOCK) < 0 ? -errno : 0;
    else if ((r = mproc__guarded_pipe(rep)) == 0 &&
             fcntl(rep[0], F_SETFL, O_NONBLOCK) < 0) {
        r = -errno;
        close(rep[0]);
        mproc__unguard_close(rep[1]);
    }
    if (r < 0)
        return r;
    memcpy(all, fds, nfds * sizeof(int));
    all[nfds] = rep[1];
    struct mproc__fs_req h = {MPROC__FS_START, (uint32_t)nfds + 1, len};
    struct iovec iov[2] = {{&h, sizeof h}, {(void *)blob, len}};
    pid_t pid = 0;
    /* The server answers a connection's requests in order: the lock
     * covers the round trip. */
    pthread_mutex_lock(&fs_mu);
    r = fs_send(iov, all, nfds + 1);
    if (r == 0)
        r = fs_answer(&pid, pidfd);
    p->server = fs.addr;
    p->server_len = fs.addrlen;
    pthread_mutex_unlock(&fs_mu);
    if (pidfds)
        close(rep[1]);
    else
        mproc__unguard_close(rep[1]);
    if (r < 0) {
        close(rep[0]);
        return r;
    }
    p->pid = pid;
    p->early = INT32_MIN;
    *conn = rep[0];
    return 0;
}

/* The shutdown hook: stops the server if this process started it. */
static void fs_stop(void)
{
    pthread_mutex_lock(&fs_mu);
    if (fs.running && fs.owner == getpid()) {
        fs_reap();
        mproc_debug("fork server stopped");
    }
    fs.running = false;
    mproc__close(fs.conn);
    mproc__close(fs.self);
    fs.ctl = fs.pidfd = fs.conn = fs.self = -1;
    pthread_mutex_unlock(&fs_mu);
}

/* ---- the server --------------------------------------------------------- */

struct fs_child {
    pid_t pid;
    int report; /* the write end of its report pipe */
};

static struct fs_child *kids;
static size_t nkids, capkids;

/* The requesters' connections, each kept until its end of file: every
 * start of that process comes on it. */
static int *conns;
static size_t nconns, capconns;

/*
 * The spare: a child forked ahead of the next request, waiting on a
 * socket of its own for a boot description, its fds and the requester's
 * connection. A request is answered as soon as the spare has them, so the
 * fork (most of a start's cost) happens between requests instead of
 * inside one; the next spare is forked once the reply is sent. A spare
 * sees end of file on its socket when the server goes and exits; the
 * server also kills and reaps it on its way out, so none outlives it.
 */
static struct {
    pid_t pid; /* 0: none */
    int sock;
    int pidfd; /* opened as it is forked, off the path of a request */
} spare = {0, -1, -1};

/* What a spare is told: a boot description of len bytes follows; nfds
 * fds came with this header, the write end of the child's report pipe
 * the last. */
struct spare_req {
    uint64_t len;
    uint32_t nfds, pad;
};

/* In a child just forked by the server: the state of a fresh child, and
 * none of the server's fds. */
static void child_reset(int ctl, int lsn, int sfd)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    close(sfd);
    close(ctl);
    close(lsn);
    for (size_t i = 0; i < nkids; i++)
        close(kids[i].report);
    for (size_t i = 0; i < nconns; i++)
        close(conns[i]);
}

/* The spare's life: waits for its request, then runs it. */
static void __attribute__((noreturn)) spare_wait(int sock, pid_t server)
{
    struct spare_req h;
    int fds[256];
    size_t nfds = 256;
    int r = mproc__recv_fds(sock, &h, sizeof h, fds, &nfds);
    if (r != (int)sizeof h || h.nfds != nfds || nfds < 1 || h.len > (1u << 30))
        mproc__exit(0); /* the server is gone or stopping */
    unsigned char *blob = malloc(h.len ? h.len : 1);
    if (!blob || mproc__read_all(sock, blob, h.len) < 0)
        mproc__exit(0);
    close(sock);
    int conn = fds[--nfds];
    mproc__set_report_fd(conn);
    mproc__exit_child(mproc__child_run(blob, h.len, fds, nfds, server));
}

/* Forks a spare unless there is one. Failure is no error: the next
 * request forks its child itself. */
static void spare_make(int ctl, int lsn, int sfd)
{
    if (spare.pid > 0)
        return;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return;
    pid_t server = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        child_reset(ctl, lsn, sfd);
        close(sv[0]);
        spare_wait(sv[1], server);
    }
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        return;
    }
    spare.pid = pid;
    spare.sock = sv[0];
    /* Without it the request still goes ahead: serve opens one then. */
    spare.pidfd = mproc__have_pidfd() ? mproc__pidfd_open(pid) : -1;
}

/* Forgets the spare (taken, dead or being killed). */
static void spare_forget(void)
{
    mproc__close(spare.sock);
    mproc__close(spare.pidfd);
    spare.pid = 0;
    spare.sock = spare.pidfd = -1;
}

/* Kills and reaps the spare (the server is going). */
static void spare_drop(void)
{
    if (spare.pid <= 0)
        return;
    pid_t pid = spare.pid;
    spare_forget();
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

/* Hands a request (fds[nfds - 1] its report pipe) to the spare:
 * returns its pid and in *pidfd its pidfd (-1 if none was opened), or 0
 * when there is no spare or it cannot take it (it died: then it is
 * reaped as any child). */
static pid_t spare_take(const unsigned char *blob, uint64_t len, const int *fds,
                        size_t nfds, int *pidfd)
{
    if (spare.pid <= 0)
        return 0;
    struct spare_req h = {len, (uint32_t)nfds, 0};
    struct iovec iov[2] = {{&h, sizeof h}, {(void *)blob, (size_t)len}};
    int r = mproc__sendv_fds(spare.sock, iov, 2, fds, nfds, 0);
    pid_t pid = spare.pid;
    *pidfd = spare.pidfd;
    spare.pidfd = -1;
    spare_forget();
    if (r < 0) {
        mproc__close(*pidfd);
        *pidfd = -1;
        /* Gone: our SIGCHLD reaps it (no request of its own to report). */
        kill(pid, SIGKILL);
        return 0;
    }
    return pid;
}

static void report_exit(pid_t pid, int status)
{
    int32_t msg[2] = {'S', WIFEXITED(status) ? WEXITSTATUS(status)
                                             : -WTERMSIG(status)};
    for (size_t i = 0; i < nkids; i++) {
        if (kids[i].pid != pid)
            continue;
        /* The requester may have the child's own report already and be
         * gone: no SIGPIPE (ignored here). The pipe has room: it never
         * holds more than the child's code and this one. */
        (void)write(kids[i].report, msg, sizeof msg);
        close(kids[i].report);
        kids[i] = kids[--nkids];
        return;
    }
}

static void reap_all(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == spare.pid) /* died waiting: the next request forks */
            spare_forget();
        report_exit(pid, status);
    }
}

/* Reads the configuration (fd 5) and loads the preloads. A library
 * that cannot be loaded is skipped with a DEBUG line, as CPython's fork
 * server skips a module that fails to import. */
static void server_configure(void)
{
    int fd = FS_CONFIG_FD;
    struct stat st;
    unsigned char *blob = NULL;
    if (fstat(fd, &st) == 0 && st.st_size > 0 && st.st_size < (1 << 26))
        blob = malloc((size_t)st.st_size);
    if (blob && pread(fd, blob, (size_t)st.st_size, 0) != st.st_size) {
        free(blob);
        blob = NULL;
    }
    close(fd);
    if (!blob)
        return;
    mproc__reader rd = {blob, (size_t)st.st_size, 0, false};
    uint32_t magic = mproc__rd_u32(&rd);
    uint32_t level = mproc__rd_u32(&rd);
    uint32_t n = mproc__rd_u32(&rd);
    bool log = !rd.bad && magic == FS_CONFIG_MAGIC && level < MPROC_LOG_OFF;
    if (log)
        mproc__log_restore(FS_LOG_FD, (int)level);
    char name[PATH_MAX];
    for (uint32_t i = 0; !rd.bad && magic == FS_CONFIG_MAGIC && i < n; i++) {
        if (!mproc__rd_str(&rd, name, sizeof name))
            break;
        if (dlopen(name, RTLD_NOW | RTLD_GLOBAL))
            mproc_log(MPROC_LOG_SUBDEBUG, "fork server preloaded %s", name);
        else
            mproc_debug("fork server preload of %s failed, ignored: %s", name,
                        dlerror());
    }
    free(blob);
    if (log) {
        mproc__log_restore(-1, MPROC_LOG_OFF);
        close(FS_LOG_FD);
    }
}

/* A request to signal one of our children: {pid, sig}. Answered with
 * {'K', 0 or -errno}; -ESRCH once it is reaped (its pid may be another
 * process's by now: never signalled). A child that has ended but is not
 * reaped yet still holds its pid, so the signal is harmless then.
 * Returns false when the connection is broken. */
static bool serve_kill(int conn)
{
    int32_t body[2];
    if (mproc__read_all(conn, body, sizeof body) < 0)
        return false;
    int32_t reply[2] = {'K', -ESRCH};
    for (size_t i = 0; i < nkids; i++)
        if (kids[i].pid == body[0] && body[0] > 0) {
            reply[1] = kill(body[0], body[1]) < 0 ? -errno : 0;
            break;
        }
    return send(conn, reply, sizeof reply, MSG_NOSIGNAL) == sizeof reply;
}

/* Starts the child a request on conn describes, rep the write end of its
 * report pipe (owned; it stays with the child's record, for the exit
 * code) and fds[0..nfds) its fds (owned). Answers on conn. */
static void serve_start(int conn, int rep, const unsigned char *blob,
                        uint64_t len, int *fds, size_t nfds, int ctl, int lsn,
                        int sfd)
{
    int32_t reply[2] = {'E', -ENOMEM};
    int pfd = -1;
    if (MPROC__GROW(kids, capkids, nkids + 1) < 0)
        goto out_refuse;
    /* Refuse what the child could not boot from (a target or an object
     * kind that cannot be found) before forking: the requester gets the
     * error from start() without waiting for the child. */
    reply[1] = mproc__boot_validate(blob, len, nfds);
    if (reply[1] < 0)
        goto out_refuse;
    fds[nfds] = rep;
    pid_t pid = spare_take(blob, len, fds, nfds + 1, &pfd);
    if (pid == 0) {
        /* No spare (or it is gone): fork one for this request now. */
        pid_t server = getpid();
        pid = fork();
        if (pid == 0) {
            child_reset(ctl, lsn, sfd);
            mproc__set_report_fd(rep);
            /* As CPython's fork server children, end with _exit: the
             * server's own exit handlers are not the child's. */
            mproc__exit_child(mproc__child_run(blob, len, fds, nfds, server));
        }
        if (pid < 0)
            pid = -errno;
    }
    bool pidfd = mproc__have_pidfd();
    if (pid > 0 && pidfd && pfd < 0)
        pfd = mproc__pidfd_open(pid);
    reply[1] = pid;
    if (pid < 0 || (pidfd && pfd < 0)) {
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            reply[1] = pfd;
        }
        goto out_refuse;
    }
    reply[0] = 'P';
    (void)mproc__send_fds(conn, reply, sizeof reply, &pfd, pfd >= 0);
    mproc__close(pfd);
    for (size_t i = 0; i < nfds; i++)
        close(fds[i]);
    /* Even if the reply failed the child runs; its code has nowhere to go
     * and the pipe closes when it is reaped. */
    kids[nkids].pid = pid;
    kids[nkids].report = rep;
    nkids++;
    /* The next request's child, forked now that this one is answered. */
    spare_make(ctl, lsn, sfd);
    return;
out_refuse:
    (void)mproc__send_fds(conn, reply, sizeof reply, NULL, 0);
    for (size_t i = 0; i < nfds; i++)
        close(fds[i]);
    close(rep);
}

/* Serves one request on conn, a requester's connection. Returns false
 * when the connection is done with (end of file, an error, bytes that
 * are no request): the caller closes it. */
static bool serve(int conn, int ctl, int lsn, int sfd)
{
    struct mproc__fs_req h;
    int fds[256];
    size_t nfds = 255; /* one slot left for serve_start */
    int r = mproc__recv_fds(conn, &h, sizeof h, fds, &nfds);
    if (r == (int)sizeof h && h.magic == MPROC__FS_KILL && nfds == 0 &&
        h.len == 8)
        return serve_kill(conn);
    unsigned char *blob = NULL;
    bool ok = r == (int)sizeof h && h.magic == MPROC__FS_START &&
              h.nfds == nfds && nfds >= 1 && h.len <= (1u << 30);
    if (ok) {
        blob = malloc(h.len ? h.len : 1);
        ok = blob && mproc__read_all(conn, blob, h.len) == 0;
    }
    if (!ok) {
        free(blob);
        for (size_t i = 0; r > 0 && i < nfds; i++)
            close(fds[i]);
        return false;
    }
    serve_start(conn, fds[nfds - 1], blob, h.len, fds, nfds - 1, ctl, lsn, sfd);
    free(blob);
    return true;
}

/* Takes a new connection from lsn: kept if its peer has our uid. A
 * request that stalls halfway times out after 5 s (and the connection is
 * dropped) rather than stopping the server. */
static void conn_accept(int lsn)
{
    int c = accept4(lsn, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0)
        return;
    struct ucred cr;
    socklen_t cl = sizeof cr;
    struct timeval tv = {5, 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0 ||
        cr.uid != getuid() || MPROC__GROW(conns, capconns, nconns + 1) < 0) {
        close(c);
        return;
    }
    conns[nconns++] = c;
}

/* The server's main loop, entered in the spawned helper with the control
 * pipe at fd 3, the listening socket at fd 4, its configuration at fd 5
 * (and the log fd at 6). Never returns. */
static void __attribute__((noreturn)) server_entry(void)
{
    int ctl = 3, lsn = 4;
    mproc__self_init();
    mproc_set_current_name("ForkServer");
    fcntl(ctl, F_SETFD, FD_CLOEXEC);
    fcntl(lsn, F_SETFD, FD_CLOEXEC);
    server_configure();
    mproc__ref_warm(); /* the preloaded libraries' identities too */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    /* Signals meant for the owner's terminal session are not for us. */
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    if (sfd < 0)
        mproc__exit(1);
    spare_make(ctl, lsn, sfd);
    struct pollfd *p = NULL;
    size_t capp = 0;
    for (;;) {
        if (MPROC__GROW(p, capp, nconns + 3) < 0)
            mproc__exit(1);
        p[0] = (struct pollfd){ctl, POLLIN, 0};
        p[1] = (struct pollfd){lsn, POLLIN, 0};
        p[2] = (struct pollfd){sfd, POLLIN, 0};
        for (size_t i = 0; i < nconns; i++)
            p[3 + i] = (struct pollfd){conns[i], POLLIN, 0};
        size_t n = nconns;
        int r = poll(p, (nfds_t)(n + 3), -1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            mproc__exit(1);
        }
        if (p[2].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0)
                ;
            reap_all();
        }
        if (p[0].revents)
            break; /* owner gone or stopping us */
        /* Backwards: a connection dropped at i is replaced by the last
         * one, already served (p[] still matches conns[] below i). */
        for (size_t i = n; i-- > 0;) {
            if (!p[3 + i].revents || serve(conns[i], ctl, lsn, sfd))
                continue;
            close(conns[i]);
            conns[i] = conns[--nconns];
        }
        if (p[1].revents)
            conn_accept(lsn);
    }
    /* Children keep running; the ones still connected just lose their
     * reporter, as with CPython's fork server. The spare has nothing to
     * run; the ones that have ended are reaped here, not left as zombies
     * to whoever adopts them. */
    spare_drop();
    reap_all();
    mproc__exit(0);
}
