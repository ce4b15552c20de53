/*
 * mproc/error.h - error codes.
 *
 * Every mproc function that can fail returns a negative code: either -errno
 * (for example -ETIMEDOUT, -EINVAL, -ENOMEM) or one of mproc's own codes
 * below, which sit outside the errno range (errno values stop at 4095).
 * One table gives every code its name and message.
 */
#ifndef MPROC_ERROR_H
#define MPROC_ERROR_H

#include "common.h"

#include <errno.h> /* every code is -errno or one of the MPROC_E* below */

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, message). Values are stable ABI: append, never renumber.
 * Retired, never to be reused: -5040..-5041, -5045, -5047 (now the plain
 * -EOWNERDEAD, -ENOTRECOVERABLE, -EDEADLK, -ERANGE). */
#define MPROC_ERRNO_MAP(X)                                                     \
    X(ESTARTED, -5001, "process already started")                              \
    X(ENOTSTARTED, -5002, "process not started")                               \
    X(ERUNNING, -5003, "process is still running")                             \
    X(ECLOSED, -5004, "object is closed")                                      \
    X(ERESOLVE, -5005, "target cannot be resolved in the new process")         \
    X(EDAEMON, -5006, "daemonic processes are not allowed to have children")   \
    X(EREAPED, -5007, "process already finished and reaped")                   \
    X(EBOOTSTRAP, -5008, "child process failed while bootstrapping")           \
    X(EFORKSERVER, -5009, "fork server failed or is unreachable")              \
    X(EAUTH, -5020, "authentication failed")                                   \
    X(EPROTO, -5021, "protocol error: malformed data from peer")               \
    X(EEOF, -5022, "end of file: peer closed the connection")                  \
    X(ETRUNC, -5023, "got end of file during message")                         \
    X(ETOOBIG, -5024, "message too large")                                     \
    X(EBUFSIZE, -5025, "buffer too short for message")                         \
    X(EFULL, -5026, "queue is full")                                           \
    X(EEMPTY, -5027, "queue is empty")                                         \
    X(ETASKDONE, -5028, "task_done() called too many times")                   \
    X(EADDR, -5029, "bad address")                                             \
    X(ENOTOWNER, -5042, "lock is not held by the caller")                      \
    X(EBOUND, -5043, "semaphore released too many times")                      \
    X(EBROKEN, -5044, "barrier is broken")                                     \
    X(ETYPE, -5046, "wrong type")                                              \
    X(ETASK, -5060, "task failed")                                             \
    X(EWORKER, -5061, "worker process died while running the task")            \
    X(ETASKTIMEOUT, -5062, "task timed out; its worker was killed")            \
    X(EINIT, -5063, "worker initializer failed")                               \
    X(EPOOL, -5064, "pool is not running")                                     \
    X(ESTARTUP, -5065, "pool workers keep dying while starting")               \
    X(ERANKLOST, -5066, "a remote rank of the pool was lost")                  \
    X(EPICKLE, -5080, "unsupported or unsafe pickle data")                     \
    X(EREMOTE, -5081, "remote error")                                          \
    X(ECALLEDPROCESS, -5100, "command returned a non-zero exit status")

enum {
#define MPROC__ERR_ENUM(name, value, msg) MPROC_##name = (value),
    MPROC_ERRNO_MAP(MPROC__ERR_ENUM)
#undef MPROC__ERR_ENUM
};

/*
 * Codes of your own. A task that fails for a reason of your program's
 * returns MPROC_EUSER(n), n from 0 to MPROC_EUSER_MAX; whoever reads the
 * result gets the same code back, and MPROC_EUSER_VALUE(code) gives n.
 * These never collide with -errno (-1 .. -4095) nor with mproc's own codes
 * (-5001 .. -9999). (A task returning -1 reads as -EPERM: use
 * MPROC_EUSER(1).) mproc_strerror() names them "user-defined failure",
 * mproc_errname() "MPROC_EUSER".
 */
#define MPROC_EUSER_BASE (-0x10000000)
#define MPROC_EUSER_MAX  0x0fffffff
#define MPROC_EUSER(n)   (MPROC_EUSER_BASE - (int)(n))
#define MPROC_IS_EUSER(code)                                                   \
    ((code) <= MPROC_EUSER_BASE && (code) >= MPROC_EUSER_BASE - MPROC_EUSER_MAX)
#define MPROC_EUSER_VALUE(code) (MPROC_EUSER_BASE - (code))

/*
 * Returns a message for any code mproc returns (-errno, MPROC_E*, or a
 * MPROC_EUSER code), or for 0 ("success"). Unknown codes get "unknown error".
 * Static storage; thread safe; async-signal-safe.
 */
MPROC_API const char *mproc_strerror(int code);

/*
 * Returns the symbolic name of a code: "ETIMEDOUT" for -ETIMEDOUT,
 * "MPROC_EAUTH" for MPROC_EAUTH, "MPROC_EUSER" for any MPROC_EUSER(n),
 * "OK" for 0, "UNKNOWN" otherwise.
 * Static storage; thread safe; async-signal-safe.
 */
MPROC_API const char *mproc_errname(int code);

#ifdef __cplusplus
}
#endif

#endif
