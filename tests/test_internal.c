/*
 * test_internal.c - white-box tests of internals no public call reaches
 * directly: code references read from a peer's description, the byte
 * reader's bounds, the growable array. Linked with the static library,
 * whose hidden symbols a static link still resolves.
 */
#include "harness.h"

#include "core/core.h"

#include <dlfcn.h>
#include <stdint.h>
#include <sys/stat.h>

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

static const mproc_test tests[] = {
    {"coderef_loads_only_named_file", test_coderef_loads_only_named_file, 10},
    {"reader_bounds", test_reader_bounds, 10},
    {"grow", test_grow, 10},
};

MPROC_TEST_MAIN(tests)
