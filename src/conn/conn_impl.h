/*
 * conn/conn_impl.h - what conn.c (framing), auth.c (the HMAC handshake)
 * and net.c (listeners, clients, addresses) share: the connection
 * object and the deadline-taking send/receive they build on.
 */
#ifndef MPROC__CONN_IMPL_H
#define MPROC__CONN_IMPL_H

#include "core/core.h"
#include "mproc/conn.h"

#define MPROC__CONN_IS_SOCKET 0x100

struct mproc_conn {
    int fd;                /* -1 once closed; read atomically by accessors */
    int flags;             /* MPROC_CONN_READABLE/WRITABLE | IS_SOCKET */
    pthread_mutex_t rlock; /* receives (and the rx state below) */
    pthread_mutex_t wlock; /* sends */
    double send_timeout;
    int pickle_protocol; /* send_obj's; 0 = the default; atomic */
    int tx_err; /* sticky send error (stream out of step), under wlock */
    int rx_err; /* sticky receive error; atomic (poll reads it) */

    /* A message in progress, kept across -ETIMEDOUT and MPROC_EBUFSIZE.
     * Nothing beyond the current message is ever read from the fd, so the
     * fd's readiness tells the whole truth to poll/epoll/mproc_wait. */
    unsigned char hdr[12];
    unsigned hdr_got; /* header bytes read so far */
    bool have_len;    /* header complete: len is the payload size */
    uint64_t len;
    unsigned char *part; /* payload received so far (after a timeout) */
    size_t part_cap;     /* allocated bytes of part (payload + NUL) */
    uint64_t part_got;
};

/* Send one message made of iov[0..n) before the deadline (NULL: the
 * connection's send timeout). */
int mproc__conn_sendv(mproc_conn *c, const struct iovec *iov, int n,
                      const mproc__deadline *dl);
/* Receive one message (allocating) before the deadline; maxlen 0 = none. */
int mproc__conn_recv(mproc_conn *c, void **out, size_t *len, size_t maxlen,
                     const mproc__deadline *dl);

/* The same with the connection's send / receive lock already held. */
int mproc__conn_sendv_locked(mproc_conn *c, const struct iovec *iov, int n,
                             const mproc__deadline *dl);
int mproc__conn_recv_locked(mproc_conn *c, void **out, size_t *len,
                            size_t maxlen, const mproc__deadline *dl);

/* The handshake halves with an absolute deadline (auth.c). */
int mproc__conn_deliver(mproc_conn *c, const void *key, size_t keylen,
                        const mproc__deadline *dl);
int mproc__conn_answer(mproc_conn *c, const void *key, size_t keylen,
                       const mproc__deadline *dl);

#endif
