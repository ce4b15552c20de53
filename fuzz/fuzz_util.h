/*
 * fuzz_util.h - what every fuzz target shares: the fuzz input as the bytes
 * a peer sent, behind a connection whose other end is closed.
 */
#ifndef MPROC_FUZZ_UTIL_H
#define MPROC_FUZZ_UTIL_H

#include <mproc.h>

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

/* Inputs beyond this are cut: a socketpair holds them without blocking. */
#define FUZZ_MAX (96 * 1024)

/*
 * A connection reading data[0..size) and then end of file. *peer is the
 * other end, kept open so that what the parser sends back (a challenge, a
 * verdict) is written without EPIPE; close it after the connection.
 * Returns NULL on failure (out of fds).
 */
static inline mproc_conn *fuzz_conn(const uint8_t *data, size_t size, int *peer)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return NULL;
    int big = 1 << 20;
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    if (size > FUZZ_MAX)
        size = FUZZ_MAX;
    for (size_t off = 0; off < size;) {
        ssize_t n = write(sv[1], data + off, size - off);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    shutdown(sv[1], SHUT_WR);
    mproc_conn *c = NULL;
    if (mproc_conn_from_fd(&c, sv[0],
                           MPROC_CONN_READABLE | MPROC_CONN_WRITABLE) < 0) {
        close(sv[0]);
        close(sv[1]);
        return NULL;
    }
    *peer = sv[1];
    return c;
}

#endif
