/*
 * conn/handle.c - objects for a process that is already running, over a
 * Unix-socket connection: a raw fd (CPython's reduction.send_handle and
 * recv_handle, byte for byte: one byte holding the number of fds, with
 * the fds attached by SCM_RIGHTS), and whole argument lists whose objects
 * (connections, queues, locks, shared memory, values...) travel as their
 * kind's export: that byte with every fd the list's objects export, then
 * one framed message holding the list, as a spawn child gets it.
 */
#include "conn/conn_impl.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define HANDLE_MAX_FDS (MPROC_ARGS_MAX_FDS + 8)

/* Sends the count byte with fds[0..n), whole, by the deadline. wlock held. */
static int send_fds_locked(mproc_conn *c, const int *fds, size_t n,
                           const mproc__deadline *dl)
{
    if (c->fd < 0)
        return MPROC_ECLOSED;
    if (!(c->flags & MPROC__CONN_IS_SOCKET))
        return -ENOTSOCK;
    if (!(c->flags & MPROC_CONN_WRITABLE))
        return -EBADF;
    if (c->tx_err)
        return c->tx_err;
    unsigned char count = (unsigned char)(n % 256);
    for (;;) {
        struct iovec iov = {&count, 1};
        int r = mproc__sendv_fds(c->fd, &iov, 1, fds, n, MSG_DONTWAIT);
        if (r != -EAGAIN)
            return r;
        r = mproc__poll_fd(c->fd, POLLOUT, dl, NULL);
        if (r == 0)
            return -ETIMEDOUT;
        if (r < 0)
            return r;
    }
}

/* Receives the count byte and up to *n fds (close-on-exec) by the
 * deadline. A count that disagrees with the fds that came, or more fds
 * than room, is MPROC_EPROTO with nothing kept. rlock held. */
static int recv_fds_locked(mproc_conn *c, int *fds, size_t *n,
                           const mproc__deadline *dl)
{
    if (c->fd < 0)
        return MPROC_ECLOSED;
    if (!(c->flags & MPROC__CONN_IS_SOCKET))
        return -ENOTSOCK;
    if (!(c->flags & MPROC_CONN_READABLE))
        return -EBADF;
    int rx = __atomic_load_n(&c->rx_err, __ATOMIC_ACQUIRE);
    if (rx)
        return rx;
    if (c->hdr_got || c->have_len)
        return -EBUSY; /* a message is half received: not an fd's turn */
    for (;;) {
        unsigned char count;
        size_t got = *n;
        ssize_t r =
            mproc__recv_fds_flags(c->fd, &count, 1, fds, &got, MSG_DONTWAIT);
        if (r == 1) {
            if (count == got % 256) {
                *n = got;
                return 0;
            }
            for (size_t i = 0; i < got; i++)
                close(fds[i]);
            return MPROC_EPROTO;
        }
        if (r == 0)
            return MPROC_EEOF;
        if (r != -EAGAIN)
            return (int)r;
        int p = mproc__poll_fd(c->fd, POLLIN, dl, NULL);
        if (p == 0)
            return -ETIMEDOUT;
        if (p < 0)
            return p;
    }
}

int mproc_conn_send_handle(mproc_conn *c, int fd, double timeout)
{
    if (!c || fd < 0)
        return -EINVAL;
    mproc__deadline dl = mproc__deadline_from(timeout);
    pthread_mutex_lock(&c->wlock);
    int r = send_fds_locked(c, &fd, 1, &dl);
    pthread_mutex_unlock(&c->wlock);
    return r;
}

int mproc_conn_recv_handle(mproc_conn *c, int *out, double timeout)
{
    if (!c || !out)
        return -EINVAL;
    mproc__deadline dl = mproc__deadline_from(timeout);
    int fd = -1;
    size_t n = 1;
    pthread_mutex_lock(&c->rlock);
    int r = recv_fds_locked(c, &fd, &n, &dl);
    pthread_mutex_unlock(&c->rlock);
    if (r == 0 && n != 1) {
        r = MPROC_EPROTO; /* a count of 0: no handle came */
    }
    if (r == 0)
        *out = fd;
    return r;
}

int mproc_conn_send_args(mproc_conn *c, const mproc_args *a, double timeout)
{
    if (!c || !a)
        return -EINVAL;
    mproc__buf b = {0};
    int fds[HANDLE_MAX_FDS];
    size_t nfds = 0;
    int r = mproc__args_export(a, &b, fds, &nfds, HANDLE_MAX_FDS);
    if (r == 0 && b.oom)
        r = -ENOMEM;
    if (r < 0) {
        mproc__buf_free(&b);
        return r;
    }
    mproc__deadline dl = mproc__deadline_from(timeout);
    pthread_mutex_lock(&c->wlock);
    r = send_fds_locked(c, fds, nfds, &dl);
    if (r == 0) {
        struct iovec iov = {b.p, b.len};
        r = mproc__conn_sendv_locked(c, &iov, 1, &dl);
        /* The fds went, the list did not: the peer is out of step. */
        if (r < 0 && !c->tx_err)
            c->tx_err = r;
    }
    pthread_mutex_unlock(&c->wlock);
    mproc__buf_free(&b);
    return r;
}

int mproc_conn_recv_args(mproc_conn *c, mproc_args **out, double timeout)
{
    if (!c || !out)
        return -EINVAL;
    *out = NULL;
    mproc__deadline dl = mproc__deadline_from(timeout);
    int fds[HANDLE_MAX_FDS];
    size_t nfds = HANDLE_MAX_FDS;
    void *blob = NULL;
    size_t len = 0;
    pthread_mutex_lock(&c->rlock);
    int r = recv_fds_locked(c, fds, &nfds, &dl);
    bool have_fds = r == 0;
    if (r == 0) {
        /* The list follows at once (its sender holds the connection):
         * wait for it at least 10 s whatever the caller's timeout, so a
         * short one does not split the fds from their list. */
        mproc__deadline list = mproc__deadline_from(10.0);
        if (dl.infinite || dl.at.tv_sec > list.at.tv_sec ||
            (dl.at.tv_sec == list.at.tv_sec && dl.at.tv_nsec > list.at.tv_nsec))
            list = dl;
        r = mproc__conn_recv_locked(c, &blob, &len, 0, &list);
        if (r == -ETIMEDOUT)
            r = MPROC_ETRUNC; /* fds without their list: out of step */
    }
    pthread_mutex_unlock(&c->rlock);
    if (r < 0) {
        for (size_t i = 0; have_fds && i < nfds; i++)
            mproc__close(fds[i]);
        free(blob);
        return r;
    }
    mproc__reader rd = {.p = blob, .len = len};
    r = mproc__args_import(&rd, fds, nfds, out); /* takes the fds */
    free(blob);
    return r;
}
