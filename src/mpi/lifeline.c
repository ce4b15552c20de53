/*
 * mpi/lifeline.c - how rank 0 learns that a serving rank is gone. Open MPI
 * 4.1 has no fault tolerance API (no ULFM): a peer that died just stops
 * answering. So each server connects one TCP socket to rank 0 at start
 * and never writes to it again; rank 0 polls its end (relay.c): end of
 * file means the server's process ended, and TCP keepalive (a few
 * seconds of silence) covers a node that vanished with its kernel.
 */
#include "mpi/mpi_impl.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Rank 0's IPv4 addresses, loopback first (same host), then the others. */
static void my_addrs(mpi__addr *a)
{
    struct ifaddrs *ifs = NULL;
    a->n = 0;
    a->ip[a->n++] = htonl(INADDR_LOOPBACK);
    if (getifaddrs(&ifs) < 0)
        return;
    for (struct ifaddrs *i = ifs; i && a->n < MPI__MAX_ADDRS; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
            (i->ifa_flags & IFF_UP) && !(i->ifa_flags & IFF_LOOPBACK))
            a->ip[a->n++] =
                ((const struct sockaddr_in *)(const void *)i->ifa_addr)
                    ->sin_addr.s_addr;
    freeifaddrs(ifs);
}

static void keepalive(int fd)
{
    int on = 1, idle = 5, intvl = 2, cnt = 3;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

int mpi__lifelines_accept(MPI_Comm comm, int size, int *life)
{
    for (int r = 0; r < size; r++)
        life[r] = -1;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_ANY)};
    socklen_t sl = sizeof sa;
    mpi__addr a = {0};
    if (lfd >= 0 && (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
                     listen(lfd, size) < 0 ||
                     getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0)) {
        close(lfd);
        lfd = -1;
    }
    if (lfd >= 0) {
        a.port = sa.sin_port;
        my_addrs(&a);
    }
    /* Every server waits for this, even with no address in it. */
    for (int r = 1; r < size; r++)
        MPI_Send(&a, sizeof a, MPI_BYTE, r, T_ADDR, comm);
    if (lfd < 0)
        return 0; /* no lifelines: losses go unnoticed (docs/mpi.md) */
    mproc__deadline d = mproc__deadline_from(10.0);
    for (int got = 0; got < size - 1;) {
        struct timespec left;
        if (!mproc__deadline_left(&d, &left))
            break;
        struct pollfd p = {.fd = lfd, .events = POLLIN};
        int ms = (int)(left.tv_sec * 1000 + left.tv_nsec / 1000000) + 1;
        if (poll(&p, 1, ms) <= 0)
            continue;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        int32_t r = -1;
        struct pollfd q = {.fd = fd, .events = POLLIN};
        if (poll(&q, 1, 2000) != 1 || read(fd, &r, sizeof r) != sizeof r ||
            r <= 0 || r >= size || life[r] >= 0) {
            close(fd);
            continue;
        }
        keepalive(fd);
        life[r] = fd;
        got++;
    }
    close(lfd);
    return 0;
}

/* Connects to ip:port within 2 s; the fd or -1. */
static int try_connect(uint32_t ip, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = port, .sin_addr.s_addr = ip};
    int r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    if (r < 0 && errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int err = 0;
        socklen_t el = sizeof err;
        if (poll(&p, 1, 2000) == 1 &&
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0)
            r = 0;
    }
    if (r < 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}

int mpi__lifeline_connect(MPI_Comm comm, int rank)
{
    mpi__addr a;
    if (MPI_Recv(&a, sizeof a, MPI_BYTE, 0, T_ADDR, comm, MPI_STATUS_IGNORE) !=
            MPI_SUCCESS ||
        a.port == 0)
        return -1;
    for (unsigned i = 0; i < a.n && i < MPI__MAX_ADDRS; i++) {
        int fd = try_connect(a.ip[i], a.port);
        if (fd < 0)
            continue;
        int32_t r = rank;
        if (write(fd, &r, sizeof r) == sizeof r)
            return fd;
        close(fd);
    }
    return -1;
}
