/*
 * mproc/util.h - waiting on many objects, CPU counts, affinity, niceness.
 */
#ifndef MPROC_UTIL_H
#define MPROC_UTIL_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Waits until at least one of fds is readable (or hung up), as
 * multiprocessing.connection.wait. Every mproc object that can be waited on
 * has an fd for it: mproc_process_sentinel, connection filenos, queue
 * readiness fds; raw fds work too. On return ready[i] is 1 for each ready
 * fd, else 0 (ready may be NULL). Returns the number ready (0 on timeout),
 * or -EINVAL (bad arguments, a negative fd), -EBADF (an fd that is not
 * open), -ENOMEM. EINTR is retried.
 */
MPROC_API int mproc_wait(const int *fds, size_t n, double timeout, int *ready);

/* Number of CPUs in the system (os.cpu_count); at least 1. */
MPROC_API int mproc_cpu_count(void);

/* Number of CPUs this process may run on (os.process_cpu_count, honours
 * affinity); at least 1. */
MPROC_API int mproc_cpu_count_usable(void);

/*
 * CPU affinity of process pid (0 = the caller), as os.sched_getaffinity:
 * stores up to max CPU numbers in cpus (ascending) and returns how many the
 * set holds (may exceed max), or -ESRCH, -EPERM, -EINVAL.
 */
MPROC_API int mproc_affinity_get(pid_t pid, int *cpus, size_t max);

/* Sets the affinity of pid (0 = caller) to the n CPUs listed. Returns 0,
 * -EINVAL (n == 0, a CPU out of range or offline), -ESRCH, -EPERM. */
MPROC_API int mproc_affinity_set(pid_t pid, const int *cpus, size_t n);

/* Nice value of pid (0 = caller): get stores it in *nice. set returns
 * -EPERM when lowering without privilege, -ESRCH, -EINVAL. */
MPROC_API int mproc_nice_get(pid_t pid, int *nice);
MPROC_API int mproc_nice_set(pid_t pid, int nice);

/* Seconds on CLOCK_MONOTONIC; for deadlines and benchmarks. */
MPROC_API double mproc_monotonic(void);

/* ---- finalizers (multiprocessing.util.Finalize) ----------------------- */

typedef void (*mproc_finalizer)(void *arg);

/*
 * Registers fn(arg) to run once when this process exits, as
 * multiprocessing.util.Finalize with an exitpriority: at mproc_shutdown(),
 * which runs at exit() of the main program (atexit), at the end of every
 * child process under every start method and of every pool worker that
 * exits normally. Higher priorities run first; equal priorities in the
 * reverse order of registration. Those with priority >= 0 run before the
 * process's remaining children are terminated (daemons) and joined, those
 * below 0 after (as CPython). A process killed by a signal runs none.
 * Children do not inherit their parent's finalizers (under fork too).
 * Returns a handle > 0, or -EINVAL (fn NULL), -ENOMEM. Thread safe; fn
 * runs on the thread that calls mproc_shutdown (or exit).
 */
MPROC_API int mproc_finalize(mproc_finalizer fn, void *arg, int priority);

/* Unregisters the finalizer without running it. Returns 0, or -ENOENT
 * (unknown handle, already run or cancelled). Thread safe. */
MPROC_API int mproc_finalize_cancel(int handle);

/* Runs the finalizer now (once) and unregisters it. Returns 0 or -ENOENT.
 * Thread safe; fn runs on the calling thread. */
MPROC_API int mproc_finalize_now(int handle);

#ifndef MPROC_NO_DEPRECATED
/* Former names (docs/style.md), kept as aliases for now; define
 * MPROC_NO_DEPRECATED to check that a program no longer uses them. */
#define mproc_process_cpu_count mproc_cpu_count_usable
#endif

#ifdef __cplusplus
}
#endif

#endif
