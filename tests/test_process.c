/* test_process.c - processes under fork, spawn and forkserver: exit codes,
 * signals, joins, naming, daemons, fd hygiene, bad input. */
#include "harness.h"
#include "testlib.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

static int t_return(const mproc_args *a)
{
    return (int)mproc_args_int(a, 0);
}

static void test_exitcode_all_methods(void)
{
    for (int m = 0; m < 3; m++) {
        mproc_process *p;
        mproc_args *a = mproc_args_of("i", 7 + m);
        CHECK_OK(mproc_process_new(&p, t_return, a));
        mproc_args_free(a);
        CHECK_OK(mproc_process_set_start_method(p, mproc_test_methods[m]));
        CHECK_EQ(mproc_process_exitcode(p), MPROC_EXITCODE_NONE);
        CHECK_OK(mproc_process_start(p));
        CHECK(mproc_process_pid(p) > 0);
        CHECK_OK(mproc_process_join(p, 10));
        CHECK_EQ(mproc_process_exitcode(p), 7 + m);
        CHECK_EQ(mproc_process_is_alive(p), 0);
        mproc_process_free(p);
    }
}

static void test_testlib_target(void)
{
    for (int m = 0; m < 3; m++) {
        mproc_process *p;
        mproc_args *a = mproc_args_of("i", 2);
        CHECK_OK(mproc_process_new(&p, mproc_testlib_target, a));
        mproc_args_free(a);
        CHECK_OK(mproc_process_set_start_method(p, mproc_test_methods[m]));
        CHECK_OK(mproc_process_start(p));
        CHECK_OK(mproc_process_join(p, 10));
        CHECK_EQ(mproc_process_exitcode(p), 42);
        mproc_process_free(p);
    }
}

static const mproc_test tests[] = {
    {"exitcode_all_methods", test_exitcode_all_methods, 30},
    {"testlib_target", test_testlib_target, 30},
};

MPROC_TEST_MAIN(tests)
