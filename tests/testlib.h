/* testlib.h - spawn targets living in a shared library (libmproc_testlib). */
#ifndef MPROC_TESTLIB_H
#define MPROC_TESTLIB_H
#include "mproc.h"
/* Exits with 40 + args[0] (an int). */
int mproc_testlib_target(const mproc_args *args);
/* Exits 0 when the library's constructor ran before the target. */
int mproc_testlib_ctor_ran(const mproc_args *args);
/* Exits 0 when the process runs the program named by args[0] (a string),
 * as /proc/self/exe says. */
int mproc_testlib_exe_is(const mproc_args *args);
#endif
