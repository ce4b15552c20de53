/*
 * conn/net.c - listeners and clients (multiprocessing.connection.Listener
 * and Client): address strings, AF_UNIX paths and abstract names, TCP over
 * IPv4 and IPv6, and the authenticated accept/connect.
 *
 * A listener's socket is non-blocking; accept waits in poll(2) on it and on
 * a per-process eventfd that close() signals, so closing a listener wakes
 * the threads blocked in accept instead of leaving them on a dead fd.
 */
#include "conn/conn_impl.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_BACKLOG 64
#define ADDR_STR_MAX    320

struct mproc_listener {
    pthread_mutex_t lock;
    pthread_cond_t idle; /* accepters reached 0 while closing */
    int fd;
    bool closed;
    int ev_fd;     /* eventfd close() signals, made per process */
    pid_t ev_pid;  /* the process ev_fd and accepters belong to */
    int accepters; /* threads inside accept (this process) */
    char *address;
    int family;
    /* Filesystem socket: unlinked on close by its creator, if unchanged. */
    pid_t creator;
    bool has_path;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
    dev_t dev;
    ino_t ino;
    /* Handshake settings (copied). */
    bool auth;
    unsigned char *key;
    size_t keylen;
    double hs_timeout;
};

/* ---- addresses --------------------------------------------------------- */

static int unix_addr(struct sockaddr_storage *ss, socklen_t *len,
                     const char *name, size_t n, bool abstract)
{
    struct sockaddr_un *un = (struct sockaddr_un *)ss;
    size_t room = sizeof(un->sun_path) - 1; /* a path keeps its NUL */
    if (n == 0 || n > room)
        return MPROC_EADDR;
    memset(un, 0, sizeof(*un));
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path + abstract, name, n);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
}

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static int inet_addr_of(struct sockaddr_storage *ss, socklen_t *len,
                        const char *host, const char *port, int family,
                        bool passive)
{
    if (!all_digits(port) || strlen(port) > 5 || atoi(port) > 65535)
        return MPROC_EADDR;
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    int rc = getaddrinfo(*host ? host : NULL, port, &hints, &res);
    if (rc != 0 && family == AF_INET && *host) {
        /* Python's (host, port) is AF_INET; allow a v6-only name too. */
        hints.ai_family = AF_UNSPEC;
        rc = getaddrinfo(host, port, &hints, &res);
    }
    if (rc == EAI_MEMORY)
        return -ENOMEM;
    if (rc != 0)
        return MPROC_EADDR;
    if (res->ai_addrlen > sizeof(*ss)) {
        freeaddrinfo(res);
        return MPROC_EADDR;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* Parses an address string (see conn.h). */
static int addr_parse(const char *s, bool passive, struct sockaddr_storage *ss,
                      socklen_t *len)
{
    if (s[0] == '\\' && s[1] == '\\')
        return MPROC_EADDR; /* a Windows named pipe: CPython refuses too */
    if (s[0] == '@')
        return unix_addr(ss, len, s + 1, strlen(s + 1), true);
    if (strncmp(s, "unix:", 5) == 0)
        return unix_addr(ss, len, s + 5, strlen(s + 5), false);
    const char *colon = strrchr(s, ':');
    if (strchr(s, '/') || !colon)
        return unix_addr(ss, len, s, strlen(s), false);
    char host[256];
    size_t hlen = (size_t)(colon - s);
    if (s[0] == '[') {
        if (hlen < 2 || s[hlen - 1] != ']' || hlen - 2 >= sizeof(host))
            return MPROC_EADDR;
        memcpy(host, s + 1, hlen - 2);
        host[hlen - 2] = 0;
        if (!*host)
            return MPROC_EADDR;
        return inet_addr_of(ss, len, host, colon + 1, AF_INET6, passive);
    }
    if (hlen >= sizeof(host) || memchr(s, ':', hlen))
        return MPROC_EADDR; /* an IPv6 literal needs brackets */
    memcpy(host, s, hlen);
    host[hlen] = 0;
    return inet_addr_of(ss, len, host, colon + 1, AF_INET, passive);
}

/* Formats a socket address as a string of the form addr_parse reads. */
static int addr_format(const struct sockaddr_storage *ss, socklen_t len,
                       char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)ss;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t n = len > off ? len - off : 0;
        if (n > 0 && un->sun_path[0] == 0) {
            snprintf(out, cap, "@%.*s", (int)(n - 1), un->sun_path + 1);
        } else {
            n = strnlen(un->sun_path, n);
            snprintf(out, cap, "%.*s", (int)n, un->sun_path);
        }
        return 0;
    }
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(out, cap, "%s:%u", ip, ntohs(in->sin_port));
        return 0;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%u", ip, ntohs(in6->sin6_port));
        return 0;
    }
    return MPROC_EADDR;
}

static bool family_ok(const struct sockaddr *sa, socklen_t salen)
{
    if (!sa || salen < sizeof(sa_family_t) ||
        salen > sizeof(struct sockaddr_storage))
        return false;
    return sa->sa_family == AF_UNIX || sa->sa_family == AF_INET ||
           sa->sa_family == AF_INET6;
}

/* Fills key/keylen/timeout from options. *key is malloc'ed (NULL if no
 * handshake: *auth false). */
static int opts_key(const mproc_conn_opts *o, bool *auth, unsigned char **key,
                    size_t *keylen, double *timeout)
{
    static const mproc_conn_opts defaults = {0};
    if (!o)
        o = &defaults;
    *timeout = o->timeout == 0 ? MPROC_CONN_HANDSHAKE_TIMEOUT : o->timeout;
    *key = NULL;
    *keylen = 0;
    *auth = o->auth != MPROC_AUTH_NONE;
    if (o->auth == MPROC_AUTH_NONE)
        return 0;
    if (o->auth == MPROC_AUTH_KEY) {
        if (!o->authkey && o->authkey_len)
            return -EINVAL;
        *key = malloc(o->authkey_len + 1);
        if (!*key)
            return -ENOMEM;
        if (o->authkey_len)
            memcpy(*key, o->authkey, o->authkey_len);
        *keylen = o->authkey_len;
        return 0;
    }
    if (o->auth != MPROC_AUTH_PROCESS)
        return -EINVAL;
    *key = malloc(MPROC__AUTHKEY_MAX);
    if (!*key)
        return -ENOMEM;
    int n = mproc_authkey(*key, MPROC__AUTHKEY_MAX);
    if (n < 0) {
        free(*key);
        *key = NULL;
        return n;
    }
    *keylen = (size_t)n > MPROC__AUTHKEY_MAX ? MPROC__AUTHKEY_MAX : (size_t)n;
    return 0;
}

static void key_free(unsigned char *key, size_t keylen)
{
    if (key)
        explicit_bzero(key, keylen);
    free(key);
}

/* ---- listeners --------------------------------------------------------- */

int mproc_listener_new_sockaddr(mproc_listener **out, const struct sockaddr *sa,
                                socklen_t salen, const mproc_conn_opts *opts)
{
    if (!out || !family_ok(sa, salen))
        return -EINVAL;
    mproc_listener *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    int rc = opts_key(opts, &l->auth, &l->key, &l->keylen, &l->hs_timeout);
    if (rc < 0)
        goto out_free;
    l->ev_fd = -1;
    l->family = sa->sa_family;
    l->creator = getpid();
    l->fd =
        socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (l->fd < 0) {
        rc = -errno;
        goto out_key;
    }
    if (sa->sa_family != AF_UNIX) {
        int one = 1;
        setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    }
    if (bind(l->fd, sa, salen) < 0) {
        rc = -errno;
        goto out_close;
    }
    const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
    size_t off = offsetof(struct sockaddr_un, sun_path);
    if (sa->sa_family == AF_UNIX && salen > off + 1 && un->sun_path[0]) {
        size_t n = strnlen(un->sun_path, salen - off);
        memcpy(l->path, un->sun_path, n);
        l->path[n] = 0;
        struct stat st;
        if (stat(l->path, &st) == 0) {
            l->has_path = true;
            l->dev = st.st_dev;
            l->ino = st.st_ino;
        }
    }
    int backlog = opts && opts->backlog > 0 ? opts->backlog : DEFAULT_BACKLOG;
    if (listen(l->fd, backlog) < 0) {
        rc = -errno;
        goto out_unlink;
    }
    struct sockaddr_storage ss = {0};
    socklen_t len = sizeof(ss);
    char buf[ADDR_STR_MAX];
    if (getsockname(l->fd, (struct sockaddr *)&ss, &len) < 0) {
        rc = -errno;
        goto out_unlink;
    }
    addr_format(&ss, len, buf, sizeof(buf));
    l->address = strdup(buf);
    if (!l->address) {
        rc = -ENOMEM;
        goto out_unlink;
    }
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->idle, NULL);
    *out = l;
    return 0;
out_unlink:
    if (l->has_path)
        unlink(l->path);
out_close:
    close(l->fd);
out_key:
    key_free(l->key, l->keylen);
out_free:
    free(l);
    return rc;
}

int mproc_listener_new(mproc_listener **out, const char *address,
                       const mproc_conn_opts *opts)
{
    if (!out)
        return -EINVAL;
    struct sockaddr_storage ss;
    socklen_t len = 0;
    char fresh[64];
    if (!address || !*address) {
        unsigned char r[8];
        int rc = mproc__random(r, sizeof(r));
        if (rc < 0)
            return rc;
        snprintf(fresh, sizeof(fresh),
                 "@mproc-listener-%d-%02x%02x%02x%02x%02x%02x%02x%02x",
                 (int)getpid(), r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
        address = fresh;
    }
    int rc = addr_parse(address, true, &ss, &len);
    if (rc < 0)
        return rc;
    return mproc_listener_new_sockaddr(out, (struct sockaddr *)&ss, len, opts);
}

const char *mproc_listener_address(const mproc_listener *l)
{
    return l ? l->address : NULL;
}

int mproc_listener_fileno(const mproc_listener *l)
{
    if (!l)
        return -EINVAL;
    int fd = __atomic_load_n(&l->fd, __ATOMIC_ACQUIRE);
    return fd >= 0 ? fd : MPROC_ECLOSED;
}

/* Called with l->lock held: make this process's eventfd, forgetting the
 * one (and the accepter count) inherited from a parent over fork. */
static int listener_own_ev(mproc_listener *l)
{
    pid_t me = getpid();
    if (l->ev_pid == me && l->ev_fd >= 0)
        return 0;
    if (l->ev_pid != me) {
        mproc__close(l->ev_fd); /* our copy of the parent's eventfd */
        l->ev_fd = -1;
        l->accepters = 0;
        l->ev_pid = me;
    }
    l->ev_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return l->ev_fd < 0 ? -errno : 0;
}

static void set_nodelay(int fd, int family)
{
    if (family == AF_INET || family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
}

/* Waits for a client and accepts its socket. */
static int accept_fd(mproc_listener *l, const mproc__deadline *dl)
{
    for (;;) {
        struct pollfd p[2] = {{.fd = l->fd, .events = POLLIN},
                              {.fd = l->ev_fd, .events = POLLIN}};
        int r = poll(p, 2, mproc__deadline_poll_ms(dl));
        if (r < 0 && errno != EINTR)
            return -errno;
        if (p[1].revents)
            return MPROC_ECLOSED;
        if (r > 0 && p[0].revents) {
            int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0)
                return fd;
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED &&
                errno != EPROTO)
                return -errno;
        }
        if (mproc__deadline_expired(dl))
            return -ETIMEDOUT;
    }
}

static int accept_conn(mproc_listener *l, mproc_conn **out, double timeout,
                       bool authenticate);

/* The server's half of the handshake on an accepted connection; on failure
 * the connection is freed. */
static int handshake(mproc_listener *l, mproc_conn *c, double timeout)
{
    if (!l->auth)
        return 0;
    mproc__deadline hs = mproc__deadline_from(timeout);
    int rc = mproc__conn_deliver(c, l->key, l->keylen, &hs);
    if (rc == 0)
        rc = mproc__conn_answer(c, l->key, l->keylen, &hs);
    if (rc < 0)
        mproc_conn_free(c);
    return rc;
}

int mproc_listener_authenticate(mproc_listener *l, mproc_conn *c,
                                double timeout)
{
    if (!l || !c)
        return -EINVAL;
    return handshake(l, c, timeout);
}

int mproc_listener_accept_pending(mproc_listener *l, mproc_conn **out,
                                  double timeout)
{
    return accept_conn(l, out, timeout, false);
}

int mproc_listener_accept(mproc_listener *l, mproc_conn **out, double timeout)
{
    return accept_conn(l, out, timeout, true);
}

static int accept_conn(mproc_listener *l, mproc_conn **out, double timeout,
                       bool authenticate)
{
    if (!l || !out)
        return -EINVAL;
    mproc__deadline dl = mproc__deadline_from(timeout);
    pthread_mutex_lock(&l->lock);
    int rc = l->closed ? MPROC_ECLOSED : listener_own_ev(l);
    if (rc == 0)
        l->accepters++;
    pthread_mutex_unlock(&l->lock);
    if (rc < 0)
        return rc;

    mproc_conn *c = NULL;
    int fd = accept_fd(l, &dl);
    rc = fd < 0 ? fd : 0;
    if (rc == 0) {
        set_nodelay(fd, l->family);
        rc = mproc_conn_from_fd(&c, fd,
                                MPROC_CONN_READABLE | MPROC_CONN_WRITABLE);
        if (rc < 0)
            close(fd);
    }
    if (rc == 0 && authenticate && (rc = handshake(l, c, l->hs_timeout)) < 0)
        c = NULL;

    pthread_mutex_lock(&l->lock);
    if (--l->accepters == 0 && l->closed)
        pthread_cond_broadcast(&l->idle);
    pthread_mutex_unlock(&l->lock);
    if (rc == 0)
        *out = c;
    return rc;
}

int mproc_listener_close(mproc_listener *l)
{
    if (!l)
        return -EINVAL;
    pthread_mutex_lock(&l->lock);
    if (l->closed) {
        pthread_mutex_unlock(&l->lock);
        return 0;
    }
    l->closed = true;
    if (l->ev_pid == getpid()) {
        if (l->ev_fd >= 0) {
            uint64_t one = 1;
            ssize_t k = write(l->ev_fd, &one, sizeof(one));
            (void)k;
        }
        while (l->accepters > 0)
            pthread_cond_wait(&l->idle, &l->lock);
    }
    mproc__close(l->ev_fd);
    l->ev_fd = -1;
    int fd = l->fd;
    __atomic_store_n(&l->fd, -1, __ATOMIC_RELEASE);
    close(fd);
    struct stat st;
    if (l->has_path && getpid() == l->creator && stat(l->path, &st) == 0 &&
        st.st_dev == l->dev && st.st_ino == l->ino)
        unlink(l->path);
    pthread_mutex_unlock(&l->lock);
    return 0;
}

void mproc_listener_free(mproc_listener *l)
{
    if (!l)
        return;
    mproc_listener_close(l);
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->idle);
    key_free(l->key, l->keylen);
    free(l->address);
    free(l);
}

/* ---- clients ----------------------------------------------------------- */

/* Connects a non-blocking socket before the deadline. An AF_UNIX listener
 * whose backlog is full answers EAGAIN: retry, backing off, as a blocking
 * connect would wait. */
static int connect_dl(int fd, const struct sockaddr *sa, socklen_t salen,
                      const mproc__deadline *dl)
{
    int backoff_ms = 1;
    for (;;) {
        if (connect(fd, sa, salen) == 0)
            return 0;
        if (errno == EINPROGRESS || errno == EINTR)
            break;
        if (errno != EAGAIN)
            return -errno;
        if (mproc__deadline_expired(dl))
            return -ETIMEDOUT;
        int ms = mproc__deadline_poll_ms(dl);
        if (ms < 0 || ms > backoff_ms)
            ms = backoff_ms;
        poll(NULL, 0, ms);
        if (backoff_ms < 64)
            backoff_ms *= 2;
    }
    int rc = mproc__poll_fd(fd, POLLOUT, dl, NULL);
    if (rc == 0)
        return -ETIMEDOUT;
    if (rc < 0)
        return rc;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return err ? -err : 0;
}

int mproc_client_sockaddr(mproc_conn **out, const struct sockaddr *sa,
                          socklen_t salen, const mproc_conn_opts *opts)
{
    if (!out || !family_ok(sa, salen))
        return -EINVAL;
    bool auth;
    unsigned char *key;
    size_t keylen;
    double timeout;
    int rc = opts_key(opts, &auth, &key, &keylen, &timeout);
    if (rc < 0)
        return rc;
    mproc__deadline dl = mproc__deadline_from(timeout);
    mproc_conn *c = NULL;
    int fd =
        socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        rc = -errno;
        goto out_key;
    }
    rc = connect_dl(fd, sa, salen, &dl);
    if (rc < 0)
        goto out_close;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        rc = -errno;
        goto out_close;
    }
    set_nodelay(fd, sa->sa_family);
    rc = mproc_conn_from_fd(&c, fd, MPROC_CONN_READABLE | MPROC_CONN_WRITABLE);
    if (rc < 0)
        goto out_close;
    if (auth) {
        rc = mproc__conn_answer(c, key, keylen, &dl);
        if (rc == 0)
            rc = mproc__conn_deliver(c, key, keylen, &dl);
        if (rc < 0) {
            mproc_conn_free(c);
            goto out_key;
        }
    }
    key_free(key, keylen);
    *out = c;
    return 0;
out_close:
    close(fd);
out_key:
    key_free(key, keylen);
    return rc;
}

int mproc_client(mproc_conn **out, const char *address,
                 const mproc_conn_opts *opts)
{
    if (!out)
        return -EINVAL;
    if (!address || !*address)
        return MPROC_EADDR;
    struct sockaddr_storage ss;
    socklen_t len = 0;
    int rc = addr_parse(address, false, &ss, &len);
    if (rc < 0)
        return rc;
    return mproc_client_sockaddr(out, (struct sockaddr *)&ss, len, opts);
}
