/*
 * tracker.c - unlinks the named segments a program leaks, once its whole
 * process tree is gone and nothing uses them any more.
 *
 * The first tracked mproc_shm_create of a process spawns a tracker (a fresh
 * exec of the program in mode "tracker") and keeps one end of a
 * SOCK_SEQPACKET socketpair to it. Registrations and unregistrations are
 * one datagram each. Fork children inherit the socket (and register on it);
 * exec'd programs do not (O_CLOEXEC). When every process holding the socket
 * has closed it or died, the tracker reads end of file: the tree is gone.
 *
 * It then unlinks each registered segment that still exists under its name
 * with the same inode and that no live process maps or holds open (a scan
 * of /proc/<pid>/maps and /proc/<pid>/fd by device and inode). This is the
 * fix for CPython's gh-82300, where the tracker of one program unlinks a
 * segment an unrelated program still uses. Segments still in use are
 * watched (pidfds of their users, plus a periodic rescan) and unlinked when
 * the last user lets go; while it waits, the tracker forks off its watcher
 * and exits, so the process that started it can reap it at once.
 *
 * The tracker runs in its own session with stdio on /dev/null and ignores
 * SIGINT, SIGTERM, SIGHUP and SIGQUIT, so the signals that end a program's
 * process group (Ctrl-C, a test runner's group kill) do not stop the
 * cleanup. Races it cannot close, and says so in docs/shm.md: a process
 * that opens the name between the scan and the unlink keeps a working
 * segment whose name is gone; a process in another pid namespace is not
 * seen.
 */
#include "shm/shm_impl.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#define TRK_MAGIC       0x6d70746bu /* "mptk" */
#define TRK_REGISTER    1u
#define TRK_UNREGISTER  2u
#define TRK_MAX_ENTRIES (1u << 20)
#define TRK_MAX_WATCH   64
#define TRK_STOP_WAIT   2.0 /* seconds tracker_stop waits for the exit */

typedef struct trk_msg {
    uint32_t magic;
    uint32_t op;
    uint64_t dev;
    uint64_t ino;
    char name[MPROC_SHM_NAME_MAX + 1];
} trk_msg;

/* ---- the client side (every process that creates segments) ----------- */

static pthread_mutex_t trk_mu = PTHREAD_MUTEX_INITIALIZER;
static int trk_fd = -1;
static pid_t trk_pid;   /* the tracker we talk to */
static pid_t trk_owner; /* the process that spawned it (its reaper) */

static void trk_prepare(void)
{
    pthread_mutex_lock(&trk_mu);
}

static void trk_release(void)
{
    pthread_mutex_unlock(&trk_mu);
}

static void tracker_entry(void);
static void tracker_stop(void);

__attribute__((constructor)) static void trk_init(void)
{
    mproc__atfork_register(); /* first: see there */
    pthread_atfork(trk_prepare, trk_release, trk_release);
    (void)mproc__at_shutdown(tracker_stop);
}

/* Waits up to `timeout` seconds for our tracker child to exit; reaps it.
 * Returns true when it was reaped (or is not ours to wait for). */
static bool reap_tracker(pid_t pid, double timeout)
{
    mproc__deadline d = mproc__deadline_from(timeout);
    int pfd = mproc__pidfd_open(pid);
    if (pfd >= 0) {
        mproc__poll_fd(pfd, POLLIN, &d, NULL);
        close(pfd);
    }
    int st;
    pid_t r;
    long nap_us = 500;
    for (;;) {
        r = waitpid(pid, &st, WNOHANG);
        if (r < 0 && errno == EINTR)
            continue;
        if (r != 0 || pfd >= 0 || mproc__deadline_expired(&d))
            break;
        /* No pidfd to wait on (valgrind, an old kernel): look again soon.
         * Our own unreaped child: its pid is its own. */
        struct timespec ts = {0, nap_us * 1000};
        nanosleep(&ts, NULL);
        if (nap_us < 20000)
            nap_us *= 2;
    }
    return r != 0; /* reaped, or -ECHILD: someone else reaped it */
}

static int start_locked(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return mproc__neg_errno();
    pid_t pid = mproc__spawn_helper(tracker_entry, &sv[0], 1);
    close(sv[0]);
    if (pid < 0) {
        close(sv[1]);
        return pid;
    }
    trk_fd = sv[1];
    trk_pid = pid;
    trk_owner = getpid();
    return 0;
}

static void drop_locked(void)
{
    mproc__close(trk_fd);
    trk_fd = -1;
    if (trk_owner == getpid() && trk_pid > 0)
        reap_tracker(trk_pid, 0.1);
    trk_pid = 0;
    trk_owner = 0;
}

static int send_locked(const trk_msg *m)
{
    ssize_t n;
    do
        n = send(trk_fd, m, sizeof *m, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof *m ? 0 : n < 0 && errno > 0 ? -errno : -EIO;
}

static trk_msg make_msg(uint32_t op, const char *name, dev_t dev, ino_t ino)
{
    trk_msg m;
    memset(&m, 0, sizeof m);
    m.magic = TRK_MAGIC;
    m.op = op;
    m.dev = (uint64_t)dev;
    m.ino = (uint64_t)ino;
    snprintf(m.name, sizeof m.name, "%s", name);
    return m;
}

int mproc__tracker_register(const char *name, dev_t dev, ino_t ino)
{
    trk_msg m = make_msg(TRK_REGISTER, name, dev, ino);
    pthread_mutex_lock(&trk_mu);
    int r = trk_fd < 0 ? start_locked() : 0;
    if (r == 0) {
        r = send_locked(&m);
        if (r == -EPIPE || r == -ECONNRESET || r == -ENOTCONN) {
            /* The tracker died (killed?): start a new one. Segments the
             * old one knew about are no longer tracked. */
            drop_locked();
            r = start_locked();
            if (r == 0)
                r = send_locked(&m);
        }
    }
    pthread_mutex_unlock(&trk_mu);
    return r;
}

void mproc__tracker_unregister(const char *name, dev_t dev, ino_t ino)
{
    trk_msg m = make_msg(TRK_UNREGISTER, name, dev, ino);
    pthread_mutex_lock(&trk_mu);
    if (trk_fd >= 0)
        send_locked(&m);
    pthread_mutex_unlock(&trk_mu);
}

pid_t mproc__tracker_pid(void)
{
    pthread_mutex_lock(&trk_mu);
    pid_t p = trk_fd >= 0 ? trk_pid : 0;
    pthread_mutex_unlock(&trk_mu);
    return p;
}

/* Does a process other than this one hold an fd to the socket with this
 * inode (a fork child with a copy of our end)? */
static bool held_elsewhere(ino_t ino)
{
    DIR *d = opendir("/proc");
    if (!d)
        return true; /* cannot tell: do not wait */
    pid_t self = getpid();
    bool found = false;
    struct dirent *de;
    while (!found && (de = readdir(d))) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0 || pid == self)
            continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/%ld/fd", pid);
        DIR *f = opendir(path);
        if (!f)
            continue;
        struct dirent *fe;
        while (!found && (fe = readdir(f))) {
            struct stat st;
            found = fe->d_name[0] != '.' &&
                    fstatat(dirfd(f), fe->d_name, &st, 0) == 0 &&
                    S_ISSOCK(st.st_mode) && st.st_ino == ino;
        }
        closedir(f);
    }
    closedir(d);
    return found;
}

/* The shutdown hook: stops and reaps the tracker if this process started it
 * (closing its connection first); in other processes only closes the
 * connection. */
static void tracker_stop(void)
{
    pthread_mutex_lock(&trk_mu);
    int fd = trk_fd;
    pid_t pid = trk_pid, owner = trk_owner;
    trk_fd = -1;
    trk_pid = 0;
    trk_owner = 0;
    pthread_mutex_unlock(&trk_mu);
    /* Closing our end is all a member of the tree does. The process that
     * started the tracker also reaps it: it exits once the last holder of
     * the socket is gone and its cleanup pass is done (handing anything
     * still in use to a watcher it forks off). So wait for it, unless
     * other processes (children forked outside mproc, still running) hold
     * copies of our end: then it will finish after them, on its own. */
    bool others = false;
    struct stat st;
    if (owner == getpid() && pid > 0 && fd >= 0 && fstat(fd, &st) == 0)
        others = held_elsewhere(st.st_ino);
    mproc__close(fd);
    if (owner == getpid() && pid > 0)
        reap_tracker(pid, others ? 0 : TRK_STOP_WAIT);
}

/* ---- the tracker process ---------------------------------------------- */

typedef struct entry {
    char name[MPROC_SHM_NAME_MAX + 1];
    dev_t dev;
    ino_t ino;
    bool used;
} entry;

typedef struct registry {
    entry *v;
    size_t n, cap;
} registry;

/* The entry for name and dev/ino; with ino 0, the first for name. */
static entry *reg_find(registry *g, const char *name, uint64_t dev,
                       uint64_t ino)
{
    for (size_t i = 0; i < g->n; i++)
        if (strcmp(g->v[i].name, name) == 0 &&
            (ino == 0 ||
             ((uint64_t)g->v[i].dev == dev && (uint64_t)g->v[i].ino == ino)))
            return &g->v[i];
    return NULL;
}

static void reg_remove(registry *g, entry *e)
{
    *e = g->v[--g->n];
}

static void reg_apply(registry *g, const trk_msg *m)
{
    char name[MPROC_SHM_NAME_MAX + 1];
    if (mproc__shm_check_name(m->name, name) < 0)
        return;
    /* A name may be registered more than once (a creator registers before
     * the name is its own; see segment.c): entries are name + dev/ino. */
    entry *e;
    if (m->op == TRK_UNREGISTER) {
        while ((e = reg_find(g, name, m->dev, m->ino)))
            reg_remove(g, e);
        return;
    }
    if (m->op != TRK_REGISTER || m->ino == 0)
        return;
    e = reg_find(g, name, m->dev, m->ino);
    if (!e) {
        if (g->n >= TRK_MAX_ENTRIES || MPROC__GROW(g->v, g->cap, g->n + 1) < 0)
            return;
        e = &g->v[g->n++];
    }
    snprintf(e->name, sizeof e->name, "%s", name);
    e->dev = (dev_t)m->dev;
    e->ino = (ino_t)m->ino;
}

/* Is /dev/shm/<name> still the segment that was registered? */
static bool still_there(const entry *e)
{
    char path[sizeof e->name + 16];
    struct stat st;
    snprintf(path, sizeof path, "/dev/shm/%s", e->name);
    return stat(path, &st) == 0 && st.st_dev == e->dev && st.st_ino == e->ino;
}

static entry *match(registry *g, unsigned maj, unsigned min, ino_t ino)
{
    for (size_t i = 0; i < g->n; i++)
        if (g->v[i].ino == ino && major(g->v[i].dev) == maj &&
            minor(g->v[i].dev) == min)
            return &g->v[i];
    return NULL;
}

/* Marks the entries process pid maps or holds open; returns true if any. */
static bool scan_pid(registry *g, const char *pid)
{
    bool hit = false;
    char path[64];
    snprintf(path, sizeof path, "/proc/%s/maps", pid);
    FILE *f = fopen(path, "re");
    if (f) {
        char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, f) > 0) {
            unsigned maj, min;
            unsigned long long ino;
            if (sscanf(line, "%*s %*s %*s %x:%x %llu", &maj, &min, &ino) != 3 ||
                ino == 0)
                continue;
            entry *e = match(g, maj, min, (ino_t)ino);
            if (e) {
                e->used = true;
                hit = true;
            }
        }
        free(line);
        fclose(f);
    }
    snprintf(path, sizeof path, "/proc/%s/fd", pid);
    DIR *d = opendir(path);
    if (d) {
        int dfd = dirfd(d);
        struct dirent *de;
        while ((de = readdir(d))) {
            struct stat st;
            if (de->d_name[0] == '.' || fstatat(dfd, de->d_name, &st, 0) < 0)
                continue;
            entry *e = match(g, major(st.st_dev), minor(st.st_dev), st.st_ino);
            if (e) {
                e->used = true;
                hit = true;
            }
        }
        closedir(d);
    }
    return hit;
}

/* One pass over /proc: marks used entries and collects up to max users. */
static size_t scan_proc(registry *g, pid_t *users, size_t max)
{
    for (size_t i = 0; i < g->n; i++)
        g->v[i].used = false;
    size_t nu = 0;
    DIR *d = opendir("/proc");
    if (!d) {
        /* Cannot tell: treat everything as used rather than guess. */
        for (size_t i = 0; i < g->n; i++)
            g->v[i].used = true;
        return 0;
    }
    pid_t self = getpid();
    struct dirent *de;
    while ((de = readdir(d))) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0 || pid == self)
            continue;
        if (scan_pid(g, de->d_name) && nu < max)
            users[nu++] = (pid_t)pid;
    }
    closedir(d);
    return nu;
}

/* Unlinks what is unused; drops what vanished. Returns entries left. */
static size_t cleanup_pass(registry *g, pid_t *users, size_t *nusers)
{
    for (size_t i = 0; i < g->n;)
        if (!still_there(&g->v[i]))
            reg_remove(g, &g->v[i]);
        else
            i++;
    *nusers = 0;
    if (g->n == 0)
        return 0;
    *nusers = scan_proc(g, users, TRK_MAX_WATCH);
    for (size_t i = 0; i < g->n;) {
        entry *e = &g->v[i];
        if (!e->used) {
            char path[sizeof e->name + 2];
            snprintf(path, sizeof path, "/%s", e->name);
            if (still_there(e))
                shm_unlink(path);
            reg_remove(g, e);
        } else {
            i++;
        }
    }
    return g->n;
}

static void become_quiet(void)
{
    setsid();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    int ign[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < MPROC__ARRAY_LEN(ign); i++)
        sigaction(ign[i], &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (null > 2)
            close(null);
    }
    if (chdir("/") < 0) {
        /* keep the old directory; nothing depends on it */
    }
}

/* The tracker's main loop, entered in the spawned helper with its socket at
 * fd 3. Never returns. */
static void __attribute__((noreturn)) tracker_entry(void)
{
    int fd = 3;
    become_quiet();
    registry g = {NULL, 0, 0};
    for (;;) {
        trk_msg m;
        ssize_t n = recv(fd, &m, sizeof m, 0);
        if (n == 0)
            break; /* every holder is gone: the tree has exited */
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if ((size_t)n != sizeof m || m.magic != TRK_MAGIC)
            continue;
        m.name[MPROC_SHM_NAME_MAX] = '\0';
        reg_apply(&g, &m);
    }
    close(fd);

    pid_t users[TRK_MAX_WATCH];
    size_t nusers;
    bool forked = false;
    int wait_ms = 50;
    while (cleanup_pass(&g, users, &nusers) > 0) {
        if (!forked) {
            /* Let our parent reap us now; a watcher carries on. */
            pid_t p = fork();
            if (p != 0)
                mproc__exit(p < 0 ? 1 : 0);
            forked = true;
        }
        struct pollfd pf[TRK_MAX_WATCH];
        size_t np = 0;
        /* Without pidfds (valgrind, old kernels) none opens: the rescans
         * alone find the users gone, within a second. */
        for (size_t i = 0; i < nusers; i++) {
            int pfd = mproc__pidfd_open(users[i]);
            if (pfd >= 0)
                pf[np++] = (struct pollfd){.fd = pfd, .events = POLLIN};
        }
        /* Wake when a user exits, or rescan now and then: a user may also
         * just unmap and close. */
        int r;
        do
            r = poll(pf, np, wait_ms);
        while (r < 0 && errno == EINTR);
        for (size_t i = 0; i < np; i++)
            close(pf[i].fd);
        if (r == 0 && wait_ms < 1000)
            wait_ms *= 2;
        else if (r > 0)
            wait_ms = 50;
    }
    free(g.v);
    mproc__exit(0);
}
