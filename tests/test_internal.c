/*
 * test_internal.c - white-box tests of internals no public call reaches
 * directly: code references read from a peer's description, the byte
 * reader's bounds, the growable array; and the handshake on a system
 * without libcrypto (this program alone does not link it, so it can hide
 * it). Linked with the static library, whose hidden symbols a static link
 * still resolves.
 */
#include "harness.h"

#include "core/core.h"

#include <dlfcn.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* A code reference names the object file to load when it is not loaded
 * yet. Read from a description a peer sent (the fork server's requests),
 * it must never load a file other than the very one named: a bare name
 * (found through the library search path) or a path whose device and
 * inode differ is refused before anything is loaded. */
static void test_coderef_loads_only_named_file(void)
{
    const char *lib = "/lib/x86_64-linux-gnu/libz.so.1";
    struct stat st;
    if (stat(lib, &st) < 0)
        SKIP("no libz.so.1 to try loading");
    CHECK(dlopen("libz.so.1", RTLD_NOW | RTLD_NOLOAD) == NULL);
    struct {
        const char *name;
        uint64_t ino_delta;
    } cases[] = {{"libz.so.1", 0}, {lib, 1}, {"./libz.so.1", 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mproc__buf b = {0};
        mproc__buf_str(&b, cases[i].name);
        mproc__buf_u64(&b, (uint64_t)st.st_dev);
        mproc__buf_u64(&b, (uint64_t)st.st_ino + cases[i].ino_delta);
        mproc__buf_u64(&b, 0);
        mproc__reader r = {.p = b.p, .len = b.len};
        void *addr = NULL;
        CHECK_ERR(mproc__ref_read(&r, &addr), MPROC_ERESOLVE);
        mproc__buf_free(&b);
        CHECK(dlopen("libz.so.1", RTLD_NOW | RTLD_NOLOAD) == NULL);
    }
}

/* The reader never reads past its end: a short input sets bad and yields
 * zeroes; a string longer than the buffer or the input is refused. */
static void test_reader_bounds(void)
{
    unsigned char in[12] = {5, 0, 0, 0, 0, 0, 0, 0, 'a', 'b', 'c', 'd'};
    mproc__reader r = {.p = in, .len = sizeof in};
    char s[8];
    CHECK(!mproc__rd_str(&r, s, sizeof s)); /* says 5, only 4 there */
    CHECK(r.bad);
    CHECK_EQ(mproc__rd_u64(&r), 0);
    mproc__reader r2 = {.p = in, .len = sizeof in};
    char tiny[4];
    CHECK(!mproc__rd_str(&r2, tiny, sizeof tiny)); /* 5 >= cap 4 */
    CHECK_STR(tiny, "");
    mproc__reader r3 = {.p = in, .len = 3};
    CHECK_EQ(mproc__rd_u32(&r3), 0);
    CHECK(r3.bad);
}

/* MPROC__GROW doubles, keeps the contents, and on an impossible size
 * fails leaving the array and its capacity as they were. */
static void test_grow(void)
{
    uint64_t *v = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < 1000; i++) {
        CHECK_OK(MPROC__GROW(v, cap, i + 1));
        v[i] = i * 3;
    }
    CHECK(cap >= 1000 && cap < 2048);
    uint64_t *before = v;
    size_t cap_before = cap;
    CHECK_ERR(MPROC__GROW(v, cap, SIZE_MAX / 4), -ENOMEM);
    CHECK(v == before && cap == cap_before);
    for (size_t i = 0; i < 1000; i++)
        CHECK_EQ(v[i], i * 3);
    CHECK_OK(MPROC__GROW(v, cap, 10)); /* already room: no change */
    CHECK(v == before);
    free(v);
}

/* One frame of the connection format (a 4-byte big-endian length). */
static void raw_frame(int fd, const void *p, size_t n)
{
    unsigned char h[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                          (unsigned char)(n >> 8), (unsigned char)n};
    CHECK_EQ(write(fd, h, 4), 4);
    CHECK_EQ(write(fd, p, n), (ssize_t)n);
}

/* Where libcrypto is not to be had (hidden here in a mount namespace of
 * the case's own), a handshake fails with -ELIBACC on either side,
 * again on the next try, and a connection without a key still works. */
static void test_handshake_without_libcrypto(void)
{
    static const char *const sonames[] = {"libcrypto.so.3", "libcrypto.so.1.1"};
    for (size_t i = 0; i < 2; i++)
        if (dlopen(sonames[i], RTLD_NOW | RTLD_NOLOAD))
            SKIP("libcrypto is loaded in this program already");
    if (unshare(CLONE_NEWNS) < 0 && unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
        SKIP("no mount namespace of our own to hide libcrypto in");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        SKIP("mounts cannot be made private");
    static const char *const dirs[] = {"/usr/lib/x86_64-linux-gnu",
                                       "/lib/x86_64-linux-gnu",
                                       "/usr/lib64",
                                       "/lib64",
                                       "/usr/lib",
                                       "/usr/local/lib"};
    int hidden = 0;
    for (size_t d = 0; d < sizeof dirs / sizeof dirs[0]; d++)
        for (size_t i = 0; i < 2; i++) {
            char path[256];
            snprintf(path, sizeof path, "%s/%s", dirs[d], sonames[i]);
            if (access(path, F_OK) == 0 &&
                mount("/dev/null", path, NULL, MS_BIND, NULL) == 0)
                hidden++;
        }
    if (!hidden)
        SKIP("no libcrypto at a known path to hide");
    for (size_t i = 0; i < 2; i++) {
        void *h = dlopen(sonames[i], RTLD_NOW | RTLD_LOCAL);
        if (h) {
            dlclose(h);
            SKIP("libcrypto is still found (a path not hidden)");
        }
    }
    for (int round = 0; round < 2; round++) {
        int sv[2];
        mproc_conn *c;
        /* The answering side: a challenge arrives, no HMAC to answer. */
        CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
        CHECK_OK(mproc_conn_from_fd(&c, sv[0],
                                    MPROC_CONN_READABLE | MPROC_CONN_WRITABLE));
        char chal[11 + 8 + 40];
        memcpy(chal, "#CHALLENGE#{sha256}", 19);
        memset(chal + 19, 'x', 40);
        raw_frame(sv[1], chal, sizeof chal);
        CHECK_ERR(mproc_conn_answer_challenge(c, "k", 1, 5), -ELIBACC);
        mproc_conn_free(c);
        close(sv[1]);
        /* The challenging side: an answer arrives, nothing to check it. */
        CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
        CHECK_OK(mproc_conn_from_fd(&c, sv[0],
                                    MPROC_CONN_READABLE | MPROC_CONN_WRITABLE));
        char answer[8 + 32];
        memcpy(answer, "{sha256}", 8);
        memset(answer + 8, 'y', 32);
        raw_frame(sv[1], answer, sizeof answer);
        int rc = mproc_conn_deliver_challenge(c, "k", 1, 5);
        CHECK_ERR(rc, -ELIBACC);
        mproc_conn_free(c);
        close(sv[1]);
    }
    /* Without a key there is no handshake: the connection works. */
    mproc_conn *a, *b;
    CHECK_OK(mproc_pipe(&a, &b, 1));
    CHECK_OK(mproc_conn_send_bytes(a, "hi", 2));
    char buf[4];
    size_t n = 0;
    CHECK_OK(mproc_conn_recv_bytes_into(b, buf, sizeof buf, &n, 5));
    CHECK_EQ(n, 2);
    mproc_conn_free(a);
    mproc_conn_free(b);
}

static const mproc_test tests[] = {
    {"coderef_loads_only_named_file", test_coderef_loads_only_named_file, 10},
    {"reader_bounds", test_reader_bounds, 10},
    {"grow", test_grow, 10},
    {"handshake_without_libcrypto", test_handshake_without_libcrypto, 20},
};

MPROC_TEST_MAIN(tests)
