/* testlib.c - a target inside a shared library: under spawn it must be
 * found again in the new process by object file and offset. */
#include "testlib.h"

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
