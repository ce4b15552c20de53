/*
 * mproc/common.h - definitions shared by every mproc module: the export
 * macro, the version, and the conventions every public function follows.
 *
 * Conventions (apply to every function unless its comment says otherwise):
 *  - Functions that can fail return 0 (or a non-negative count) on success
 *    and a negative error code on failure: -errno, or an MPROC_E* code
 *    (see mproc/error.h). errno is never part of the contract.
 *  - Timeouts are seconds as a double: negative waits forever, 0 polls.
 *    A blocking call retries on EINTR without stretching its deadline.
 *  - _new/_free pairs: _free accepts NULL. A failed constructor leaves
 *    nothing behind.
 *  - The library never prints (unless logging was turned on by the
 *    program), never calls exit() and never aborts on a caller's mistake.
 */
#ifndef MPROC_COMMON_H
#define MPROC_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#if defined(MPROC_STATIC)
#define MPROC_API
#elif defined(__GNUC__)
#define MPROC_API __attribute__((visibility("default")))
#else
#define MPROC_API
#endif

#define MPROC_VERSION_MAJOR 0
#define MPROC_VERSION_MINOR 1
#define MPROC_VERSION_PATCH 0

#ifdef __cplusplus
extern "C" {
#endif

/* Returns the library's version as "MAJOR.MINOR.PATCH" (static storage). */
MPROC_API const char *mproc_version(void);

#ifdef __cplusplus
}
#endif

#endif
