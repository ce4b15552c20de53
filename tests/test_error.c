/*
 * test_error.c - one error space: every code has a name and a message,
 * errno values are plain -errno, mproc's own codes sit outside the errno
 * range, and a task's own failure code (MPROC_EUSER) comes back to the
 * caller intact under every start method, distinct from any errno.
 */
#include "harness.h"

static void test_table(void)
{
    /* mproc's own codes: unique, outside errno, named, with a message. */
    static const struct {
        int code;
        const char *name;
    } own[] = {
#define X(name, value, msg) {MPROC_##name, "MPROC_" #name},
        MPROC_ERRNO_MAP(X)
#undef X
    };
    size_t n = sizeof own / sizeof own[0];
    CHECK(n >= 20);
    for (size_t i = 0; i < n; i++) {
        CHECK(own[i].code <= -5000 && own[i].code > -10000);
        CHECK_STR(mproc_errname(own[i].code), own[i].name);
        CHECK(strcmp(mproc_strerror(own[i].code), "unknown error") != 0);
        for (size_t j = i + 1; j < n; j++)
            CHECK(own[i].code != own[j].code);
    }
    /* Where errno has a code, that is the code (no duplicate of it). */
    CHECK_STR(mproc_errname(-EOWNERDEAD), "EOWNERDEAD");
    CHECK_STR(mproc_errname(-EDEADLK), "EDEADLK");
    CHECK_STR(mproc_errname(-ENOTRECOVERABLE), "ENOTRECOVERABLE");
    CHECK_STR(mproc_errname(-ERANGE), "ERANGE");
    CHECK_STR(mproc_errname(-ETIMEDOUT), "ETIMEDOUT");
    CHECK_STR(mproc_strerror(-ETIMEDOUT), strerror(ETIMEDOUT));
    for (int c = -5047; c <= -5040; c++)
        if (c == -5040 || c == -5041 || c == -5045 || c == -5047)
            CHECK_STR(mproc_errname(c), "UNKNOWN"); /* retired */
    CHECK_STR(mproc_errname(0), "OK");
    CHECK_STR(mproc_strerror(0), "success");
    CHECK_STR(mproc_errname(12345), "UNKNOWN");
    CHECK_STR(mproc_strerror(-4095 - 1000000), "unknown error");
}

static void test_user_codes(void)
{
    CHECK(MPROC_IS_EUSER(MPROC_EUSER(0)));
    CHECK(MPROC_IS_EUSER(MPROC_EUSER(MPROC_EUSER_MAX)));
    CHECK(!MPROC_IS_EUSER(MPROC_EUSER(0) + 1));
    CHECK(!MPROC_IS_EUSER(-EPERM));
    CHECK(!MPROC_IS_EUSER(MPROC_ETASK));
    CHECK(!MPROC_IS_EUSER(0));
    CHECK_EQ(MPROC_EUSER_VALUE(MPROC_EUSER(42)), 42);
    CHECK_EQ(MPROC_EUSER_VALUE(MPROC_EUSER(MPROC_EUSER_MAX)), MPROC_EUSER_MAX);
    CHECK_STR(mproc_errname(MPROC_EUSER(7)), "MPROC_EUSER");
    CHECK_STR(mproc_strerror(MPROC_EUSER(7)), "user-defined failure");
}

/* Fails with the user code in its input; -1 for input 0. */
static int fail_with(const void *in, size_t len, mproc_out *out)
{
    (void)len;
    (void)out;
    int n = *(const int *)in;
    return n == 0 ? -1 : MPROC_EUSER(n);
}

static void test_task_user_code(void)
{
    for (int k = 0; k < 3; k++) {
        mproc_pool_opts o = {.processes = 2, .method = mproc_test_methods[k]};
        mproc_pool *pool;
        CHECK_OK(mproc_pool_new(&pool, &o));
        int in[4] = {0, 1, 99, MPROC_EUSER_MAX};
        mproc_iov items[4];
        for (int i = 0; i < 4; i++)
            items[i] = (mproc_iov){&in[i], sizeof in[i]};
        mproc_results *r = NULL;
        mproc_pool_map(pool, fail_with, items, 4, NULL, &r);
        CHECK(r != NULL);
        CHECK_EQ(mproc_results_failed(r), 4);
        /* -1 is indistinguishable from EPERM: why MPROC_EUSER exists. */
        CHECK_ERR(mproc_results_error(r, 0)->code, -EPERM);
        for (int i = 1; i < 4; i++) {
            int c = mproc_results_error(r, (size_t)i)->code;
            CHECK(MPROC_IS_EUSER(c));
            CHECK_EQ(MPROC_EUSER_VALUE(c), in[i]);
        }
        mproc_results_free(r);
        mproc_pool_free(pool);
    }
}

static const mproc_test tests[] = {
    {"table", test_table, 10},
    {"user_codes", test_user_codes, 10},
    {"task_user_code", test_task_user_code, 60},
};

MPROC_TEST_MAIN(tests)
