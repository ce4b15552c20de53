/* testlib.c - a target inside a shared library: under spawn it must be
 * found again in the new process by object file and offset. */
#include "testlib.h"

static int offset = 40; /* data in the library: relocations must be right */

int mproc_testlib_target(const mproc_args *args)
{
    return offset + (int)mproc_args_int(args, 0);
}
