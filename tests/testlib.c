/* testlib.c - a target inside a shared library: under spawn it must be
 * found again in the new process by object file and offset. */
#include "testlib.h"

#include <string.h>
#include <unistd.h>

static int offset = 40; /* data in the library: relocations must be right */

int mproc_testlib_target(const mproc_args *args)
{
    return offset + (int)mproc_args_int(args, 0);
}

/* Set by the library's constructor: a spawn child must run it before the
 * target, although libmproc (which this library needs) is initialized
 * first and boots the child from its own initializer. */
static int ctor_ran;

__attribute__((constructor)) static void testlib_init(void)
{
    ctor_ran = 1;
}

int mproc_testlib_ctor_ran(const mproc_args *args)
{
    return ctor_ran ? 0 : 1;
}

/* Exits 0 when this process runs the program args[0] names. */
int mproc_testlib_exe_is(const mproc_args *args)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return 2;
    exe[n] = 0;
    const char *want = mproc_args_str(args, 0);
    return want && strcmp(exe, want) == 0 ? 0 : 1;
}
