/*
 * conn/conn.c - connections: CPython-compatible message framing over a stream
 * socket or a pipe (multiprocessing.Connection), Pipe(), and connections
 * as arguments of a child process.
 *
 * A message is a 4-byte big-endian signed length and the payload, or
 * ff ff ff ff, an 8-byte big-endian length and the payload when the length
 * does not fit in 31 bits. A send hands header and payload to the kernel in
 * one writev/sendmsg. A receive reads exactly one message and nothing
 * beyond it, so an fd that is not readable never hides a buffered message;
 * the only state kept between calls is the message in progress (after a
 * timeout or a too-short buffer), which lets those errors lose nothing.
 */
#include "conn/conn_impl.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Allocate a received payload whole up to this size; beyond it the buffer
 * grows as bytes arrive, so a hostile length cannot reserve memory. The
 * fuzz build uses a small step: every input then walks the growth path,
 * and an announced 16 MiB costs the fuzzer no 16 MiB allocation. */
#ifdef MPROC_FUZZ_BUILD
#define CONN_ALLOC_STEP ((uint64_t)4 << 10)
#else
#define CONN_ALLOC_STEP ((uint64_t)16 << 20)
#endif
#define CONN_MAX_IOV 64

/* mproc__deadline_from without the clock read when waiting forever, the
 * common case on the hot path. */
static inline mproc__deadline deadline(double timeout)
{
    if (timeout < 0) {
        mproc__deadline d = {.infinite = true};
        return d;
    }
    return mproc__deadline_from(timeout);
}

static int conn_fd(const mproc_conn *c)
{
    return __atomic_load_n(&c->fd, __ATOMIC_ACQUIRE);
}

static int conn_new(mproc_conn **out, int fd, int flags)
{
    mproc_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode))
        flags |= MPROC__CONN_IS_SOCKET;
    c->fd = fd;
    c->flags = flags;
    c->send_timeout = -1.0;
    pthread_mutex_init(&c->rlock, NULL);
    pthread_mutex_init(&c->wlock, NULL);
    *out = c;
    return 0;
}

int mproc_conn_from_fd(mproc_conn **out, int fd, int flags)
{
    if (!out || fd < 0 ||
        !(flags & (MPROC_CONN_READABLE | MPROC_CONN_WRITABLE)) ||
        (flags & ~(MPROC_CONN_READABLE | MPROC_CONN_WRITABLE)))
        return -EINVAL;
    return conn_new(out, fd, flags);
}

int mproc_pipe(mproc_conn **a, mproc_conn **b, int duplex)
{
    if (!a || !b)
        return -EINVAL;
    int fds[2], fa, fb, rc;
    if (duplex) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
            return -errno;
        fa = fb = MPROC_CONN_READABLE | MPROC_CONN_WRITABLE;
    } else {
        if (pipe2(fds, O_CLOEXEC) < 0)
            return -errno;
        fa = MPROC_CONN_READABLE;
        fb = MPROC_CONN_WRITABLE;
    }
    mproc_conn *ca = NULL, *cb = NULL;
    rc = conn_new(&ca, fds[0], fa);
    if (rc < 0)
        goto out_close;
    rc = conn_new(&cb, fds[1], fb);
    if (rc < 0)
        goto out_free;
    *a = ca;
    *b = cb;
    return 0;
out_free:
    free(ca);
out_close:
    close(fds[0]);
    close(fds[1]);
    return rc;
}

static void rx_reset(mproc_conn *c)
{
    free(c->part);
    c->part = NULL;
    c->part_cap = 0;
    c->part_got = 0;
    c->hdr_got = 0;
    c->have_len = false;
    c->len = 0;
}

int mproc_conn_close(mproc_conn *c)
{
    if (!c)
        return -EINVAL;
    pthread_mutex_lock(&c->wlock);
    pthread_mutex_lock(&c->rlock);
    int rc = 0, fd = c->fd;
    if (fd >= 0) {
        __atomic_store_n(&c->fd, -1, __ATOMIC_RELEASE);
        /* close(2) releases the fd even when it reports an error. */
        if (close(fd) < 0 && errno != EINTR)
            rc = -errno;
    }
    rx_reset(c);
    pthread_mutex_unlock(&c->rlock);
    pthread_mutex_unlock(&c->wlock);
    return rc;
}

void mproc_conn_free(mproc_conn *c)
{
    if (!c)
        return;
    mproc_conn_close(c);
    pthread_mutex_destroy(&c->rlock);
    pthread_mutex_destroy(&c->wlock);
    free(c);
}

int mproc_conn_fileno(const mproc_conn *c)
{
    if (!c)
        return -EINVAL;
    int fd = conn_fd(c);
    return fd >= 0 ? fd : MPROC_ECLOSED;
}

int mproc_conn_flags(const mproc_conn *c)
{
    if (!c || conn_fd(c) < 0)
        return 0;
    return c->flags & (MPROC_CONN_READABLE | MPROC_CONN_WRITABLE);
}

int mproc_conn_closed(const mproc_conn *c)
{
    return c && conn_fd(c) < 0;
}

int mproc_conn_set_send_timeout(mproc_conn *c, double timeout)
{
    if (!c)
        return -EINVAL;
    pthread_mutex_lock(&c->wlock);
    int rc = c->fd < 0 ? MPROC_ECLOSED : 0;
    if (rc == 0)
        c->send_timeout = timeout;
    pthread_mutex_unlock(&c->wlock);
    return rc;
}

/* ---- sending ----------------------------------------------------------- */

/* Drops the first k bytes of the iovec array *iov / *n. */
static void iov_advance(struct iovec **iov, int *n, size_t k)
{
    while (*n > 0 && k >= (*iov)->iov_len) {
        k -= (*iov)->iov_len;
        (*iov)++;
        (*n)--;
    }
    if (*n > 0 && k > 0) {
        (*iov)->iov_base = (char *)(*iov)->iov_base + k;
        (*iov)->iov_len -= k;
    }
}

/* Limits iov[0..n) to at most max bytes (for timed pipe writes that must
 * not block); returns how many entries to pass and trims the last one,
 * whose original length is saved in *saved_len (restore it after). */
static int iov_limit(struct iovec *iov, int n, size_t max, size_t *saved_len)
{
    size_t sum = 0;
    for (int i = 0; i < n; i++) {
        if (sum + iov[i].iov_len > max) {
            *saved_len = iov[i].iov_len;
            iov[i].iov_len = max - sum;
            return i + 1;
        }
        sum += iov[i].iov_len;
    }
    *saved_len = SIZE_MAX;
    return n;
}

/* One write attempt of iov[0..n). Sockets use MSG_NOSIGNAL (and
 * MSG_DONTWAIT when timed); a pipe is written with SIGPIPE blocked by the
 * caller and, when timed, at most PIPE_BUF bytes after POLLOUT, which the
 * kernel then takes without blocking. Returns bytes written or -errno. */
static ssize_t write_once(mproc_conn *c, struct iovec *iov, int n, bool timed)
{
    ssize_t k;
    if (c->flags & MPROC__CONN_IS_SOCKET) {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        k = sendmsg(c->fd, &mh, MSG_NOSIGNAL | (timed ? MSG_DONTWAIT : 0));
    } else if (timed) {
        size_t saved;
        int m = iov_limit(iov, n, PIPE_BUF, &saved);
        k = writev(c->fd, iov, m);
        if (saved != SIZE_MAX)
            iov[m - 1].iov_len = saved;
    } else {
        k = writev(c->fd, iov, n);
    }
    return k < 0 ? -errno : k;
}

static int send_locked(mproc_conn *c, struct iovec *iov, int n, uint64_t total,
                       const mproc__deadline *dl)
{
    bool timed = !dl->infinite;
    uint64_t sent = 0;
    int rc = 0;
    while (sent < total) {
        if (timed && !(c->flags & MPROC__CONN_IS_SOCKET)) {
            rc = mproc__poll_fd(c->fd, POLLOUT, dl, NULL);
            if (rc == 0)
                rc = -ETIMEDOUT;
            if (rc < 0)
                break;
        }
        ssize_t k = write_once(c, iov, n, timed);
        if (k == -EINTR)
            continue;
        if (k == -EAGAIN) {
            /* Full (socket, timed) or an fd the caller made O_NONBLOCK. */
            rc = mproc__poll_fd(c->fd, POLLOUT, dl, NULL);
            if (rc == 0)
                rc = -ETIMEDOUT;
            if (rc < 0)
                break;
            continue;
        }
        if (k < 0) {
            rc = (int)k;
            break;
        }
        sent += (uint64_t)k;
        iov_advance(&iov, &n, (size_t)k);
    }
    if (rc == 1)
        rc = 0;
    if (rc < 0 && sent > 0)
        c->tx_err = rc; /* the peer saw part of a message: out of step */
    return rc;
}

static int conn_sendv(mproc_conn *c, const struct iovec *uiov, int uiovcnt,
                      const mproc__deadline *dl, bool have_wlock);

int mproc__conn_sendv(mproc_conn *c, const struct iovec *uiov, int uiovcnt,
                      const mproc__deadline *dl)
{
    return conn_sendv(c, uiov, uiovcnt, dl, false);
}

int mproc__conn_sendv_locked(mproc_conn *c, const struct iovec *uiov,
                             int uiovcnt, const mproc__deadline *dl)
{
    return conn_sendv(c, uiov, uiovcnt, dl, true);
}

static int conn_sendv(mproc_conn *c, const struct iovec *uiov, int uiovcnt,
                      const mproc__deadline *dl, bool have_wlock)
{
    if (!c || uiovcnt < 0 || uiovcnt > CONN_MAX_IOV || (uiovcnt && !uiov))
        return -EINVAL;
    uint64_t total = 0;
    for (int i = 0; i < uiovcnt; i++) {
        if (!uiov[i].iov_base && uiov[i].iov_len)
            return -EINVAL;
        if (uiov[i].iov_len > MPROC_CONN_MAX_MESSAGE - total)
            return MPROC_ETOOBIG;
        total += uiov[i].iov_len;
    }
    unsigned char hdr[12];
    struct iovec iov[CONN_MAX_IOV + 1];
    if (total <= 0x7fffffff) {
        for (int i = 0; i < 4; i++)
            hdr[i] = (unsigned char)(total >> (24 - 8 * i));
        iov[0].iov_len = 4;
    } else {
        memset(hdr, 0xff, 4);
        for (int i = 0; i < 8; i++)
            hdr[4 + i] = (unsigned char)(total >> (56 - 8 * i));
        iov[0].iov_len = 12;
    }
    iov[0].iov_base = hdr;
    int n = 1;
    for (int i = 0; i < uiovcnt; i++)
        if (uiov[i].iov_len)
            iov[n++] = uiov[i];
    total += iov[0].iov_len;

    if (!have_wlock)
        pthread_mutex_lock(&c->wlock);
    int rc;
    if (c->fd < 0)
        rc = MPROC_ECLOSED;
    else if (!(c->flags & MPROC_CONN_WRITABLE))
        rc = -EBADF;
    else if (c->tx_err)
        rc = c->tx_err;
    else {
        mproc__deadline own;
        if (!dl) {
            own = deadline(c->send_timeout);
            dl = &own;
        }
        if (c->flags & MPROC__CONN_IS_SOCKET) {
            rc = send_locked(c, iov, n, total, dl);
        } else {
            /* A pipe has no MSG_NOSIGNAL: keep SIGPIPE pending-blocked
             * and take back the one our own write raised. If the caller
             * already blocked it, whatever is pending stays theirs. */
            sigset_t pipe_set, old;
            sigemptyset(&pipe_set);
            sigaddset(&pipe_set, SIGPIPE);
            pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
            rc = send_locked(c, iov, n, total, dl);
            if (rc == -EPIPE && !sigismember(&old, SIGPIPE)) {
                struct timespec zero = {0, 0};
                while (sigtimedwait(&pipe_set, NULL, &zero) < 0 &&
                       errno == EINTR)
                    ;
            }
            pthread_sigmask(SIG_SETMASK, &old, NULL);
        }
    }
    if (!have_wlock)
        pthread_mutex_unlock(&c->wlock);
    return rc;
}

int mproc_conn_send_bytes(mproc_conn *c, const void *buf, size_t n)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = n};
    return mproc__conn_sendv(c, &iov, 1, NULL);
}

int mproc_conn_send_bytes_range(mproc_conn *c, const void *buf, size_t buflen,
                                size_t offset, size_t size)
{
    if (offset > buflen)
        return -EINVAL;
    if (size == MPROC_CONN_ALL)
        size = buflen - offset;
    else if (size > buflen - offset)
        return -EINVAL;
    return mproc_conn_send_bytes(c, buf ? (const char *)buf + offset : NULL,
                                 size);
}

int mproc_conn_send_bytesv(mproc_conn *c, const struct iovec *iov, int iovcnt)
{
    return mproc__conn_sendv(c, iov, iovcnt, NULL);
}

/* ---- receiving --------------------------------------------------------- */

/* One read of at most n bytes before the deadline. Returns the count (0 at
 * end of file), -ETIMEDOUT or -errno. A socket is tried without waiting
 * first, so a ready message costs no poll(2). */
static ssize_t read_once(mproc_conn *c, void *p, size_t n,
                         const mproc__deadline *dl)
{
    bool sock = c->flags & MPROC__CONN_IS_SOCKET;
    bool must_poll = !dl->infinite && !sock;
    for (;;) {
        if (must_poll) {
            int r = mproc__poll_fd(c->fd, POLLIN, dl, NULL);
            if (r == 0)
                return -ETIMEDOUT;
            if (r < 0)
                return r;
        }
        ssize_t k;
        if (sock)
            k = recv(c->fd, p, n, dl->infinite ? 0 : MSG_DONTWAIT);
        else
            k = read(c->fd, p, n);
        if (k >= 0)
            return k;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        must_poll = true; /* timed socket, or a caller's O_NONBLOCK fd */
        if (dl->infinite)
            continue; /* poll below with no deadline, then read again */
    }
}

/* Makes the connection unreadable from now on; returns err. */
static int rx_fail(mproc_conn *c, int err)
{
    rx_reset(c);
    __atomic_store_n(&c->rx_err, err, __ATOMIC_RELEASE);
    return err;
}

/* Reads the rest of the header. 0 when c->len is known. */
static int read_header(mproc_conn *c, const mproc__deadline *dl)
{
    while (!c->have_len) {
        unsigned need = 4;
        if (c->hdr_got >= 4 && memcmp(c->hdr, "\xff\xff\xff\xff", 4) == 0)
            need = 12;
        if (c->hdr_got < need) {
            ssize_t k =
                read_once(c, c->hdr + c->hdr_got, need - c->hdr_got, dl);
            if (k == 0)
                return c->hdr_got == 0 ? MPROC_EEOF : rx_fail(c, MPROC_ETRUNC);
            if (k == -ETIMEDOUT)
                return (int)k;
            if (k < 0)
                return rx_fail(c, (int)k);
            c->hdr_got += (unsigned)k;
            continue;
        }
        if (need == 4) {
            uint32_t u = (uint32_t)c->hdr[0] << 24 | (uint32_t)c->hdr[1] << 16 |
                         (uint32_t)c->hdr[2] << 8 | c->hdr[3];
            if (u & 0x80000000u)
                return rx_fail(c, MPROC_EPROTO); /* negative, not -1 */
            c->len = u;
        } else {
            uint64_t u = 0;
            for (int i = 4; i < 12; i++)
                u = u << 8 | c->hdr[i];
            if (u > MPROC_CONN_MAX_MESSAGE || u > SIZE_MAX - 1)
                return rx_fail(c, MPROC_ETOOBIG);
            c->len = u;
        }
        c->have_len = true;
    }
    return 0;
}

/* Reads payload bytes into dst[*got..len). Returns 0 when complete,
 * -ETIMEDOUT (progress kept in *got), or a sticky error. */
static int read_payload(mproc_conn *c, unsigned char *dst, uint64_t *got,
                        uint64_t want, const mproc__deadline *dl)
{
    while (*got < want) {
        ssize_t k = read_once(c, dst + *got, (size_t)(want - *got), dl);
        if (k == 0)
            return rx_fail(c, MPROC_ETRUNC);
        if (k == -ETIMEDOUT)
            return (int)k;
        if (k < 0)
            return rx_fail(c, (int)k);
        *got += (uint64_t)k;
    }
    return 0;
}

/* Receives into c->part, growing it as bytes arrive. */
static int recv_to_part(mproc_conn *c, const mproc__deadline *dl)
{
    for (;;) {
        uint64_t room = c->part_cap ? c->part_cap - 1 : 0;
        if (!c->part || (room < c->len && c->part_got == room)) {
            uint64_t want = c->len;
            if (want > CONN_ALLOC_STEP && want > room * 2)
                want = room * 2 > CONN_ALLOC_STEP ? room * 2 : CONN_ALLOC_STEP;
            unsigned char *p = realloc(c->part, (size_t)want + 1);
            if (!p)
                return rx_fail(c, -ENOMEM);
            c->part = p;
            c->part_cap = (size_t)want + 1;
            room = want;
        }
        int rc = read_payload(c, c->part, &c->part_got, room, dl);
        if (rc < 0)
            return rc;
        if (c->part_got == c->len)
            return 0;
    }
}

static int recv_begin(mproc_conn *c)
{
    if (c->fd < 0)
        return MPROC_ECLOSED;
    if (!(c->flags & MPROC_CONN_READABLE))
        return -EBADF;
    return __atomic_load_n(&c->rx_err, __ATOMIC_ACQUIRE);
}

int mproc__conn_recv(mproc_conn *c, void **out, size_t *len, size_t maxlen,
                     const mproc__deadline *dl)
{
    pthread_mutex_lock(&c->rlock);
    int rc = mproc__conn_recv_locked(c, out, len, maxlen, dl);
    pthread_mutex_unlock(&c->rlock);
    return rc;
}

int mproc__conn_recv_locked(mproc_conn *c, void **out, size_t *len,
                            size_t maxlen, const mproc__deadline *dl)
{
    int rc = recv_begin(c);
    if (rc == 0)
        rc = read_header(c, dl);
    if (rc == 0 && maxlen && c->len > maxlen)
        rc = rx_fail(c, MPROC_ETOOBIG);
    if (rc == 0)
        rc = recv_to_part(c, dl);
    if (rc == 0) {
        c->part[c->len] = 0;
        *out = c->part;
        *len = (size_t)c->len;
        c->part = NULL;
        rx_reset(c);
    }
    return rc;
}

int mproc_conn_recv_bytes(mproc_conn *c, void **out, size_t *len, size_t maxlen,
                          double timeout)
{
    if (!c || !out || !len)
        return -EINVAL;
    mproc__deadline dl = deadline(timeout);
    return mproc__conn_recv(c, out, len, maxlen, &dl);
}

int mproc_conn_recv_bytes_into(mproc_conn *c, void *buf, size_t cap,
                               size_t *len, double timeout)
{
    if (!c || !len || (!buf && cap))
        return -EINVAL;
    unsigned char none;
    if (!buf)
        buf = &none; /* cap is 0: only an empty message fits */
    mproc__deadline dl = deadline(timeout);
    pthread_mutex_lock(&c->rlock);
    int rc = recv_begin(c);
    if (rc == 0)
        rc = read_header(c, &dl);
    if (rc == 0 && c->len > cap) {
        *len = (size_t)c->len;
        rc = MPROC_EBUFSIZE; /* keep the message for the next call */
    } else if (rc == 0 && c->part) {
        /* Resuming a message an earlier call timed out on. */
        rc = recv_to_part(c, &dl);
        if (rc == 0 && c->len)
            memcpy(buf, c->part, (size_t)c->len);
    } else if (rc == 0) {
        uint64_t got = 0;
        rc = read_payload(c, buf, &got, c->len, &dl);
        if (rc == -ETIMEDOUT && got > 0) {
            /* Keep what arrived: the caller's buffer may differ next time
             * (want <= len <= INT64_MAX, so the size never wraps to 0). */
            uint64_t want = c->len > CONN_ALLOC_STEP && got <= CONN_ALLOC_STEP
                                ? CONN_ALLOC_STEP
                                : c->len;
            // NOLINTNEXTLINE(clang-analyzer-optin.portability.UnixAPI)
            c->part = malloc((size_t)want + 1);
            if (!c->part) {
                rc = rx_fail(c, -ENOMEM);
            } else {
                memcpy(c->part, buf, (size_t)got);
                c->part_cap = (size_t)want + 1;
                c->part_got = got;
            }
        }
    }
    if (rc == 0) {
        *len = (size_t)c->len;
        rx_reset(c);
    }
    pthread_mutex_unlock(&c->rlock);
    return rc;
}

int mproc_conn_poll(mproc_conn *c, double timeout)
{
    if (!c)
        return -EINVAL;
    int fd = conn_fd(c);
    if (fd < 0)
        return MPROC_ECLOSED;
    if (!(c->flags & MPROC_CONN_READABLE))
        return -EBADF;
    if (__atomic_load_n(&c->rx_err, __ATOMIC_ACQUIRE))
        return 1;
    mproc__deadline dl = deadline(timeout);
    int rc = mproc__poll_fd(fd, POLLIN, &dl, NULL);
    return rc > 0 ? 1 : rc;
}

/* ---- connections as process arguments -------------------------------- */

static int conn_export(const void *obj, mproc_export *ex)
{
    mproc_conn *c = (mproc_conn *)obj;
    pthread_mutex_lock(&c->rlock);
    int rc = 0, fd = c->fd;
    if (fd < 0)
        rc = MPROC_ECLOSED;
    else if (c->hdr_got || c->have_len || c->rx_err || c->tx_err)
        rc = -EBUSY; /* mid-message or out of step: no fresh start */
    pthread_mutex_unlock(&c->rlock);
    if (rc < 0)
        return rc;
    unsigned char flags =
        (unsigned char)(c->flags & (MPROC_CONN_READABLE | MPROC_CONN_WRITABLE));
    rc = mproc_export_fd(ex, fd);
    if (rc == 0)
        rc = mproc_export_bytes(ex, &flags, 1);
    return rc;
}

static int conn_import(mproc_import *im, void **out)
{
    int fd = mproc_import_fd(im);
    if (fd < 0)
        return fd;
    unsigned char flags;
    int rc = mproc_import_bytes(im, &flags, 1);
    mproc_conn *c = NULL;
    if (rc == 0)
        rc = mproc_conn_from_fd(&c, fd, flags);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    *out = c;
    return 0;
}

static void conn_free_obj(void *obj)
{
    mproc_conn_free(obj);
}

const mproc_kind mproc_conn_kind = {
    .name = "mproc.conn",
    .export_fn = conn_export,
    .import_fn = conn_import,
    .free_fn = conn_free_obj,
};

int mproc_args_add_conn(mproc_args *a, mproc_conn *c)
{
    if (!c)
        return -EINVAL;
    return mproc_args_add_object(a, &mproc_conn_kind, c);
}

mproc_conn *mproc_args_conn(const mproc_args *a, size_t i)
{
    return mproc_args_object(a, i, &mproc_conn_kind);
}
