/*
 * os/os.c - the thin layer over Linux: deadlines on CLOCK_MONOTONIC, poll with
 * EINTR retries, pidfds (and whether there are any: valgrind and old kernels
 * have none), exact reads and writes, memfds, random bytes and fd passing.
 * Everything above talks to the kernel through here.
 */
#include "os/os.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

struct timespec mproc__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts;
}

mproc__deadline mproc__deadline_from(double timeout)
{
    mproc__deadline d = {{0, 0}, false};
    /* NaN and negatives wait forever; absurdly long ones too. */
    if (!(timeout >= 0) || timeout > 1e9) {
        d.infinite = true;
        return d;
    }
    d.at = mproc__now();
    time_t s = (time_t)timeout;
    long ns = (long)((timeout - (double)s) * 1e9);
    d.at.tv_sec += s;
    d.at.tv_nsec += ns;
    if (d.at.tv_nsec >= 1000000000L) {
        d.at.tv_sec++;
        d.at.tv_nsec -= 1000000000L;
    }
    return d;
}

bool mproc__deadline_left(const mproc__deadline *d, struct timespec *ts)
{
    if (d->infinite)
        return true;
    struct timespec now = mproc__now();
    ts->tv_sec = d->at.tv_sec - now.tv_sec;
    ts->tv_nsec = d->at.tv_nsec - now.tv_nsec;
    if (ts->tv_nsec < 0) {
        ts->tv_sec--;
        ts->tv_nsec += 1000000000L;
    }
    if (ts->tv_sec < 0) {
        ts->tv_sec = 0;
        ts->tv_nsec = 0;
        return false;
    }
    return ts->tv_sec > 0 || ts->tv_nsec > 0;
}

bool mproc__deadline_expired(const mproc__deadline *d)
{
    struct timespec ts;
    return !d->infinite && !mproc__deadline_left(d, &ts);
}

int mproc__deadline_poll_ms(const mproc__deadline *d)
{
    struct timespec ts;
    if (d->infinite)
        return -1;
    if (!mproc__deadline_left(d, &ts))
        return 0;
    if (ts.tv_sec > 1000000)
        return 1000000000;
    /* Round up so that a poll never returns just before the deadline. */
    return (int)(ts.tv_sec * 1000 + (ts.tv_nsec + 999999) / 1000000);
}

int mproc__poll_fd(int fd, short events, const mproc__deadline *d,
                   short *revents)
{
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        int ms = mproc__deadline_poll_ms(d);
        int r = poll(&p, 1, ms);
        if (r > 0) {
            if (revents)
                *revents = p.revents;
            return 1;
        }
        if (r == 0) {
            if (ms == 0 || mproc__deadline_expired(d))
                return 0;
            continue;
        }
        if (errno != EINTR)
            return -errno;
    }
}

/* ---- pidfds, or none ------------------------------------------------- */

enum { PIDFD_UNKNOWN, PIDFD_YES, PIDFD_NO };
static _Atomic int g_pidfd = PIDFD_UNKNOWN;
static _Atomic bool g_env_read;

/* MPROC_NO_PIDFD, the debugging switch: any value but "" and "0". Read
 * once. */
static void pidfd_env(void)
{
    if (atomic_exchange(&g_env_read, true))
        return;
    const char *e = getenv("MPROC_NO_PIDFD");
    if (e && e[0] && strcmp(e, "0") != 0)
        atomic_store(&g_pidfd, PIDFD_NO);
}

/* Read at load, while no other thread can be changing the environment.
 * (In a static program another constructor may need the answer before
 * this one runs: mproc__have_pidfd reads it then.) */
__attribute__((constructor)) static void pidfd_init(void)
{
    pidfd_env();
}

/* Asks the kernel, on this very process: PIDFD_YES, PIDFD_NO, or
 * PIDFD_UNKNOWN when the probe itself could not run (no free fd). */
static int pidfd_probe(void)
{
    long fd = syscall(SYS_pidfd_open, getpid(), 0);
    if (fd < 0)
        return errno == ENOSYS || errno == EPERM ? PIDFD_NO : PIDFD_UNKNOWN;
    /* pidfd_open came in 5.3, waitid(P_PIDFD) in 5.4: on ourselves it
     * fails with ECHILD where it is known, EINVAL where not. */
    siginfo_t si;
    int r = waitid((idtype_t)P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG);
    int e = errno;
    close((int)fd);
    return r < 0 && (e == EINVAL || e == ENOSYS) ? PIDFD_NO : PIDFD_YES;
}

bool mproc__have_pidfd(void)
{
    int s = atomic_load(&g_pidfd);
    if (s == PIDFD_UNKNOWN) {
        pidfd_env();
        s = atomic_load(&g_pidfd);
    }
    if (s == PIDFD_UNKNOWN) {
        s = pidfd_probe();
        if (s != PIDFD_UNKNOWN)
            atomic_store(&g_pidfd, s);
    }
    return s != PIDFD_NO;
}

int mproc__pidfd_open(pid_t pid)
{
    if (!mproc__have_pidfd())
        return -ENOSYS;
    long r = syscall(SYS_pidfd_open, pid, 0);
    return r < 0 ? -errno : (int)r;
}

int mproc__pidfd_send_signal(int pidfd, int sig)
{
    if (!mproc__have_pidfd())
        return -ENOSYS;
    long r = syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
    return r < 0 ? -errno : 0;
}

int mproc__write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int mproc__read_all(int fd, void *p, size_t n)
{
    char *c = p;
    while (n > 0) {
        ssize_t r = read(fd, c, n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return MPROC_EEOF;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

void mproc__close(int fd)
{
    if (fd >= 0) {
        int e = errno;
        close(fd);
        errno = e;
    }
}

#ifdef MPROC_COVERAGE
/* libgcov's: writes the counters of every module of the process. (A weak
 * reference would stay NULL: it does not pull libgcov's member in.) */
void __gcov_dump(void);
#endif

void mproc__exit(int code)
{
#ifdef MPROC_COVERAGE
    __gcov_dump();
#endif
    _exit(code);
}

int mproc__random(void *buf, size_t n)
{
    char *c = buf;
    while (n > 0) {
        ssize_t r = getrandom(c, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

/* -EFBIG when a file of size bytes would pass RLIMIT_FSIZE (the kernel
 * would send SIGXFSZ, whose default action kills the process). */
static int fsize_check(uint64_t size)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        size > (uint64_t)rl.rlim_cur)
        return -EFBIG;
    return 0;
}

int mproc__fd_reserve(int fd, size_t size, bool allocate)
{
    if (size > (size_t)INT64_MAX)
        return -EFBIG;
    int r = fsize_check(size);
    if (r < 0)
        return r;
    if (ftruncate(fd, (off_t)size) < 0)
        return mproc__neg_errno();
    if (size == 0 || !allocate)
        return 0;
    /* tmpfs and memfds allocate their pages here (or fail): without it the
     * first touch of a page that cannot be had raises SIGBUS. */
    while ((r = fallocate(fd, 0, 0, (off_t)size)) < 0 && errno == EINTR)
        ;
    if (r < 0 && errno != EOPNOTSUPP)
        return mproc__neg_errno();
    return 0;
}

int mproc__memfd_new(const char *name, size_t size, bool sealable)
{
    int fd =
        memfd_create(name, MFD_CLOEXEC | (sealable ? MFD_ALLOW_SEALING : 0));
    if (fd < 0)
        return mproc__neg_errno();
    int r = mproc__fd_reserve(fd, size, false);
    if (r < 0) {
        close(fd);
        return r;
    }
    return fd;
}

int mproc__memfd_with(const char *name, const void *data, size_t n)
{
    int r = fsize_check(n);
    if (r < 0)
        return r;
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    r = mproc__write_all(fd, data, n);
    if (r < 0) {
        close(fd);
        return r;
    }
    return fd;
}

int mproc__send_fds(int sock, const void *p, size_t n, const int *fds,
                    size_t nfds)
{
    struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
    return mproc__sendv_fds(sock, &iov, 1, fds, nfds, 0);
}

int mproc__sendv_fds(int sock, struct iovec *iov, size_t niov, const int *fds,
                     size_t nfds, int flags)
{
    if (nfds > 253 || niov > 8)
        return -EINVAL;
    union {
        char buf[CMSG_SPACE(253 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec v[8];
    memcpy(v, iov, niov * sizeof *v);
    struct msghdr m = {.msg_iov = v, .msg_iovlen = niov};
    if (nfds > 0) {
        memset(&u, 0, sizeof u);
        m.msg_control = u.buf;
        m.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    /* The fds ride with the first byte; the rest may follow plainly. */
    while (m.msg_iovlen > 0) {
        ssize_t w = sendmsg(sock, &m, MSG_NOSIGNAL | flags);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
        m.msg_control = NULL;
        m.msg_controllen = 0;
        while (m.msg_iovlen > 0 && (size_t)w >= m.msg_iov->iov_len) {
            w -= (ssize_t)m.msg_iov->iov_len;
            m.msg_iov++;
            m.msg_iovlen--;
        }
        if (m.msg_iovlen > 0) {
            m.msg_iov->iov_base = (char *)m.msg_iov->iov_base + w;
            m.msg_iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

int mproc__recv_fds(int sock, void *p, size_t n, int *fds, size_t *nfds)
{
    ssize_t r = mproc__recv_fds_flags(sock, p, n, fds, nfds, 0);
    return (int)r;
}

ssize_t mproc__recv_fds_flags(int sock, void *p, size_t n, int *fds,
                              size_t *nfds, int flags)
{
    struct iovec iov = {.iov_base = p, .iov_len = n};
    union {
        char buf[CMSG_SPACE(253 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr m = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = u.buf,
                       .msg_controllen = sizeof u.buf};
    ssize_t r;
    do {
        r = recvmsg(sock, &m, MSG_CMSG_CLOEXEC | flags);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    size_t cap = nfds ? *nfds : 0, got = 0;
    bool overflow = false;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int tmp[253];
        memcpy(tmp, CMSG_DATA(c), k * sizeof(int));
        for (size_t i = 0; i < k; i++) {
            if (got < cap)
                fds[got++] = tmp[i];
            else {
                close(tmp[i]);
                overflow = true;
            }
        }
    }
    if (nfds)
        *nfds = got;
    /* More fds than asked for, or a datagram cut short: refuse it whole. */
    if (overflow || (m.msg_flags & (MSG_CTRUNC | MSG_TRUNC))) {
        for (size_t i = 0; i < got; i++)
            close(fds[i]);
        if (nfds)
            *nfds = 0;
        return MPROC_EPROTO;
    }
    return (int)r;
}
