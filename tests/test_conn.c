/*
 * test_conn.c - connections: framing byte for byte, Pipe in both forms,
 * receive timeouts and resumption, too-short buffers, poll, threads,
 * hostile frames (truncated, negative, huge), peers that die mid-message,
 * SIGPIPE, fd exhaustion, Listener/Client over AF_UNIX paths, abstract
 * names and TCP, the HMAC handshake in every digest and failure, and
 * connections passed to children under fork, spawn and forkserver.
 * (Interop with real CPython is in test_interop.c.)
 */
#include "harness.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

/* ---- helpers ------------------------------------------------------------ */

static void raw_write(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        ssize_t k = write(fd, s, n);
        if (k < 0 && errno == EINTR)
            continue;
        CHECK(k > 0);
        s += k;
        n -= (size_t)k;
    }
}

static void raw_read(int fd, void *p, size_t n)
{
    char *s = p;
    while (n) {
        ssize_t k = read(fd, s, n);
        if (k < 0 && errno == EINTR)
            continue;
        CHECK(k > 0);
        s += k;
        n -= (size_t)k;
    }
}

/* Writes a CPython frame (4-byte header) of p[0..n). */
static void raw_frame(int fd, const void *p, size_t n)
{
    unsigned char h[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                          (unsigned char)(n >> 8), (unsigned char)n};
    raw_write(fd, h, 4);
    raw_write(fd, p, n);
}

/* Reads one 4-byte-header frame into buf (cap); returns its length. */
static size_t raw_recv_frame(int fd, void *buf, size_t cap)
{
    unsigned char h[4];
    raw_read(fd, h, 4);
    size_t n =
        (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    CHECK(n <= cap);
    raw_read(fd, buf, n);
    return n;
}

static void pattern(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 131 + seed * 7 + (i >> 9));
}

static int check_pattern(const unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(i * 131 + seed * 7 + (i >> 9)))
            return 0;
    return 1;
}

static void socketpair_raw(mproc_conn **c, int *raw)
{
    int sv[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    CHECK_OK(mproc_conn_from_fd(c, sv[0],
                                MPROC_CONN_READABLE | MPROC_CONN_WRITABLE));
    *raw = sv[1];
}

static int reap(pid_t pid)
{
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        CHECK(errno == EINTR);
    return st;
}

static void recv_str(mproc_conn *c, const char *want)
{
    void *m = NULL;
    size_t n = 0;
    CHECK_OK(mproc_conn_recv_bytes(c, &m, &n, 0, 10));
    CHECK_EQ(n, strlen(want));
    CHECK_STR((char *)m, want); /* recv_bytes NUL-terminates */
    free(m);
}

static void send_str(mproc_conn *c, const char *s)
{
    CHECK_OK(mproc_conn_send_bytes(c, s, strlen(s)));
}

/* ---- pipes --------------------------------------------------------------- */

static void test_pipe_duplex(void)
{
    mproc_conn *a, *b;
    CHECK_OK(mproc_pipe(&a, &b, 1));
    CHECK_EQ(mproc_conn_flags(a), MPROC_CONN_READABLE | MPROC_CONN_WRITABLE);
    CHECK(mproc_conn_fileno(a) >= 0 && mproc_conn_fileno(b) >= 0);
    CHECK(fcntl(mproc_conn_fileno(a), F_GETFD) & FD_CLOEXEC);
    send_str(a, "ping");
    recv_str(b, "ping");
    send_str(b, "pong");
    recv_str(a, "pong");
    /* empty messages are messages */
    CHECK_OK(mproc_conn_send_bytes(a, NULL, 0));
    CHECK_OK(mproc_conn_send_bytes(a, "", 0));
    void *m;
    size_t n = 99;
    CHECK_OK(mproc_conn_recv_bytes(b, &m, &n, 0, 1));
    CHECK_EQ(n, 0);
    CHECK_EQ(((char *)m)[0], 0);
    free(m);
    CHECK_OK(mproc_conn_recv_bytes_into(b, NULL, 0, &n, 1));
    CHECK_EQ(n, 0);
    /* binary data with NULs, order kept */
    unsigned char buf[1000];
    for (unsigned i = 0; i < 50; i++) {
        pattern(buf, i * 20, i);
        CHECK_OK(mproc_conn_send_bytes(b, buf, i * 20));
    }
    for (unsigned i = 0; i < 50; i++) {
        CHECK_OK(mproc_conn_recv_bytes_into(a, buf, sizeof buf, &n, 1));
        CHECK_EQ(n, i * 20);
        CHECK(check_pattern(buf, n, i));
    }
    CHECK_EQ(mproc_conn_poll(a, 0), 0);
    mproc_conn_free(a);
    mproc_conn_free(b);
    mproc_conn_free(NULL);
}

static void test_pipe_simplex(void)
{
    mproc_conn *r, *w;
    CHECK_OK(mproc_pipe(&r, &w, 0));
    CHECK_EQ(mproc_conn_flags(r), MPROC_CONN_READABLE);
    CHECK_EQ(mproc_conn_flags(w), MPROC_CONN_WRITABLE);
    struct stat st;
    CHECK_OK(fstat(mproc_conn_fileno(r), &st));
    CHECK(S_ISFIFO(st.st_mode));
    send_str(w, "one way");
    recv_str(r, "one way");
    CHECK_ERR(mproc_conn_send_bytes(r, "x", 1), -EBADF);
    void *m;
    size_t n;
    CHECK_ERR(mproc_conn_recv_bytes(w, &m, &n, 0, 0), -EBADF);
    CHECK_ERR(mproc_conn_poll(w, 0), -EBADF);
    /* A large message through a pipe (beyond the pipe's buffer). */
    size_t big = 3 << 20;
    unsigned char *p = malloc(big);
    pattern(p, big, 5);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int rc = mproc_conn_send_bytes(w, p, big);
        mproc_test_exit(rc == 0 ? 0 : 1);
    }
    memset(p, 0, big);
    void *q;
    CHECK_OK(mproc_conn_recv_bytes(r, &q, &n, 0, 10));
    CHECK_EQ(n, big);
    CHECK(check_pattern(q, n, 5));
    free(q);
    free(p);
    CHECK_EQ(reap(pid), 0);
    /* writer closed (both copies): clean EOF */
    mproc_conn_free(w);
    CHECK_ERR(mproc_conn_recv_bytes(r, &q, &n, 0, 1), MPROC_EEOF);
    CHECK_ERR(mproc_conn_recv_bytes(r, &q, &n, 0, 1), MPROC_EEOF);
    mproc_conn_free(r);
}

static void test_bad_args_and_close(void)
{
    mproc_conn *a, *b;
    CHECK_ERR(mproc_pipe(NULL, &b, 1), -EINVAL);
    CHECK_ERR(mproc_conn_from_fd(&a, -1, MPROC_CONN_READABLE), -EINVAL);
    CHECK_ERR(mproc_conn_from_fd(&a, 0, 0), -EINVAL);
    CHECK_ERR(mproc_conn_from_fd(&a, 0, 0x10), -EINVAL);
    CHECK_OK(mproc_pipe(&a, &b, 1));
    CHECK_ERR(mproc_conn_send_bytes(a, NULL, 5), -EINVAL);
    CHECK_ERR(mproc_conn_send_bytesv(a, NULL, 2), -EINVAL);
    struct iovec many[65] = {{0}};
    CHECK_ERR(mproc_conn_send_bytesv(a, many, 65), -EINVAL);
    CHECK_ERR(mproc_conn_recv_bytes(a, NULL, NULL, 0, 0), -EINVAL);
    CHECK_EQ(mproc_conn_closed(a), 0);
    int fd = mproc_conn_fileno(a);
    CHECK_OK(mproc_conn_close(a));
    CHECK_OK(mproc_conn_close(a)); /* idempotent */
    CHECK_EQ(mproc_conn_closed(a), 1);
    CHECK(fcntl(fd, F_GETFD) < 0); /* really closed */
    CHECK_ERR(mproc_conn_fileno(a), MPROC_ECLOSED);
    CHECK_EQ(mproc_conn_flags(a), 0);
    CHECK_ERR(mproc_conn_send_bytes(a, "x", 1), MPROC_ECLOSED);
    void *m;
    size_t n;
    CHECK_ERR(mproc_conn_recv_bytes(a, &m, &n, 0, 0), MPROC_ECLOSED);
    CHECK_ERR(mproc_conn_poll(a, 0), MPROC_ECLOSED);
    CHECK_ERR(mproc_conn_set_send_timeout(a, 1), MPROC_ECLOSED);
    /* the peer sees a clean end */
    CHECK_EQ(mproc_conn_poll(b, 1), 1);
    CHECK_ERR(mproc_conn_recv_bytes(b, &m, &n, 0, 1), MPROC_EEOF);
    mproc_conn_free(a);
    mproc_conn_free(b);
}

/* ---- framing --------------------------------------------------------------
 */

static void test_framing_bytes(void)
{
    mproc_conn *c;
    int raw;
    socketpair_raw(&c, &raw);
    send_str(c, "hello");
    unsigned char b[64];
    raw_read(raw, b, 9);
    CHECK(memcmp(b, "\0\0\0\x05hello", 9) == 0);
    CHECK_OK(mproc_conn_send_bytes(c, NULL, 0));
    raw_read(raw, b, 4);
    CHECK(memcmp(b, "\0\0\0\0", 4) == 0);
    /* a 300-byte message: 00 00 01 2c */
    unsigned char big[300];
    pattern(big, sizeof big, 1);
    CHECK_OK(mproc_conn_send_bytes(c, big, sizeof big));
    raw_read(raw, b, 4);
    CHECK(memcmp(b, "\0\0\x01\x2c", 4) == 0);
    unsigned char got[300];
    raw_read(raw, got, sizeof got);
    CHECK(memcmp(got, big, sizeof big) == 0);
    /* send_bytes_range = Python's send_bytes(buf, offset, size) */
    CHECK_OK(mproc_conn_send_bytes_range(c, "abcdef", 6, 2, 3));
    raw_read(raw, b, 7);
    CHECK(memcmp(b,
                 "\0\0\0\x03"
                 "cde",
                 7) == 0);
    CHECK_OK(mproc_conn_send_bytes_range(c, "abcdef", 6, 4, MPROC_CONN_ALL));
    raw_read(raw, b, 6);
    CHECK(memcmp(b,
                 "\0\0\0\x02"
                 "ef",
                 6) == 0);
    CHECK_OK(mproc_conn_send_bytes_range(c, "abcdef", 6, 6, MPROC_CONN_ALL));
    raw_read(raw, b, 4);
    CHECK(memcmp(b, "\0\0\0\0", 4) == 0);
    CHECK_ERR(mproc_conn_send_bytes_range(c, "abcdef", 6, 7, 0), -EINVAL);
    CHECK_ERR(mproc_conn_send_bytes_range(c, "abcdef", 6, 2, 5), -EINVAL);
    /* gather: one message */
    struct iovec iov[3] = {{"ab", 2}, {NULL, 0}, {"cde", 3}};
    CHECK_OK(mproc_conn_send_bytesv(c, iov, 3));
    raw_read(raw, b, 9);
    CHECK(memcmp(b,
                 "\0\0\0\x05"
                 "abcde",
                 9) == 0);
    CHECK_EQ(mproc_test_count_fds() >= 0, 1);

    /* receiving: CPython's frames, including the 8-byte form for a small
     * length (accepted, as CPython accepts it) */
    raw_write(raw, "\0\0\0\x03xyz", 7);
    raw_write(raw, "\xff\xff\xff\xff\0\0\0\0\0\0\0\x04wxyz", 16);
    raw_write(raw, "\xff\xff\xff\xff\0\0\0\0\0\0\0\0", 12);
    recv_str(c, "xyz");
    recv_str(c, "wxyz");
    recv_str(c, "");
    /* header and payload dribbling in byte by byte */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        const char *f = "\xff\xff\xff\xff\0\0\0\0\0\0\0\x02hi\0\0\0\x02yo";
        for (int i = 0; i < 20; i++) {
            if (write(raw, f + i, 1) != 1)
                mproc_test_exit(1);
            usleep(2000);
        }
        mproc_test_exit(0);
    }
    recv_str(c, "hi");
    recv_str(c, "yo");
    CHECK_EQ(reap(pid), 0);
    close(raw);
    mproc_conn_free(c);
}

/* > 2^31-1 bytes: ff ff ff ff + 8-byte length, through both ends. Sender
 * and receiver buffers are untouched anonymous mappings but for a few
 * sentinels, so this costs little memory. */
typedef struct big_send {
    mproc_conn *c;
    const void *p;
    size_t n;
    int rc;
} big_send;

static void *big_sender(void *arg)
{
    big_send *b = arg;
    b->rc = mproc_conn_send_bytes(b->c, b->p, b->n);
    return NULL;
}

static void test_framing_long_form(void)
{
    SKIP_UNDER_VALGRIND("2 GiB messages take minutes there, and it takes "
                        "the 2 GiB MAP_NORESERVE buffer for unaddressable");
    SKIP_UNDER_TSAN("its 4 GiB of buffers take 5 times that with "
                    "the shadow memory (killed by the OOM killer)");
    size_t n = ((size_t)1 << 31) + 3;
    unsigned char *src =
        mmap(NULL, n, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    unsigned char *dst =
        mmap(NULL, n, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(src != MAP_FAILED && dst != MAP_FAILED);
    src[0] = 0xa1;
    src[n / 2] = 0xb2;
    src[n - 1] = 0xc3;
    mproc_conn *a, *b;
    CHECK_OK(mproc_pipe(&a, &b, 1));
    big_send bs = {a, src, n, -1};
    pthread_t th;
    CHECK_OK(pthread_create(&th, NULL, big_sender, &bs));
    unsigned char h[12];
    CHECK_OK(mproc_conn_poll(b, 10));
    ssize_t k;
    do
        k = recv(mproc_conn_fileno(b), h, 12, MSG_PEEK | MSG_WAITALL);
    while (k >= 0 && k < 12);
    CHECK_EQ(k, 12);
    CHECK(memcmp(h, "\xff\xff\xff\xff\0\0\0\0\x80\0\0\x03", 12) == 0);
    size_t got = 0;
    CHECK_ERR(mproc_conn_recv_bytes_into(b, dst, n - 1, &got, 10),
              MPROC_EBUFSIZE);
    CHECK_EQ(got, n);
    CHECK_OK(mproc_conn_recv_bytes_into(b, dst, n, &got, 30));
    CHECK_EQ(got, n);
    CHECK_OK(pthread_join(th, NULL));
    CHECK_OK(bs.rc);
    CHECK_EQ(dst[0], 0xa1);
    CHECK_EQ(dst[n / 2], 0xb2);
    CHECK_EQ(dst[n - 1], 0xc3);
    CHECK_EQ(dst[1], 0);
    munmap(src, n);
    munmap(dst, n);
    mproc_conn_free(a);
    mproc_conn_free(b);
}

/* ---- receiving: limits, buffers, timeouts -------------------------------- */

static void test_recv_into_too_short(void)
{
    mproc_conn *a, *b;
    CHECK_OK(mproc_pipe(&a, &b, 1));
    unsigned char msg[100], buf[100];
    pattern(msg, sizeof msg, 3);
    CHECK_OK(mproc_conn_send_bytes(a, msg, sizeof msg));
    send_str(a, "next");
    size_t n = 0;
    CHECK_ERR(mproc_conn_recv_bytes_into(b, buf, 10, &n, 1), MPROC_EBUFSIZE);
    CHECK_EQ(n, 100);
    CHECK_ERR(mproc_conn_recv_bytes_into(b, buf, 99, &n, 1), MPROC_EBUFSIZE);
    CHECK_EQ(n, 100);
    CHECK_EQ(mproc_conn_poll(b, 0), 1);
    CHECK_OK(mproc_conn_recv_bytes_into(b, buf, 100, &n, 1));
    CHECK_EQ(n, 100);
    CHECK(check_pattern(buf, n, 3));
    recv_str(b, "next");
    /* the kept message can also be taken by recv_bytes */
    CHECK_OK(mproc_conn_send_bytes(a, msg, sizeof msg));
    CHECK_ERR(mproc_conn_recv_bytes_into(b, buf, 0, &n, 1), MPROC_EBUFSIZE);
    void *m;
    CHECK_OK(mproc_conn_recv_bytes(b, &m, &n, 0, 1));
    CHECK_EQ(n, 100);
    CHECK(check_pattern(m, n, 3));
    free(m);
    /* and it can be passed on after the whole message was read */
    mproc_conn_free(a);
    mproc_conn_free(b);
}

static void test_maxlen(void)
{
    mproc_conn *a, *b;
    CHECK_OK(mproc_pipe(&a, &b, 1));
    send_str(a, "0123456789");
    void *m;
    size_t n;
    CHECK_OK(mproc_conn_recv_bytes(b, &m, &n, 10, 1)); /* exactly max: ok */
    free(m);
    send_str(a, "0123456789A");
    send_str(a, "ok");
    CHECK_ERR(mproc_conn_recv_bytes(b, &m, &n, 10, 1), MPROC_ETOOBIG);
    /* the stream is out of step: unusable from now on */
    CHECK_ERR(mproc_conn_recv_bytes(b, &m, &n, 0, 1), MPROC_ETOOBIG);
    CHECK_ERR(mproc_conn_recv_bytes_into(b, &m, sizeof m, &n, 1),
              MPROC_ETOOBIG);
    CHECK_EQ(mproc_conn_poll(b, 0), 1); /* poll says: go and see the error */
    /* sending still works in the other direction */
    send_str(b, "still");
    recv_str(a, "still");
    mproc_conn_free(a);
    mproc_conn_free(b);
}

static void test_hostile_frames(void)
{
    struct {
        const char *bytes;
        size_t n;
        int want;
    } cases[] = {
        /* negative lengths */
        {"\x80\0\0\0", 4, MPROC_EPROTO},
        {"\xff\xff\xff\xfe", 4, MPROC_EPROTO},
        {"\xfa\xce\xb0\x0c", 4, MPROC_EPROTO},
        /* 8-byte lengths over any limit */
        {"\xff\xff\xff\xff\x80\0\0\0\0\0\0\0", 12, MPROC_ETOOBIG},
        {"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 12, MPROC_ETOOBIG},
        /* truncated: inside the header, the long header, the payload */
        {"\0\0", 2, MPROC_ETRUNC},
        {"\xff\xff\xff\xff\0\0\0", 7, MPROC_ETRUNC},
        {"\0\0\0\x05hel", 7, MPROC_ETRUNC},
        {"\xff\xff\xff\xff\0\0\0\0\0\0\0\x05he", 14, MPROC_ETRUNC},
        /* a huge claimed length with nothing behind it: no 1 TB malloc */
        {"\xff\xff\xff\xff\0\0\x01\0\0\0\0\0"
         "abc",
         15, MPROC_ETRUNC},
        {"\x7f\xff\xff\xff"
         "abc",
         7, MPROC_ETRUNC},
        /* nothing at all: clean EOF */
        {"", 0, MPROC_EEOF},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int into = 0; into < 2; into++) {
            mproc_conn *c;
            int raw;
            socketpair_raw(&c, &raw);
            raw_write(raw, cases[i].bytes, cases[i].n);
            close(raw);
            void *m = NULL;
            size_t n = 0;
            static unsigned char buf[1 << 16];
            int rc = into
                         ? mproc_conn_recv_bytes_into(c, buf, sizeof buf, &n, 5)
                         : mproc_conn_recv_bytes(c, &m, &n, 0, 5);
            if (into && cases[i].want == MPROC_ETRUNC && cases[i].n > 12 &&
                cases[i].bytes[6] == 1)
                CHECK_ERR(rc, MPROC_EBUFSIZE); /* too big for buf, kept */
            else if (into && cases[i].bytes[0] == 0x7f)
                CHECK_ERR(rc, MPROC_EBUFSIZE);
            else
                CHECK_ERR(rc, cases[i].want);
            /* the error sticks (EOF just repeats) */
            rc = mproc_conn_recv_bytes(c, &m, &n, 0, 5);
            CHECK_ERR(rc, cases[i].want);
            mproc_conn_free(c);
        }
    }
    /* maxlen is checked before any payload is read or allocated */
    mproc_conn *c;
    int raw;
    socketpair_raw(&c, &raw);
    raw_write(raw, "\x7f\xff\xff\xff", 4);
    void *m;
    size_t n;
    CHECK_ERR(mproc_conn_recv_bytes(c, &m, &n, 1 << 20, 1), MPROC_ETOOBIG);
    close(raw);
    mproc_conn_free(c);
}

/* A peer SIGKILLed half-way through sending a large message. */
static void test_peer_killed_mid_send(void)
{
    mproc_conn *a, *b;
    CHECK_OK(mproc_pipe(&a, &b, 1));
    size_t big = 16 << 20;
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        unsigned char *p = calloc(1, big);
        mproc_conn_send_bytes(a, p, big); /* blocks: nobody reads yet */
        mproc_test_exit(0);
    }
    mproc_conn_free(a); /* the child's copy is now the only writer */
    CHECK_EQ(mproc_conn_poll(b, 10), 1);
    usleep(50000); /* let it fill the socket buffer and block */
    CHECK_OK(kill(pid, SIGKILL));
    CHECK(WIFSIGNALED(reap(pid)));
    void *m;
    size_t n;
    double t0 = mproc_test_now();
    CHECK_ERR(mproc_conn_recv_bytes(b, &m, &n, 0, 10), MPROC_ETRUNC);
    CHECK(mproc_test_now() - t0 < 5);
    CHECK_ERR(mproc_conn_recv_bytes(b, &m, &n, 0, 10), MPROC_ETRUNC);
    mproc_conn_free(b);
    /* and a peer killed between messages is a clean EOF */
    CHECK_OK(mproc_pipe(&a, &b, 0));
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        mproc_conn_send_bytes(b, "last", 4);
        pause();
        mproc_test_exit(0);
    }
    mproc_conn_free(b);
    recv_str(a, "last");
    CHECK_OK(kill(pid, SIGKILL));
    reap(pid);
    CHECK_ERR(mproc_conn_recv_bytes(a, &m, &n, 0, 10), MPROC_EEOF);
    mproc_conn_free(a);
}

static void test_recv_timeout(void)
{
    mproc_conn *a, *b;
    CHECK_OK(mproc_pipe(&a, &b, 1));
    void *m;
    size_t n;
    double t0 = mproc_test_now();
    CHECK_ERR(mproc_conn_recv_bytes(b, &m, &n, 0, 0), -ETIMEDOUT);
    CHECK_ERR(mproc_conn_recv_bytes(b, &m, &n, 0, 0.2), -ETIMEDOUT);
    double dt = mproc_test_now() - t0;
    CHECK(dt >= 0.19 && dt < 2);
    CHECK_EQ(mproc_conn_poll(b, 0), 0);
    t0 = mproc_test_now();
    CHECK_EQ(mproc_conn_poll(b, 0.1), 0);
    CHECK(mproc_test_now() - t0 >= 0.09);
    mproc_conn_free(a);
    mproc_conn_free(b);

    /* Timeouts inside a message lose nothing, whichever call resumes. */
    for (int variant = 0; variant < 4; variant++) {
        mproc_conn *c;
        int raw;
        if (variant < 2) {
            socketpair_raw(&c, &raw);
        } else {
            int p[2];
            CHECK_OK(pipe2(p, O_CLOEXEC));
            CHECK_OK(mproc_conn_from_fd(&c, p[0], MPROC_CONN_READABLE));
            raw = p[1];
        }
        unsigned char msg[5000], buf[5000];
        pattern(msg, sizeof msg, 9);
        /* half a header */
        raw_write(raw, "\0\0", 2);
        size_t got = 0;
        if (variant % 2)
            CHECK_ERR(
                mproc_conn_recv_bytes_into(c, buf, sizeof buf, &got, 0.05),
                -ETIMEDOUT);
        else
            CHECK_ERR(mproc_conn_recv_bytes(c, &m, &n, 0, 0.05), -ETIMEDOUT);
        /* rest of header + part of the payload */
        raw_write(raw, "\x13\x88", 2);
        raw_write(raw, msg, 1000);
        if (variant % 2)
            CHECK_ERR(mproc_conn_recv_bytes(c, &m, &n, 0, 0.05), -ETIMEDOUT);
        else
            CHECK_ERR(
                mproc_conn_recv_bytes_into(c, buf, sizeof buf, &got, 0.05),
                -ETIMEDOUT);
        raw_write(raw, msg + 1000, 2000);
        CHECK_ERR(mproc_conn_recv_bytes_into(c, buf, 10, &got, 0.05),
                  MPROC_EBUFSIZE);
        CHECK_EQ(got, 5000);
        CHECK_ERR(mproc_conn_recv_bytes(c, &m, &n, 0, 0.05), -ETIMEDOUT);
        raw_write(raw, msg + 3000, 2000);
        raw_frame(raw, "after", 5);
        if (variant % 2) {
            CHECK_OK(mproc_conn_recv_bytes_into(c, buf, sizeof buf, &got, 1));
            CHECK_EQ(got, 5000);
            CHECK(memcmp(buf, msg, 5000) == 0);
        } else {
            CHECK_OK(mproc_conn_recv_bytes(c, &m, &n, 0, 1));
            CHECK_EQ(n, 5000);
            CHECK(memcmp(m, msg, 5000) == 0);
            free(m);
        }
        recv_str(c, "after");
        close(raw);
        mproc_conn_free(c);
    }
}

static void test_poll_and_wait(void)
{
    mproc_conn *a, *b, *r, *w;
    CHECK_OK(mproc_pipe(&a, &b, 1));
    CHECK_OK(mproc_pipe(&r, &w, 0));
    int fds[3] = {mproc_conn_fileno(b), mproc_conn_fileno(r),
                  mproc_conn_fileno(a)};
    int ready[3];
    CHECK_EQ(mproc_wait(fds, 3, 0.05, ready), 0);
    send_str(w, "x");
    CHECK_EQ(mproc_wait(fds, 3, 1, ready), 1);
    CHECK(!ready[0] && ready[1] && !ready[2]);
    CHECK_EQ(mproc_conn_poll(r, 0), 1);
    recv_str(r, "x");
    CHECK_EQ(mproc_conn_poll(r, 0), 0);
    /* wakes a poll blocked in another process */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        usleep(100000);
        mproc_conn_send_bytes(a, "late", 4);
        mproc_test_exit(0);
    }
    double t0 = mproc_test_now();
    CHECK_EQ(mproc_conn_poll(b, 10), 1);
    CHECK(mproc_test_now() - t0 >= 0.05);
    recv_str(b, "late");
    CHECK_EQ(reap(pid), 0);
    /* after the peer is gone poll reports readiness: recv says EOF */
    mproc_conn_free(a);
    CHECK_EQ(mproc_conn_poll(b, 1), 1);
    void *m;
    size_t n;
    CHECK_ERR(mproc_conn_recv_bytes(b, &m, &n, 0, 1), MPROC_EEOF);
    mproc_conn_free(b);
    mproc_conn_free(r);
    mproc_conn_free(w);
}

/* ---- sending: SIGPIPE, timeouts --------------------------------------- */

static void test_send_to_closed_peer(void)
{
    /* default SIGPIPE disposition: the process would die if it were raised */
    signal(SIGPIPE, SIG_DFL);
    mproc_conn *a, *b;
    CHECK_OK(mproc_pipe(&a, &b, 1));
    mproc_conn_free(b);
    int rc = mproc_conn_send_bytes(a, "x", 1);
    CHECK(rc == -EPIPE || rc == -ECONNRESET);
    mproc_conn_free(a);
    CHECK_OK(mproc_pipe(&a, &b, 0));
    mproc_conn_free(a);
    CHECK_ERR(mproc_conn_send_bytes(b, "x", 1), -EPIPE);
    CHECK_ERR(mproc_conn_send_bytes(b, "y", 1), -EPIPE);
    sigset_t pend;
    sigpending(&pend);
    CHECK(!sigismember(&pend, SIGPIPE)); /* nothing left pending either */
    /* a caller that blocks SIGPIPE itself keeps its pending signal */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    CHECK_ERR(mproc_conn_send_bytes(b, "z", 1), -EPIPE);
    sigpending(&pend);
    CHECK(sigismember(&pend, SIGPIPE));
    signal(SIGPIPE, SIG_IGN); /* discard it */
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    signal(SIGPIPE, SIG_DFL);
    mproc_conn_free(b);
}

static void test_send_timeout(void)
{
    for (int duplex = 1; duplex >= 0; duplex--) {
        mproc_conn *r, *w;
        CHECK_OK(mproc_pipe(duplex ? &w : &r, duplex ? &r : &w, duplex));
        /* fill the kernel buffer with complete messages */
        CHECK_OK(mproc_conn_set_send_timeout(w, 0));
        unsigned char chunk[1000];
        pattern(chunk, sizeof chunk, 2);
        int sent = 0, rc;
        while ((rc = mproc_conn_send_bytes(w, chunk, sizeof chunk)) == 0)
            sent++;
        CHECK(sent > 10);
        /* a full buffer: nothing of this message left, still usable */
        CHECK_OK(mproc_conn_set_send_timeout(w, 0.1));
        double t0 = mproc_test_now();
        if (rc == -ETIMEDOUT) {
            /* the last attempt may have sent part of a message; then the
             * stream is out of step and must say so */
            rc = mproc_conn_send_bytes(w, "x", 1);
        }
        CHECK_ERR(rc, -ETIMEDOUT);
        CHECK(mproc_test_now() - t0 < 3);
        /* drain the complete messages, then the connection keeps order */
        size_t n;
        unsigned char buf[1000];
        for (int i = 0; i < sent; i++) {
            CHECK_OK(mproc_conn_recv_bytes_into(r, buf, sizeof buf, &n, 1));
            CHECK_EQ(n, sizeof chunk);
            CHECK(check_pattern(buf, n, 2));
        }
        mproc_conn_free(r);
        mproc_conn_free(w);
    }
    /* a big message that cannot fit: times out half-way, and the stream
     * can no longer send */
    mproc_conn *a, *b;
    CHECK_OK(mproc_pipe(&a, &b, 1));
    CHECK_OK(mproc_conn_set_send_timeout(a, 0.2));
    size_t big = 8 << 20;
    void *p = calloc(1, big);
    double t0 = mproc_test_now();
    CHECK_ERR(mproc_conn_send_bytes(a, p, big), -ETIMEDOUT);
    double dt = mproc_test_now() - t0;
    CHECK(dt >= 0.19 && dt < 3);
    CHECK_ERR(mproc_conn_send_bytes(a, "x", 1), -ETIMEDOUT);
    free(p);
    mproc_conn_free(a);
    mproc_conn_free(b);
}

/* ---- threads --------------------------------------------------------------
 */

#define TH_N    4
#define TH_MSGS 500

typedef struct th_arg {
    mproc_conn *c;
    unsigned id;
    int rc;
    unsigned counts[TH_N];
} th_arg;

static void *th_send(void *arg)
{
    th_arg *t = arg;
    unsigned char buf[9000];
    for (unsigned i = 0; i < TH_MSGS && t->rc == 0; i++) {
        size_t n = 8 + (i * 37 + t->id * 1000) % 8000;
        pattern(buf, n, t->id * 100000 + i);
        memcpy(buf, &t->id, 4);
        memcpy(buf + 4, &i, 4);
        t->rc = mproc_conn_send_bytes(t->c, buf, n);
    }
    return NULL;
}

static void *th_recv(void *arg)
{
    th_arg *t = arg;
    unsigned char buf[9000];
    for (;;) {
        size_t n;
        int rc = mproc_conn_recv_bytes_into(t->c, buf, sizeof buf, &n, 10);
        if (rc == MPROC_EEOF)
            break;
        if (rc < 0) {
            t->rc = rc;
            break;
        }
        unsigned id, i;
        memcpy(&id, buf, 4);
        memcpy(&i, buf + 4, 4);
        if (id >= TH_N || n != 8 + (i * 37 + id * 1000) % 8000) {
            t->rc = -1000;
            break;
        }
        unsigned char want[9000];
        pattern(want, n, id * 100000 + i);
        if (memcmp(buf + 8, want + 8, n - 8) != 0) {
            t->rc = -1001;
            break;
        }
        t->counts[id]++;
    }
    return NULL;
}

static void test_threads(void)
{
    mproc_conn *a, *b;
    CHECK_OK(mproc_pipe(&a, &b, 1));
    th_arg s[TH_N], r[TH_N];
    pthread_t ts[TH_N], tr[TH_N];
    memset(r, 0, sizeof r);
    for (unsigned i = 0; i < TH_N; i++) {
        s[i] = (th_arg){.c = a, .id = i};
        r[i].c = b;
        CHECK_OK(pthread_create(&ts[i], NULL, th_send, &s[i]));
        CHECK_OK(pthread_create(&tr[i], NULL, th_recv, &r[i]));
    }
    for (int i = 0; i < TH_N; i++) {
        pthread_join(ts[i], NULL);
        CHECK_OK(s[i].rc);
    }
    CHECK_OK(shutdown(mproc_conn_fileno(a), SHUT_WR));
    unsigned total[TH_N] = {0};
    for (int i = 0; i < TH_N; i++) {
        pthread_join(tr[i], NULL);
        CHECK_OK(r[i].rc);
        for (int j = 0; j < TH_N; j++)
            total[j] += r[i].counts[j];
    }
    for (int j = 0; j < TH_N; j++)
        CHECK_EQ(total[j], TH_MSGS);
    mproc_conn_free(a);
    mproc_conn_free(b);
}

/* ---- fd exhaustion ---------------------------------------------------------
 */

static int lowest_free_fd(void)
{
    int fd = dup(0);
    CHECK(fd >= 0);
    close(fd);
    return fd;
}

static void test_fd_exhaustion(void)
{
    SKIP_UNDER_VALGRIND("it emulates RLIMIT_NOFILE only in part: some "
                        "calls get fds past a lowered limit");
    mproc_conn_opts none = {.auth = MPROC_AUTH_NONE};
    mproc_listener *l;
    CHECK_OK(mproc_listener_new(&l, NULL, &none));
    mproc_conn *c;
    CHECK_ERR(mproc_listener_accept(l, &c, 0), -ETIMEDOUT);
    /* a client waiting in the backlog */
    mproc_conn *cl;
    CHECK_OK(mproc_client(&cl, mproc_listener_address(l), &none));
    int before = mproc_test_count_fds();
    int low = lowest_free_fd();
    struct rlimit old, lim;
    CHECK_OK(getrlimit(RLIMIT_NOFILE, &old));
    lim = old;
    lim.rlim_cur = (rlim_t)low;
    CHECK_OK(setrlimit(RLIMIT_NOFILE, &lim));
    mproc_conn *a, *b;
    CHECK_ERR(mproc_pipe(&a, &b, 1), -EMFILE);
    CHECK_ERR(mproc_pipe(&a, &b, 0), -EMFILE);
    CHECK_ERR(mproc_listener_accept(l, &c, 1), -EMFILE);
    CHECK_ERR(mproc_client(&c, mproc_listener_address(l), &none), -EMFILE);
    mproc_listener *l2;
    CHECK_ERR(mproc_listener_new(&l2, NULL, &none), -EMFILE);
    /* room for one fd: a pair still fails, and leaves nothing open */
    lim.rlim_cur = (rlim_t)low + 1;
    CHECK_OK(setrlimit(RLIMIT_NOFILE, &lim));
    CHECK_ERR(mproc_pipe(&a, &b, 1), -EMFILE);
    CHECK_ERR(mproc_pipe(&a, &b, 0), -EMFILE);
    CHECK_EQ(lowest_free_fd(), low);
    CHECK_EQ(mproc_test_count_fds(), before);
    CHECK_OK(setrlimit(RLIMIT_NOFILE, &old));
    /* the waiting client was not lost */
    CHECK_OK(mproc_listener_accept(l, &c, 5));
    send_str(cl, "survived");
    recv_str(c, "survived");
    mproc_conn_free(c);
    mproc_conn_free(cl);
    mproc_listener_free(l);
}

/* ---- listeners and clients -------------------------------------------------
 */

typedef struct cli_arg {
    const char *addr;
    mproc_conn_opts opts;
    int rc;
    const char *say;
    char heard[64];
} cli_arg;

static void *cli_thread(void *arg)
{
    cli_arg *a = arg;
    mproc_conn *c = NULL;
    a->rc = mproc_client(&c, a->addr, &a->opts);
    if (a->rc < 0)
        return NULL;
    if (a->say)
        a->rc = mproc_conn_send_bytes(c, a->say, strlen(a->say));
    size_t n = 0;
    if (a->rc == 0)
        a->rc = mproc_conn_recv_bytes_into(c, a->heard, sizeof a->heard - 1, &n,
                                           10);
    a->heard[n] = 0;
    mproc_conn_free(c);
    return NULL;
}

/* One accept against a client thread; returns the accept code. */
static int serve_one(mproc_listener *l, cli_arg *ca)
{
    pthread_t th;
    CHECK_OK(pthread_create(&th, NULL, cli_thread, ca));
    mproc_conn *c = NULL;
    int rc = mproc_listener_accept(l, &c, 10);
    if (rc == 0) {
        if (ca->say)
            recv_str(c, ca->say);
        send_str(c, "served");
        mproc_conn_free(c);
    }
    pthread_join(th, NULL);
    return rc;
}

static void roundtrip_at(const char *addr, const mproc_conn_opts *lo,
                         const mproc_conn_opts *co)
{
    mproc_listener *l;
    CHECK_OK(mproc_listener_new(&l, addr, lo));
    cli_arg ca = {.addr = mproc_listener_address(l), .say = "hi there"};
    if (co)
        ca.opts = *co;
    CHECK_OK(serve_one(l, &ca));
    CHECK_OK(ca.rc);
    CHECK_STR(ca.heard, "served");
    mproc_listener_free(l);
}

static void test_listener_families(void)
{
    mproc_conn_opts key = {
        .auth = MPROC_AUTH_KEY, .authkey = "k3y", .authkey_len = 3};
    char dir[] = "/tmp/mproc-conn-XXXXXX", path[128];
    CHECK(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/sock", dir);
    /* filesystem path: created, then unlinked on close */
    mproc_listener *l;
    CHECK_OK(mproc_listener_new(&l, path, &key));
    CHECK_STR(mproc_listener_address(l), path);
    CHECK(access(path, F_OK) == 0);
    cli_arg ca = {.addr = path, .opts = key, .say = "path"};
    CHECK_OK(serve_one(l, &ca));
    CHECK_OK(ca.rc);
    /* a second listener on the same path: in use */
    mproc_listener *l2;
    CHECK_ERR(mproc_listener_new(&l2, path, &key), -EADDRINUSE);
    /* a forked child that frees its copy does not unlink the parent's */
    pid_t pid = fork();
    if (pid == 0) {
        mproc_listener_free(l);
        mproc_test_exit(access(path, F_OK) == 0 ? 0 : 1);
    }
    CHECK_EQ(reap(pid), 0);
    CHECK(access(path, F_OK) == 0);
    mproc_listener_free(l);
    CHECK(access(path, F_OK) < 0 && errno == ENOENT);
    /* a path replaced by someone else is not ours to unlink */
    CHECK_OK(mproc_listener_new(&l, path, &key));
    CHECK_OK(unlink(path));
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    close(fd);
    mproc_listener_free(l);
    CHECK(access(path, F_OK) == 0);
    unlink(path);
    /* "unix:" and a relative name */
    char upath[160];
    snprintf(upath, sizeof upath, "unix:%s/u:sock", dir);
    roundtrip_at(upath, &key, &key);
    CHECK(chdir(dir) == 0);
    roundtrip_at("relsock", &key, &key);
    CHECK(access("relsock", F_OK) < 0);
    CHECK(chdir("/") == 0);
    rmdir(dir);

    /* abstract names and the fresh default */
    char abs[64];
    snprintf(abs, sizeof abs, "@mproc-test-%d", (int)getpid());
    roundtrip_at(abs, &key, &key);
    CHECK_OK(mproc_listener_new(&l, NULL, &key));
    CHECK_EQ(mproc_listener_address(l)[0], '@');
    mproc_listener *l3;
    CHECK_OK(mproc_listener_new(&l3, "", &key));
    CHECK(strcmp(mproc_listener_address(l), mproc_listener_address(l3)));
    ca = (cli_arg){.addr = mproc_listener_address(l3), .opts = key};
    CHECK_OK(serve_one(l3, &ca));
    CHECK_OK(ca.rc);
    mproc_listener_free(l);
    mproc_listener_free(l3);
    /* TCP over IPv4 and IPv6, port 0 */
    roundtrip_at("127.0.0.1:0", &key, &key);
    roundtrip_at("localhost:0", &key, &key);
    CHECK_OK(mproc_listener_new(&l, "127.0.0.1:0", &key));
    const char *a = mproc_listener_address(l);
    CHECK(strncmp(a, "127.0.0.1:", 10) == 0 && atoi(a + 10) > 0);
    mproc_listener_free(l);
    int v6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6,
                              .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool have_v6 = v6 >= 0 && bind(v6, (struct sockaddr *)&s6, sizeof s6) == 0;
    if (v6 >= 0)
        close(v6);
    if (have_v6) {
        CHECK_OK(mproc_listener_new(&l, "[::1]:0", &key));
        CHECK(strncmp(mproc_listener_address(l), "[::1]:", 6) == 0);
        mproc_listener_free(l);
        roundtrip_at("[::1]:0", &key, &key);
    }
}

typedef struct sa_cli {
    const struct sockaddr *sa;
    socklen_t len;
    const mproc_conn_opts *o;
    int rc;
} sa_cli;

static void *sa_cli_thread(void *arg)
{
    sa_cli *s = arg;
    mproc_conn *c = NULL;
    s->rc = mproc_client_sockaddr(&c, s->sa, s->len, s->o);
    if (s->rc == 0) {
        s->rc = mproc_conn_send_bytes(c, "nul", 3);
        mproc_conn_free(c);
    }
    return NULL;
}

static void test_listener_sockaddr(void)
{
    mproc_conn_opts key = {
        .auth = MPROC_AUTH_KEY, .authkey = "k", .authkey_len = 1};
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    char name[32];
    /* "\0xx<pid>\0in": an abstract name with a NUL inside */
    int len = snprintf(name, sizeof name, "xx%d-in", (int)getpid());
    memcpy(un.sun_path, name, (size_t)len);
    un.sun_path[0] = 0;
    un.sun_path[len - 3] = 0;
    socklen_t ulen =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)len);
    mproc_listener *l;
    CHECK_OK(
        mproc_listener_new_sockaddr(&l, (struct sockaddr *)&un, ulen, &key));
    sa_cli s = {(struct sockaddr *)&un, ulen, &key, -1};
    pthread_t th;
    CHECK_OK(pthread_create(&th, NULL, sa_cli_thread, &s));
    mproc_conn *c;
    CHECK_OK(mproc_listener_accept(l, &c, 10));
    recv_str(c, "nul");
    pthread_join(th, NULL);
    CHECK_OK(s.rc);
    mproc_conn_free(c);
    mproc_listener_free(l);
    CHECK_ERR(mproc_listener_new_sockaddr(&l, NULL, 0, &key), -EINVAL);
    struct sockaddr bad = {.sa_family = AF_PACKET};
    CHECK_ERR(mproc_listener_new_sockaddr(&l, &bad, sizeof bad, &key), -EINVAL);
}

static void test_addresses_bad(void)
{
    mproc_listener *l;
    mproc_conn *c;
    mproc_conn_opts none = {.auth = MPROC_AUTH_NONE};
    CHECK_ERR(mproc_listener_new(&l, "127.0.0.1:99999", &none), MPROC_EADDR);
    CHECK_ERR(mproc_listener_new(&l, "127.0.0.1:x", &none), MPROC_EADDR);
    CHECK_ERR(mproc_listener_new(&l, "::1:80", &none), MPROC_EADDR);
    CHECK_ERR(mproc_listener_new(&l, "[::1:80", &none), MPROC_EADDR);
    CHECK_ERR(mproc_listener_new(&l, "[]:80", &none), MPROC_EADDR);
    /* A Windows pipe name binds no file named that here (CPython refuses
     * the address family). */
    CHECK_ERR(mproc_listener_new(&l, "\\\\.\\test", &none), MPROC_EADDR);
    CHECK(access("\\\\.\\test", F_OK) < 0);
    mproc_conn *cx = NULL;
    CHECK_ERR(mproc_client(&cx, "\\\\.\\pipe\\x", &none), MPROC_EADDR);
    CHECK_ERR(mproc_listener_new(&l, "no-such-host.invalid:80", &none),
              MPROC_EADDR);
    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = 0;
    CHECK_ERR(mproc_listener_new(&l, longp, &none), MPROC_EADDR);
    CHECK_ERR(mproc_listener_new(&l, "@", &none), MPROC_EADDR);
    CHECK_ERR(mproc_client(&c, NULL, &none), MPROC_EADDR);
    CHECK_ERR(mproc_client(&c, "", &none), MPROC_EADDR);
    CHECK_ERR(mproc_client(&c, "/nonexistent/mproc.sock", &none), -ENOENT);
    CHECK_ERR(mproc_client(&c, "@mproc-nobody-listens-here", &none),
              -ECONNREFUSED);
    /* a TCP port nobody listens on */
    mproc_listener *tmp;
    CHECK_OK(mproc_listener_new(&tmp, "127.0.0.1:0", &none));
    char addr[64];
    snprintf(addr, sizeof addr, "%s", mproc_listener_address(tmp));
    mproc_listener_free(tmp);
    CHECK_ERR(mproc_client(&c, addr, &none), -ECONNREFUSED);
    mproc_conn_opts badauth = {.auth = 7};
    CHECK_ERR(mproc_listener_new(&l, NULL, &badauth), -EINVAL);
    mproc_conn_opts nokey = {.auth = MPROC_AUTH_KEY, .authkey_len = 3};
    CHECK_ERR(mproc_listener_new(&l, NULL, &nokey), -EINVAL);
}

static void test_auth_keys(void)
{
    mproc_conn_opts k1 = {
        .auth = MPROC_AUTH_KEY, .authkey = "right", .authkey_len = 5};
    mproc_conn_opts k2 = {
        .auth = MPROC_AUTH_KEY, .authkey = "wrong", .authkey_len = 5};
    mproc_conn_opts none = {.auth = MPROC_AUTH_NONE, .timeout = 0.3};
    mproc_listener *l;
    CHECK_OK(mproc_listener_new(&l, "127.0.0.1:0", &k1));
    /* wrong key: both sides fail, the listener goes on */
    for (int i = 0; i < 3; i++) {
        cli_arg ca = {.addr = mproc_listener_address(l), .opts = k2};
        double t0 = mproc_test_now();
        CHECK_ERR(serve_one(l, &ca), MPROC_EAUTH);
        CHECK_ERR(ca.rc, MPROC_EAUTH);
        CHECK(mproc_test_now() - t0 < 5);
        ca = (cli_arg){
            .addr = mproc_listener_address(l), .opts = k1, .say = "good"};
        CHECK_OK(serve_one(l, &ca));
        CHECK_OK(ca.rc);
        CHECK_STR(ca.heard, "served");
    }
    /* client without a key against a keyed listener: the listener fails
     * (the client's first message is no answer), and does not hang */
    cli_arg ca = {.addr = mproc_listener_address(l),
                  .opts = none,
                  .say = "i have no key"};
    mproc_listener_free(l);
    k1.timeout = 0.5;
    CHECK_OK(mproc_listener_new(&l, "127.0.0.1:0", &k1));
    ca.addr = mproc_listener_address(l);
    double t0 = mproc_test_now();
    int rc = serve_one(l, &ca);
    CHECK(rc == MPROC_EPROTO || rc == MPROC_EAUTH);
    /* (the client, which runs no handshake, reads the challenge as data,
     * as a Python client without a key would) */
    CHECK(ca.rc < 0 || strncmp(ca.heard, "#CHALLENGE#", 11) == 0);
    CHECK(mproc_test_now() - t0 < 5);
    /* ... and one that just reads: it takes the challenge for a message
     * and hangs up (a client that stalls: see hostile_clients) */
    ca = (cli_arg){.addr = mproc_listener_address(l), .opts = none};
    t0 = mproc_test_now();
    CHECK_ERR(serve_one(l, &ca), MPROC_EEOF);
    CHECK_OK(ca.rc);
    CHECK(strncmp(ca.heard, "#CHALLENGE#{sha256}", 19) == 0);
    CHECK(mproc_test_now() - t0 < 5);
    mproc_listener_free(l);
    /* client with a key against a listener without: -ETIMEDOUT, fast */
    mproc_conn_opts lnone = {.auth = MPROC_AUTH_NONE};
    CHECK_OK(mproc_listener_new(&l, NULL, &lnone));
    k2.timeout = 0.3;
    ca = (cli_arg){.addr = mproc_listener_address(l), .opts = k2};
    pthread_t th;
    CHECK_OK(pthread_create(&th, NULL, cli_thread, &ca));
    mproc_conn *c;
    CHECK_OK(mproc_listener_accept(l, &c, 5));
    t0 = mproc_test_now();
    pthread_join(th, NULL);
    CHECK_ERR(ca.rc, -ETIMEDOUT);
    CHECK(mproc_test_now() - t0 < 3);
    mproc_conn_free(c);
    mproc_listener_free(l);
    /* default: both use the process authkey */
    roundtrip_at(NULL, NULL, NULL);
    /* a different process key in a child: refused */
    CHECK_OK(mproc_listener_new(&l, NULL, NULL));
    pid_t pid = fork();
    if (pid == 0) {
        mproc_set_authkey("other", 5);
        int r = mproc_client(&c, mproc_listener_address(l), NULL);
        mproc_test_exit(r == MPROC_EAUTH ? 0 : 1);
    }
    CHECK_ERR(mproc_listener_accept(l, &c, 10), MPROC_EAUTH);
    CHECK_EQ(reap(pid), 0);
    mproc_listener_free(l);
    /* empty keys are keys (HMAC with an empty key), and differ from none */
    mproc_conn_opts empty = {.auth = MPROC_AUTH_KEY, .authkey_len = 0};
    roundtrip_at(NULL, &empty, &empty);
}

static void test_accept_timeout_and_close(void)
{
    mproc_conn_opts none = {.auth = MPROC_AUTH_NONE};
    mproc_listener *l;
    CHECK_OK(mproc_listener_new(&l, NULL, &none));
    mproc_conn *c;
    double t0 = mproc_test_now();
    CHECK_ERR(mproc_listener_accept(l, &c, 0), -ETIMEDOUT);
    CHECK_ERR(mproc_listener_accept(l, &c, 0.2), -ETIMEDOUT);
    CHECK(mproc_test_now() - t0 >= 0.19);
    int fd = mproc_listener_fileno(l);
    CHECK(fd >= 0);
    int ready;
    CHECK_EQ(mproc_wait(&fd, 1, 0, &ready), 0);
    mproc_listener_close(l);
    CHECK_ERR(mproc_listener_accept(l, &c, 0), MPROC_ECLOSED);
    CHECK_ERR(mproc_listener_fileno(l), MPROC_ECLOSED);
    CHECK_OK(mproc_listener_close(l));
    mproc_listener_free(l);
    mproc_listener_free(NULL);
}

typedef struct acc_arg {
    mproc_listener *l;
    int rc;
} acc_arg;

static void *acc_thread(void *arg)
{
    acc_arg *a = arg;
    mproc_conn *c = NULL;
    a->rc = mproc_listener_accept(a->l, &c, -1);
    mproc_conn_free(c);
    return NULL;
}

static void test_close_wakes_accept(void)
{
    mproc_listener *l;
    CHECK_OK(mproc_listener_new(&l, NULL, NULL));
    acc_arg a[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        a[i] = (acc_arg){l, 1};
        CHECK_OK(pthread_create(&th[i], NULL, acc_thread, &a[i]));
    }
    usleep(100000);
    double t0 = mproc_test_now();
    CHECK_OK(mproc_listener_close(l));
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        CHECK_ERR(a[i].rc, MPROC_ECLOSED);
    }
    CHECK(mproc_test_now() - t0 < 2);
    mproc_listener_free(l);
}

/* Many clients at once, several accepting threads. */
static void *acc_loop(void *arg)
{
    acc_arg *a = arg;
    for (;;) {
        mproc_conn *c = NULL;
        int rc = mproc_listener_accept(a->l, &c, -1);
        if (rc == MPROC_ECLOSED)
            return NULL;
        if (rc < 0) {
            a->rc = rc;
            return NULL;
        }
        void *m;
        size_t n;
        rc = mproc_conn_recv_bytes(c, &m, &n, 100, 10);
        if (rc == 0) {
            mproc_conn_send_bytes(c, m, n);
            free(m);
            a->rc++;
        }
        mproc_conn_free(c);
    }
}

static void test_many_clients(void)
{
    mproc_listener *l;
    mproc_conn_opts o = {.backlog = 2};
    CHECK_OK(mproc_listener_new(&l, NULL, &o));
    acc_arg acc[2] = {{l, 0}, {l, 0}};
    pthread_t at[2], ct[8];
    for (int i = 0; i < 2; i++)
        CHECK_OK(pthread_create(&at[i], NULL, acc_loop, &acc[i]));
    cli_arg ca[8];
    char says[8][16];
    for (int i = 0; i < 8; i++) {
        snprintf(says[i], sizeof says[i], "client %d", i);
        ca[i] = (cli_arg){.addr = mproc_listener_address(l), .say = says[i]};
        CHECK_OK(pthread_create(&ct[i], NULL, cli_thread, &ca[i]));
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(ct[i], NULL);
        CHECK_OK(ca[i].rc);
        CHECK_STR(ca[i].heard, says[i]);
    }
    mproc_listener_close(l);
    for (int i = 0; i < 2; i++)
        pthread_join(at[i], NULL);
    CHECK_EQ(acc[0].rc + acc[1].rc, 8);
    mproc_listener_free(l);
}

/* ---- the handshake against hand-made peers ------------------------------ */

static size_t hmac_of(const char *name, const void *key, size_t klen,
                      const void *msg, size_t n, unsigned char *out)
{
    const EVP_MD *md = strcmp(name, "md5") == 0        ? EVP_md5()
                       : strcmp(name, "sha256") == 0   ? EVP_sha256()
                       : strcmp(name, "sha384") == 0   ? EVP_sha384()
                       : strcmp(name, "sha3_256") == 0 ? EVP_sha3_256()
                                                       : EVP_sha3_384();
    unsigned len = 0;
    CHECK(HMAC(md, key, (int)klen, msg, n, out, &len) != NULL);
    return len;
}

/* The responder (answer_challenge) against every challenge form. */
static void test_answer_forms(void)
{
    const char *names[] = {"md5", "sha256", "sha384", "sha3_256", "sha3_384"};
    const char *key = "sekrit";
    for (int i = -1; i < 5; i++) {
        mproc_conn *c;
        int raw;
        socketpair_raw(&c, &raw);
        unsigned char m[80];
        size_t mlen;
        if (i < 0) { /* 3.6-3.11: 20 random bytes, raw MD5 answer */
            mlen = 20;
            pattern(m, 20, 1);
        } else {
            mlen = (size_t)sprintf((char *)m, "{%s}", names[i]);
            pattern(m + mlen, 40, 2);
            mlen += 40;
        }
        unsigned char frame[100];
        memcpy(frame, "#CHALLENGE#", 11);
        memcpy(frame + 11, m, mlen);
        raw_frame(raw, frame, 11 + mlen);
        raw_frame(raw, "#WELCOME#", 9);
        CHECK_OK(mproc_conn_answer_challenge(c, key, 6, 5));
        unsigned char resp[200], want[100];
        size_t n = raw_recv_frame(raw, resp, sizeof resp);
        size_t wl = 0;
        if (i >= 0)
            wl = (size_t)sprintf((char *)want, "{%s}", names[i]);
        wl += hmac_of(i < 0 ? "md5" : names[i], key, 6, m, mlen, want + wl);
        CHECK_EQ(n, wl);
        CHECK(memcmp(resp, want, n) == 0);
        close(raw);
        mproc_conn_free(c);
    }
    /* Refusals: what arrives instead of a challenge or a verdict. */
    struct {
        const char *chal;
        size_t n;
        const char *verdict;
        int want;
    } bad[] = {
        {"#CHALLENGE#{sha256}0123456789012345678901234567890123456789", 59,
         "#FAILURE#", MPROC_EAUTH},
        {"#CHALLENGE#{sha256}0123456789012345678901234567890123456789", 59,
         "#WELCOMX#", MPROC_EPROTO},
        {"#CHALLENGE#{sha1}0123456789012345678901234567890123456789", 57, "",
         MPROC_EPROTO},
        {"#CHALLENGE#{sha256"
         "0123456789012345678901234567890123456789",
         58, "", MPROC_EPROTO},
        {"#CHALLENGE#{}0123456789012345678901234567890123456789", 53, "",
         MPROC_EPROTO},
        {"#CHALLENGE#0123456789abcdef", 27, "", MPROC_EPROTO}, /* 16 bytes */
        {"#CHALLENGE#01234567890123456789x", 32, "", MPROC_EPROTO},
        {"#CHALLENGE#{md5}", 16, "", MPROC_EPROTO},
        {"#CHALLENG", 9, "", MPROC_EPROTO},
        {"hello", 5, "", MPROC_EPROTO},
        {"", 0, "", MPROC_EPROTO},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mproc_conn *c;
        int raw;
        socketpair_raw(&c, &raw);
        raw_frame(raw, bad[i].chal, bad[i].n);
        if (*bad[i].verdict)
            raw_frame(raw, bad[i].verdict, strlen(bad[i].verdict));
        CHECK_ERR(mproc_conn_answer_challenge(c, "k", 1, 5), bad[i].want);
        close(raw);
        mproc_conn_free(c);
    }
    /* over-long handshake message; a stalled one; a closed one */
    mproc_conn *c;
    int raw;
    socketpair_raw(&c, &raw);
    char big[300];
    memset(big, 'A', sizeof big);
    memcpy(big, "#CHALLENGE#", 11);
    raw_frame(raw, big, 257);
    CHECK_ERR(mproc_conn_answer_challenge(c, "k", 1, 5), MPROC_ETOOBIG);
    close(raw);
    mproc_conn_free(c);
    socketpair_raw(&c, &raw);
    raw_frame(raw, big, 256); /* exactly the limit: read, then refused */
    CHECK_ERR(mproc_conn_answer_challenge(c, "k", 1, 5), MPROC_EPROTO);
    close(raw);
    mproc_conn_free(c);
    socketpair_raw(&c, &raw);
    raw_write(raw, "GET / HTTP/1.1\r\n", 16);
    CHECK_ERR(mproc_conn_answer_challenge(c, "k", 1, 5), MPROC_ETOOBIG);
    close(raw);
    mproc_conn_free(c);
    socketpair_raw(&c, &raw);
    double t0 = mproc_test_now();
    CHECK_ERR(mproc_conn_answer_challenge(c, "k", 1, 0.2), -ETIMEDOUT);
    CHECK(mproc_test_now() - t0 < 2);
    close(raw);
    CHECK_ERR(mproc_conn_answer_challenge(c, "k", 1, 1), MPROC_EEOF);
    mproc_conn_free(c);
}

typedef struct resp_arg {
    int raw;
    const char *name; /* NULL: legacy raw MD5; "" send `custom` */
    const void *custom;
    size_t custom_len;
    bool wrong_key;
    char verdict[16];
} resp_arg;

static void *responder(void *arg)
{
    resp_arg *r = arg;
    unsigned char ch[300], out[300];
    size_t n = raw_recv_frame(r->raw, ch, sizeof ch);
    if (n != 59 || memcmp(ch, "#CHALLENGE#{sha256}", 19) != 0)
        return NULL;
    size_t ol = 0;
    if (r->name && !*r->name) {
        memcpy(out, r->custom, r->custom_len);
        ol = r->custom_len;
    } else {
        if (r->name)
            ol = (size_t)sprintf((char *)out, "{%s}", r->name);
        ol += hmac_of(r->name ? r->name : "md5", r->wrong_key ? "x" : "key",
                      r->wrong_key ? 1 : 3, ch + 11, 48, out + ol);
    }
    raw_frame(r->raw, out, ol);
    n = raw_recv_frame(r->raw, r->verdict, sizeof r->verdict - 1);
    r->verdict[n] = 0;
    return NULL;
}

/* The challenger (deliver_challenge) against every answer form. */
static void test_deliver_forms(void)
{
    struct {
        const char *name;
        bool wrong;
        const char *custom;
        size_t clen;
        int want;
    } cases[] = {
        {"sha256", false, NULL, 0, 0},
        {"md5", false, NULL, 0, 0},
        {"sha384", false, NULL, 0, 0},
        {"sha3_256", false, NULL, 0, 0},
        {"sha3_384", false, NULL, 0, 0},
        {NULL, false, NULL, 0, 0}, /* an old client: raw 16-byte MD5 */
        {"sha256", true, NULL, 0, MPROC_EAUTH},
        {NULL, true, NULL, 0, MPROC_EAUTH},
        {"", false, "01234567890123456789", 20, MPROC_EAUTH},
        {"", false, "{sha1}0123456789012345678901234567890123456789", 46,
         MPROC_EPROTO},
        {"", false, "{sha256}", 8, MPROC_EAUTH},
        {"", false, "garbage garbage garbage", 23, MPROC_EPROTO},
        {"", false, "", 0, MPROC_EPROTO},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mproc_conn *c;
        resp_arg r = {.name = cases[i].name,
                      .custom = cases[i].custom,
                      .custom_len = cases[i].clen,
                      .wrong_key = cases[i].wrong};
        socketpair_raw(&c, &r.raw);
        pthread_t th;
        CHECK_OK(pthread_create(&th, NULL, responder, &r));
        CHECK_ERR(mproc_conn_deliver_challenge(c, "key", 3, 5), cases[i].want);
        pthread_join(th, NULL);
        CHECK_STR(r.verdict, cases[i].want ? "#FAILURE#" : "#WELCOME#");
        close(r.raw);
        mproc_conn_free(c);
    }
}

static void *killer(void *arg)
{
    usleep(200000);
    kill(*(pid_t *)arg, SIGKILL);
    return NULL;
}

/* Raw clients that misbehave against a listener, which keeps serving. */
static void test_hostile_clients(void)
{
    double k = mproc_test_time_scale(); /* a handshake is slow in valgrind */
    mproc_conn_opts key = {.auth = MPROC_AUTH_KEY,
                           .authkey = "key",
                           .authkey_len = 3,
                           .timeout = 0.3 * k};
    mproc_listener *l;
    CHECK_OK(mproc_listener_new(&l, NULL, &key));
    struct {
        const char *bytes;
        size_t n;
        bool hold; /* keep the socket open (stall) */
        int want;
        bool failure; /* the listener answers #FAILURE# first */
    } cases[] = {
        {"\0\0\0\x05hello", 9, false, MPROC_EPROTO, true},
        {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, false, MPROC_ETOOBIG, true},
        {"\0\0\x01\x01", 4, false, MPROC_ETOOBIG, true}, /* 257 > 256 */
        {"\0\0\0\x20"
         "abc",
         7, false, MPROC_ETRUNC, false},
        {"\x80\0\0\x01", 4, false, MPROC_EPROTO, true},
        {"", 0, false, MPROC_EEOF, false},
        {"", 0, true, -ETIMEDOUT, false},
        {"\0\0\0\x28"
         "abc",
         7, true, -ETIMEDOUT, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            int fd = socket(AF_UNIX, SOCK_STREAM, 0);
            struct sockaddr_un un = {.sun_family = AF_UNIX};
            const char *a = mproc_listener_address(l);
            memcpy(un.sun_path + 1, a + 1, strlen(a + 1));
            socklen_t len =
                (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(a));
            if (connect(fd, (struct sockaddr *)&un, len) < 0)
                mproc_test_exit(2);
            unsigned char ch[64];
            if (read(fd, ch, sizeof ch) != 63) /* challenge: 4 + 59 */
                mproc_test_exit(3);
            if (cases[i].n && write(fd, cases[i].bytes, cases[i].n) < 0)
                mproc_test_exit(4);
            if (cases[i].failure) {
                /* Framing errors are refused like a wrong digest. */
                char f[14] = {0};
                if (shutdown(fd, SHUT_WR) < 0 || read(fd, f, 13) != 13 ||
                    memcmp(f, "\0\0\0\x09#FAILURE#", 13) != 0)
                    mproc_test_exit(5);
            }
            if (cases[i].hold)
                read(fd, ch, 1); /* until the listener gives up */
            mproc_test_exit(0);
        }
        mproc_conn *c;
        double t0 = mproc_test_now();
        CHECK_ERR(mproc_listener_accept(l, &c, 10 * k), cases[i].want);
        CHECK(mproc_test_now() - t0 < 3 * k);
        CHECK_EQ(reap(pid), 0);
        /* a good client still gets in */
        cli_arg ca = {
            .addr = mproc_listener_address(l), .opts = key, .say = "after"};
        CHECK_OK(serve_one(l, &ca));
        CHECK_OK(ca.rc);
    }
    /* a client SIGKILLed in the middle of its handshake (half a response
     * sent): the accept fails at once, with the truncation */
    pid_t pid = fork();
    if (pid == 0) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        const char *a = mproc_listener_address(l);
        memcpy(un.sun_path + 1, a + 1, strlen(a + 1));
        socklen_t len =
            (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(a));
        unsigned char ch[64];
        if (connect(fd, (struct sockaddr *)&un, len) < 0 ||
            read(fd, ch, sizeof ch) != 63 ||
            write(fd, "\0\0\0\x28{sha", 8) != 8)
            mproc_test_exit(2);
        pause();
        mproc_test_exit(0);
    }
    pthread_t th;
    CHECK_OK(pthread_create(&th, NULL, killer, &pid));
    mproc_conn *c;
    double t0 = mproc_test_now();
    CHECK_ERR(mproc_listener_accept(l, &c, 10 * k), MPROC_ETRUNC);
    CHECK(mproc_test_now() - t0 < 2 * k);
    pthread_join(th, NULL);
    CHECK_EQ(WTERMSIG(reap(pid)), SIGKILL);
    mproc_listener_free(l);
}

/* A raw client that connects and then trickles its handshake, a byte a
 * while. */
static pid_t trickler(const char *addr)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        memcpy(un.sun_path + 1, addr + 1, strlen(addr + 1));
        socklen_t len =
            (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(addr));
        if (connect(fd, (struct sockaddr *)&un, len) < 0)
            mproc_test_exit(2);
        /* A 40-byte answer announced, then sent a byte every 100 ms. */
        const char *msg = "\0\0\0\x28{sha256}0123456789abcdef0123456789abcdef";
        for (size_t i = 0;; i = (i + 1) % 44) { /* until killed */
            if (write(fd, msg + i, 1) < 0)
                mproc_test_exit(0);
            usleep(100000);
        }
    }
    return pid;
}

typedef struct hs_arg {
    mproc_listener *l;
    mproc_conn *c;
    int rc;
} hs_arg;

static void *hs_thread(void *arg)
{
    hs_arg *h = arg;
    h->rc = mproc_listener_authenticate(h->l, h->c, 10);
    if (h->rc == 0) {
        char b[32];
        size_t n = 0;
        if (mproc_conn_recv_bytes_into(h->c, b, sizeof b, &n, 5) == 0)
            mproc_conn_send_bytes(h->c, "served", 6);
        mproc_conn_free(h->c);
    }
    return NULL;
}

/* Slow clients stall a server only as long as it lets them: with
 * accept_pending + authenticate in threads, two clients trickling their
 * handshakes (each would hold a plain accept for the 10 s handshake
 * timeout) leave a good client served at once. */
static void test_slow_clients(void)
{
    mproc_conn_opts key = {.auth = MPROC_AUTH_KEY,
                           .authkey = "key",
                           .authkey_len = 3,
                           .timeout = 10};
    mproc_listener *l;
    CHECK_OK(mproc_listener_new(&l, NULL, &key));
    const char *addr = mproc_listener_address(l);
    pid_t slow[2] = {trickler(addr), trickler(addr)};
    hs_arg h[3];
    pthread_t th[3];
    for (int i = 0; i < 2; i++) {
        h[i] = (hs_arg){l, NULL, 1};
        double t0 = mproc_test_now();
        CHECK_OK(mproc_listener_accept_pending(l, &h[i].c, 5));
        CHECK(mproc_test_now() - t0 < 1); /* no handshake waited for */
        CHECK_OK(pthread_create(&th[i], NULL, hs_thread, &h[i]));
    }
    cli_arg ca = {.addr = addr, .opts = key, .say = "quick"};
    ca.opts.timeout = 2; /* far below the slow clients' 10 s */
    pthread_t ct;
    CHECK_OK(pthread_create(&ct, NULL, cli_thread, &ca));
    h[2] = (hs_arg){l, NULL, 1};
    CHECK_OK(mproc_listener_accept_pending(l, &h[2].c, 5));
    CHECK_OK(pthread_create(&th[2], NULL, hs_thread, &h[2]));
    pthread_join(ct, NULL);
    CHECK_OK(ca.rc);
    pthread_join(th[2], NULL);
    CHECK_OK(h[2].rc);
    for (int i = 0; i < 2; i++) {
        kill(slow[i], SIGKILL);
        reap(slow[i]);
        pthread_join(th[i], NULL);
        CHECK(h[i].rc < 0); /* their handshakes failed, their conns freed */
    }
    CHECK_STR(ca.heard, "served");
    mproc_listener_free(l);
    /* Under MPROC_AUTH_NONE authenticate has nothing to do. */
    mproc_conn_opts none = {.auth = MPROC_AUTH_NONE};
    CHECK_OK(mproc_listener_new(&l, NULL, &none));
    ca = (cli_arg){.addr = mproc_listener_address(l), .opts = none, .say = "x"};
    CHECK_OK(pthread_create(&ct, NULL, cli_thread, &ca));
    h[0] = (hs_arg){l, NULL, 1};
    CHECK_OK(mproc_listener_accept_pending(l, &h[0].c, 5));
    hs_thread(&h[0]);
    CHECK_OK(h[0].rc);
    pthread_join(ct, NULL);
    CHECK_OK(ca.rc);
    CHECK_ERR(mproc_listener_authenticate(NULL, NULL, 1), -EINVAL);
    mproc_listener_free(l);
}

/* Raw listeners that misbehave against a client. */
static void test_hostile_servers(void)
{
    struct {
        const char *bytes;
        size_t n;
        int want;
    } cases[] = {
        {"\0\0\0\x05hello", 9, MPROC_EPROTO},
        {"\0\0\x10\0", 4, MPROC_ETOOBIG},
        {"\xff\xff\xff\xff\0\0\0\0\0\0\x10\0", 12, MPROC_ETOOBIG},
        {"\0\0\0\x3b#CHALLENGE#", 15, MPROC_ETRUNC},
        {"", 0, MPROC_EEOF},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        socklen_t len = sizeof(sa_family_t); /* autobind an abstract name */
        CHECK_OK(bind(ls, (struct sockaddr *)&un, len));
        CHECK_OK(listen(ls, 1));
        len = sizeof un;
        CHECK_OK(getsockname(ls, (struct sockaddr *)&un, &len));
        char addr[64] = "@";
        memcpy(addr + 1, un.sun_path + 1,
               len - offsetof(struct sockaddr_un, sun_path) - 1);
        pid_t pid = fork();
        if (pid == 0) {
            int fd = accept(ls, NULL, NULL);
            if (cases[i].n)
                raw_write(fd, cases[i].bytes, cases[i].n);
            mproc_test_exit(0);
        }
        close(ls);
        mproc_conn *c;
        mproc_conn_opts key = {.auth = MPROC_AUTH_KEY,
                               .authkey = "k",
                               .authkey_len = 1,
                               .timeout = 2};
        CHECK_ERR(mproc_client(&c, addr, &key), cases[i].want);
        CHECK_EQ(reap(pid), 0);
    }
}

/* ---- connections passed to children ----------------------------------------
 */

static int t_echo(const mproc_args *a)
{
    mproc_conn *c = mproc_args_conn(a, 0);
    mproc_conn *w = mproc_args_conn(a, 1);
    if (!c || !w || mproc_args_conn(a, 2) != NULL)
        return 10;
    void *m;
    size_t n;
    if (mproc_conn_recv_bytes(c, &m, &n, 0, 10) < 0)
        return 11;
    char reply[128];
    int k = snprintf(reply, sizeof reply, "child got %s", (char *)m);
    free(m);
    if (mproc_conn_send_bytes(c, reply, (size_t)k) < 0)
        return 12;
    if (mproc_conn_send_bytes(w, "via simplex", 11) < 0)
        return 13;
    return 0;
}

static void test_pass_to_child(void)
{
    for (int m = 0; m < 3; m++) {
        mproc_conn *a, *b, *r, *w;
        CHECK_OK(mproc_pipe(&a, &b, 1));
        CHECK_OK(mproc_pipe(&r, &w, 0));
        mproc_args *args = mproc_args_new();
        CHECK_OK(mproc_args_add_conn(args, b));
        CHECK_OK(mproc_args_add_conn(args, w));
        CHECK_OK(mproc_args_add_int(args, 5));
        CHECK(mproc_args_conn(args, 0) == b);
        CHECK(mproc_args_conn(args, 2) == NULL);
        mproc_process *p;
        CHECK_OK(mproc_process_new(&p, t_echo, args));
        mproc_args_free(args);
        CHECK_OK(mproc_process_set_start_method(p, mproc_test_methods[m]));
        CHECK_OK(mproc_process_start(p));
        /* the parent's copies of the child's ends go, as in Python */
        mproc_conn_free(b);
        mproc_conn_free(w);
        send_str(a, "hello");
        recv_str(a, "child got hello");
        recv_str(r, "via simplex");
        CHECK_OK(mproc_process_join(p, 10));
        CHECK_EQ(mproc_process_exitcode(p), 0);
        mproc_process_free(p);
        /* the child's copies are closed too: EOF */
        void *msg;
        size_t n;
        CHECK_ERR(mproc_conn_recv_bytes(a, &msg, &n, 0, 5), MPROC_EEOF);
        CHECK_ERR(mproc_conn_recv_bytes(r, &msg, &n, 0, 5), MPROC_EEOF);
        mproc_conn_free(a);
        mproc_conn_free(r);
    }
    /* a connection in the middle of a message cannot be passed */
    mproc_conn *a, *b;
    CHECK_OK(mproc_pipe(&a, &b, 1));
    send_str(a, "0123456789");
    size_t n;
    char buf[4];
    CHECK_ERR(mproc_conn_recv_bytes_into(b, buf, 4, &n, 1), MPROC_EBUFSIZE);
    mproc_args *args = mproc_args_new();
    CHECK_OK(mproc_args_add_conn(args, b));
    CHECK_ERR(mproc_args_add_conn(args, NULL), -EINVAL);
    mproc_process *p;
    CHECK_OK(mproc_process_new(&p, t_echo, args));
    CHECK_OK(mproc_process_set_start_method(p, MPROC_START_SPAWN));
    CHECK_ERR(mproc_process_start(p), -EBUSY);
    mproc_process_free(p);
    mproc_args_free(args);
    mproc_conn_free(a);
    mproc_conn_free(b);
}

/* ---- objects to a running process -------------------------------------- */

/* A running child: takes an fd, then an argument list of objects, over its
 * connection, and uses them. */
static int t_take(const mproc_args *a)
{
    mproc_conn *c = mproc_args_conn(a, 0);
    int fd = -1;
    if (mproc_conn_recv_handle(c, &fd, 10) < 0)
        return 10;
    char buf[32] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    if (n != 7 || mproc_conn_send_bytes(c, buf, (size_t)n) < 0)
        return 11;
    mproc_args *got = NULL;
    if (mproc_conn_recv_args(c, &got, 10) < 0)
        return 12;
    mproc_queue *q = mproc_args_queue(got, 1);
    mproc_conn *back = mproc_args_conn(got, 2);
    int rc = 0;
    if (mproc_args_int(got, 0) != 42 || !q || !back ||
        mproc_queue_put(q, "via queue", 9, 10) < 0 ||
        mproc_conn_send_bytes(back, "via conn", 8) < 0)
        rc = 13;
    mproc_args_free(got); /* releases the objects it rebuilt */
    return rc;
}

static void test_objects_to_running_child(void)
{
    for (int m = 0; m < 3; m++) {
        mproc_conn *a, *b;
        CHECK_OK(mproc_pipe(&a, &b, 1));
        mproc_args *args = mproc_args_new();
        CHECK_OK(mproc_args_add_conn(args, b));
        mproc_process *p;
        CHECK_OK(mproc_process_new(&p, t_take, args));
        mproc_args_free(args);
        CHECK_OK(mproc_process_set_start_method(p, mproc_test_methods[m]));
        CHECK_OK(mproc_process_start(p));
        mproc_conn_free(b);
        /* An fd, as Python's send_handle. */
        int mfd = memfd_create("handle", MFD_CLOEXEC);
        CHECK_EQ(write(mfd, "an fd!\n", 7), 7);
        CHECK_OK(mproc_conn_send_handle(a, mfd, 10));
        close(mfd);
        recv_str(a, "an fd!\n");
        /* Objects made after the child started. */
        mproc_queue *q;
        CHECK_OK(mproc_queue_new(&q, 0));
        mproc_conn *r, *w;
        CHECK_OK(mproc_pipe(&r, &w, 0));
        mproc_args *objs = mproc_args_new();
        CHECK_OK(mproc_args_add_int(objs, 42));
        CHECK_OK(mproc_args_add_queue(objs, q));
        CHECK_OK(mproc_args_add_conn(objs, w));
        CHECK_OK(mproc_conn_send_args(a, objs, 10));
        mproc_args_free(objs);
        mproc_conn_free(w);
        char buf[16];
        size_t n;
        CHECK_OK(mproc_queue_get(q, buf, sizeof buf, &n, 10));
        CHECK(n == 9 && memcmp(buf, "via queue", 9) == 0);
        recv_str(r, "via conn");
        CHECK_OK(mproc_process_join(p, 10));
        CHECK_EQ(mproc_process_exitcode(p), 0);
        mproc_process_free(p);
        mproc_queue_free(q);
        mproc_conn_free(r);
        mproc_conn_free(a);
    }
}

/* A hostile or confused peer: fds that do not match the count byte, a
 * count with no fd, a list that is not one, and a plain pipe. Nothing is
 * kept, nothing leaks (the harness counts fds). */
static void test_handles_hostile(void)
{
    mproc_conn *c;
    int raw;
    socketpair_raw(&c, &raw);
    int two[2];
    CHECK_OK(pipe2(two, O_CLOEXEC));
    int fd = -1;
    /* two fds, count 2: recv_handle wants one */
    struct iovec iov = {"\x02", 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    union {
        char b[CMSG_SPACE(2 * sizeof(int))];
        struct cmsghdr al;
    } u;
    memset(&u, 0, sizeof u);
    mh.msg_control = u.b;
    mh.msg_controllen = CMSG_SPACE(2 * sizeof(int));
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(2 * sizeof(int));
    memcpy(CMSG_DATA(cm), two, sizeof two);
    CHECK_EQ(sendmsg(raw, &mh, 0), 1);
    CHECK_ERR(mproc_conn_recv_handle(c, &fd, 1), MPROC_EPROTO);
    /* a count byte of 1 with no fd */
    raw_write(raw, "\x01", 1);
    CHECK_ERR(mproc_conn_recv_handle(c, &fd, 1), MPROC_EPROTO);
    /* a count of 0 and then garbage where the list should be */
    raw_write(raw, "\x00", 1);
    raw_frame(raw, "not a list", 10);
    mproc_args *a = NULL;
    CHECK_ERR(mproc_conn_recv_args(c, &a, 1), MPROC_EPROTO);
    CHECK(a == NULL);
    /* nothing came: a timeout, and the connection is still usable */
    CHECK_ERR(mproc_conn_recv_handle(c, &fd, 0.05), -ETIMEDOUT);
    close(two[0]);
    close(two[1]);
    close(raw);
    CHECK_ERR(mproc_conn_recv_handle(c, &fd, 1), MPROC_EEOF);
    mproc_conn_free(c);
    /* a pipe cannot carry fds */
    mproc_conn *pr, *pw;
    CHECK_OK(mproc_pipe(&pr, &pw, 0));
    CHECK_ERR(mproc_conn_send_handle(pw, 0, 1), -ENOTSOCK);
    CHECK_ERR(mproc_conn_recv_handle(pr, &fd, 1), -ENOTSOCK);
    CHECK_ERR(mproc_conn_send_handle(NULL, 0, 1), -EINVAL);
    mproc_conn_free(pr);
    mproc_conn_free(pw);
}

/* Sends fd with a count byte of 1, as send_args does before its list. */
static void send_count_and_fd(int raw, int fd)
{
    struct iovec iov = {"\x01", 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    union {
        char b[CMSG_SPACE(sizeof(int))];
        struct cmsghdr al;
    } u;
    memset(&u, 0, sizeof u);
    mh.msg_control = u.b;
    mh.msg_controllen = CMSG_SPACE(sizeof(int));
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    CHECK_EQ(sendmsg(raw, &mh, 0), 1);
}

/* recv_args when the fds come but their list does not: the peer dies
 * half-way through the list, or sends nothing more (the list is waited
 * for 10 s whatever the caller's timeout, then the connection is out of
 * step). MPROC_ETRUNC either way, and the fds that came are closed (the
 * harness counts fds). */
static void test_args_truncated(void)
{
    mproc_conn *c;
    int raw;
    socketpair_raw(&c, &raw);
    int p[2];
    CHECK_OK(pipe2(p, O_CLOEXEC));
    send_count_and_fd(raw, p[0]);
    unsigned char h[4] = {0, 0, 0, 100}; /* promises 100 bytes, sends 10 */
    raw_write(raw, h, 4);
    raw_write(raw, "0123456789", 10);
    close(raw);
    mproc_args *a = NULL;
    CHECK_ERR(mproc_conn_recv_args(c, &a, 5), MPROC_ETRUNC);
    CHECK(a == NULL);
    mproc_conn_free(c);

    socketpair_raw(&c, &raw);
    send_count_and_fd(raw, p[0]);
    double t0 = mproc_test_now();
    CHECK_ERR(mproc_conn_recv_args(c, &a, 0.2), MPROC_ETRUNC);
    double waited = mproc_test_now() - t0;
    CHECK(waited >= 9.5); /* the list's own 10 s, not the caller's 0.2 */
    CHECK(a == NULL);
    close(raw);
    mproc_conn_free(c);
    close(p[0]);
    close(p[1]);
}

/* ---- objects: send_obj / recv_obj between C processes ------------------- */

/* The child: each object received comes back wrapped as
 * {'got': obj, 'repr': repr(obj)}; an int -1 ends it. */
static int t_obj_echo(const mproc_args *args)
{
    mproc_conn *c = mproc_args_conn(args, 0);
    for (;;) {
        mproc_obj *o;
        if (mproc_conn_recv_obj(c, &o, 10, NULL, 0) != 0)
            return 1;
        int64_t end;
        if (mproc_obj_int_value(o, &end) == 0 && end == -1) {
            mproc_obj_unref(o);
            return 0;
        }
        char *r;
        if (mproc_obj_repr(o, &r, NULL) != 0)
            return 2;
        mproc_obj *d = mproc_obj_dict_new();
        if (mproc_obj_dict_set(d, mproc_obj_str_c("got"), o) != 0 ||
            mproc_obj_dict_set(d, mproc_obj_str_c("repr"),
                               mproc_obj_str_c(r)) != 0)
            return 3;
        free(r);
        int rc = mproc_conn_send_obj(c, d);
        mproc_obj_unref(d);
        if (rc != 0)
            return 4;
    }
}

static mproc_obj *sample_obj(int i)
{
    mproc_obj *o = mproc_obj_dict_new();
    mproc_obj *l = mproc_obj_list_new();
    for (int k = 0; k < 100 * i + 1; k++)
        CHECK_OK(mproc_obj_list_append(l, mproc_obj_int(k * k)));
    CHECK_OK(mproc_obj_dict_set(o, mproc_obj_str_c("squares"), l));
    CHECK_OK(mproc_obj_dict_set(
        o, mproc_obj_int(i),
        mproc_obj_int_from_str("-1606938044258990275541962092341162602522"
                               "202993782792835301376")));
    CHECK_OK(mproc_obj_dict_set(o, mproc_obj_float(2.5),
                                mproc_obj_str_c("\xc3\xa9")));
    CHECK_OK(mproc_obj_dict_set(
        o, mproc_obj_tuple_of(2, mproc_obj_none(), mproc_obj_bool(true)),
        mproc_obj_bytes("howdy", 5)));
    return o;
}

static void test_objects_c_to_c(void)
{
    for (int m = 0; m < 3; m++) {
        mproc_conn *a, *b;
        CHECK_OK(mproc_pipe(&a, &b, 1));
        mproc_args *args = mproc_args_new();
        CHECK_OK(mproc_args_add_conn(args, b));
        mproc_process *p;
        CHECK_OK(mproc_process_new(&p, t_obj_echo, args));
        mproc_args_free(args);
        CHECK_OK(mproc_process_set_start_method(p, mproc_test_methods[m]));
        CHECK_OK(mproc_process_start(p));
        mproc_conn_free(b);
        for (int i = 0; i < 4; i++) {
            CHECK_OK(mproc_conn_set_pickle_protocol(a, 2 + i)); /* 2..5 */
            mproc_obj *o = sample_obj(i);
            CHECK_OK(mproc_conn_send_obj(a, o));
            mproc_obj *back;
            char err[128];
            CHECK_OK(mproc_conn_recv_obj(a, &back, 10, err, sizeof err));
            CHECK_EQ(mproc_obj_eq(mproc_obj_dict_get_str(back, "got"), o), 1);
            char *mine;
            CHECK_OK(mproc_obj_repr(o, &mine, NULL));
            CHECK_STR(
                mproc_obj_str_value(mproc_obj_dict_get_str(back, "repr"), NULL),
                mine);
            free(mine);
            mproc_obj_unref(back);
            mproc_obj_unref(o);
        }
        mproc_obj *end = mproc_obj_int(-1);
        CHECK_OK(mproc_conn_send_obj(a, end));
        mproc_obj_unref(end);
        CHECK_OK(mproc_process_join(p, 10));
        CHECK_EQ(mproc_process_exitcode(p), 0);
        mproc_process_free(p);
        mproc_conn_free(a);
    }
}

/* What is no pickle, or a pickle mproc refuses, fails alone: the message
 * is consumed with MPROC_EPICKLE and a reason, and the next is read. */
static void test_objects_hostile(void)
{
    mproc_conn *a, *b;
    CHECK_OK(mproc_pipe(&a, &b, 1));
    /* pickle.dumps(os.system, 2) and a REDUCE of it */
    static const unsigned char os_system[] = "\x80\x02"
                                             "cposix\nsystem\n"
                                             "q\x00X\x04\x00\x00\x00echo"
                                             "q\x01\x85q\x02Rq\x03.";
    const struct {
        const void *p;
        size_t n;
        const char *says;
    } bad[] = {
        {"not a pickle", 12, ""},
        {os_system, sizeof os_system - 1, "posix"},
        {"\x80\x04\x95", 3, ""},              /* truncated FRAME */
        {"\x80\x02(((((((((((((((", 16, ""},  /* no STOP */
        {"\x80\x02X\xff\xff\xff\x7f", 7, ""}, /* a huge str, absent */
        {"", 0, ""},
    };
    mproc_obj *good = mproc_obj_str_c("still here");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_OK(mproc_conn_send_bytes(a, bad[i].p, bad[i].n));
        CHECK_OK(mproc_conn_send_obj(a, good));
        mproc_obj *o = (mproc_obj *)1;
        char err[256];
        CHECK_ERR(mproc_conn_recv_obj(b, &o, 5, err, sizeof err),
                  MPROC_EPICKLE);
        CHECK(o == NULL);
        CHECK(err[0] != 0);
        CHECK(strstr(err, bad[i].says) != NULL);
        CHECK_OK(mproc_conn_recv_obj(b, &o, 5, NULL, 0));
        CHECK_EQ(mproc_obj_eq(o, good), 1);
        mproc_obj_unref(o);
    }
    mproc_obj_unref(good);
    /* the usual errors of the connection come through */
    mproc_obj *o;
    CHECK_ERR(mproc_conn_recv_obj(b, &o, 0, NULL, 0), -ETIMEDOUT);
    CHECK_ERR(mproc_conn_recv_obj(b, NULL, 0, NULL, 0), -EINVAL);
    CHECK_ERR(mproc_conn_send_obj(a, NULL), -EINVAL);
    CHECK_ERR(mproc_conn_set_pickle_protocol(NULL, 4), -EINVAL);
    CHECK_OK(mproc_conn_set_pickle_protocol(a, -1));
    CHECK_EQ(mproc_conn_pickle_protocol(a), MPROC_PICKLE_HIGHEST_PROTOCOL);
    mproc_conn_free(a);
    CHECK_ERR(mproc_conn_recv_obj(b, &o, 5, NULL, 0), MPROC_EEOF);
    CHECK(o == NULL);
    mproc_conn_free(b);
}

static const mproc_test tests[] = {
    {"objects_to_running_child", test_objects_to_running_child, 60},
    {"objects_c_to_c", test_objects_c_to_c, 60},
    {"objects_hostile", test_objects_hostile, 20},
    {"handles_hostile", test_handles_hostile, 20},
    {"args_truncated", test_args_truncated, 40},
    {"pipe_duplex", test_pipe_duplex, 20},
    {"pipe_simplex", test_pipe_simplex, 20},
    {"bad_args_and_close", test_bad_args_and_close, 10},
    {"framing_bytes", test_framing_bytes, 10},
    {"framing_long_form", test_framing_long_form, 60},
    {"recv_into_too_short", test_recv_into_too_short, 10},
    {"maxlen", test_maxlen, 10},
    {"hostile_frames", test_hostile_frames, 20},
    {"peer_killed_mid_send", test_peer_killed_mid_send, 20},
    {"recv_timeout", test_recv_timeout, 20},
    {"poll_and_wait", test_poll_and_wait, 20},
    {"send_to_closed_peer", test_send_to_closed_peer, 10},
    {"send_timeout", test_send_timeout, 20},
    {"threads", test_threads, 30},
    {"fd_exhaustion", test_fd_exhaustion, 20},
    {"listener_families", test_listener_families, 30},
    {"listener_sockaddr", test_listener_sockaddr, 10},
    {"addresses_bad", test_addresses_bad, 20},
    {"auth_keys", test_auth_keys, 40},
    {"accept_timeout_and_close", test_accept_timeout_and_close, 10},
    {"close_wakes_accept", test_close_wakes_accept, 10},
    {"many_clients", test_many_clients, 30},
    {"answer_forms", test_answer_forms, 20},
    {"deliver_forms", test_deliver_forms, 20},
    {"slow_clients", test_slow_clients, 30},
    {"hostile_clients", test_hostile_clients, 60},
    {"hostile_servers", test_hostile_servers, 30},
    {"pass_to_child", test_pass_to_child, 60},
};

MPROC_TEST_MAIN(tests)
