/*
 * harness.h - the test runner every tests/test_<module>.c uses.
 *
 * Each test case runs in its own forked child, in its own process group,
 * under a timeout. When the case returns, the child checks that it left no
 * child process (zombies included), no new fd and no new /dev/shm entry
 * behind (after mproc_shutdown(), which stops the fork server and any
 * library helper processes). The parent then makes sure nothing of the
 * process group survives. A failed CHECK prints file:line and ends the
 * case with status 1; SKIP ends it with status 77. The program exits 0
 * when no case failed, 1 when one did, and 77 when every case it ran was
 * skipped (ctest shows that as skipped: SKIP_RETURN_CODE).
 *
 *   static void test_x(void) { CHECK(1 + 1 == 2); }
 *   static const mproc_test tests[] = {{"x", test_x, 10}};
 *   MPROC_TEST_MAIN(tests)
 *
 * Run one case with `./test_foo NAME` (substring match), list with -l.
 *
 * Under valgrind (make valgrind) and ThreadSanitizer (make tsan) every
 * case gets mproc_test_time_scale() times its timeout, and a case that
 * cannot run there says so first thing with SKIP_UNDER_VALGRIND(why) or
 * SKIP_UNDER_TSAN(why): it is then reported as skipped, with the reason.
 */
#ifndef MPROC_TEST_HARNESS_H
#define MPROC_TEST_HARNESS_H

#include "mproc.h"
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct mproc_test {
    const char *name;
    void (*fn)(void);
    double timeout; /* seconds; 0 = 30 */
} mproc_test;

int mproc_test_main(int argc, char **argv, const mproc_test *tests, size_t n);

#define MPROC_TEST_MAIN(tests)                                                 \
    int main(int argc, char **argv)                                            \
    {                                                                          \
        return mproc_test_main(argc, argv, tests,                              \
                               sizeof(tests) / sizeof((tests)[0]));            \
    }

void mproc_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
void mproc_test_skip(const char *why) __attribute__((noreturn));

#define CHECK(c)                                                               \
    do {                                                                       \
        if (!(c))                                                              \
            mproc_test_fail(__FILE__, __LINE__, "CHECK(%s)", #c);              \
    } while (0)

#define CHECK_EQ(a, b)                                                         \
    do {                                                                       \
        long long a_ = (long long)(a), b_ = (long long)(b);                    \
        if (a_ != b_)                                                          \
            mproc_test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a,  \
                            #b, a_, b_);                                       \
    } while (0)

/* rc must be >= 0 (a success or a count). */
#define CHECK_OK(rc)                                                           \
    do {                                                                       \
        long long r_ = (long long)(rc);                                        \
        if (r_ < 0)                                                            \
            mproc_test_fail(__FILE__, __LINE__, "%s failed: %lld %s (%s)",     \
                            #rc, r_, mproc_errname((int)r_),                   \
                            mproc_strerror((int)r_));                          \
    } while (0)

/* rc must equal the error code err. */
#define CHECK_ERR(rc, err)                                                     \
    do {                                                                       \
        long long r_ = (long long)(rc);                                        \
        if (r_ != (long long)(err))                                            \
            mproc_test_fail(__FILE__, __LINE__, "%s: got %lld %s, want %s",    \
                            #rc, r_, mproc_errname((int)r_),                   \
                            mproc_errname((int)(err)));                        \
    } while (0)

#define CHECK_STR(a, b)                                                        \
    do {                                                                       \
        const char *a_ = (a), *b_ = (b);                                       \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                 \
            mproc_test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"",  \
                            #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");   \
    } while (0)

#define SKIP(why) mproc_test_skip(why)

/* True when this program runs under valgrind (its preload is in the
 * environment) / was built with ThreadSanitizer. */
bool mproc_test_under_valgrind(void);
bool mproc_test_under_tsan(void);
/* How many times slower code runs here: 1, 3 under TSan, 10 under
 * valgrind. Case timeouts are multiplied by it; a test multiplies the
 * time limits it sets its own code (a handshake's timeout, say) too. */
double mproc_test_time_scale(void);

#define SKIP_UNDER_VALGRIND(why)                                               \
    do {                                                                       \
        if (mproc_test_under_valgrind())                                       \
            SKIP("under valgrind: " why);                                      \
    } while (0)

#define SKIP_UNDER_TSAN(why)                                                   \
    do {                                                                       \
        if (mproc_test_under_tsan())                                           \
            SKIP("under ThreadSanitizer: " why);                               \
    } while (0)

/* Under ASan, runs LeakSanitizer now: nonzero (and the report on stderr)
 * when memory is leaked. 0 in other builds. */
int mproc_test_leak_check(void);

/* _exit(code) for a test's own forked children: in a coverage build
 * (MPROC_COVERAGE) it writes the counters first, which _exit would lose. */
void mproc_test_exit(int code) __attribute__((noreturn));

/* 1 once mproc_test_main has run in this process (0 in a spawn child,
 * where main() never runs). */
extern int mproc_test_main_ran;

/* Start methods to loop over in tests that must hold under all three. */
extern const mproc_start_method mproc_test_methods[3];

/* A new process running fn(args) started under method m (args copied;
 * every step CHECKed). The caller joins and frees it. */
mproc_process *mproc_test_start(mproc_target fn, const mproc_args *args,
                                mproc_start_method m);

/* Path of an installed CPython ("3.11" -> DIR/3.11.x/bin/python, where
 * DIR is $MPROC_PYTHON_DIR, by default ~/.pyenv/versions), or NULL.
 * Static storage. */
const char *mproc_test_python(const char *version);

/* Path of tests/py/<name>, the Python peers of the tests (found next to
 * the harness's source). Fails the case when it is not there. The string
 * is static: one call's result is overwritten by the next. */
const char *mproc_test_py_script(const char *name);

/* Seconds since an arbitrary point (CLOCK_MONOTONIC). */
double mproc_test_now(void);

/* Number of open fds of this process. */
int mproc_test_count_fds(void);

/* True when mproc runs without pidfds here: MPROC_NO_PIDFD is set (the
 * ctest entries *_nopidfd, make valgrind), or the kernel has none. */
bool mproc_test_no_pidfd(void);

#endif
