/*
 * mproc/log.h - logging, as multiprocessing.get_logger / log_to_stderr.
 *
 * Off by default: the library says nothing until the program turns logging
 * on. Each line is "[LEVEL/ProcessName] message\n", written with a single
 * write(2), so lines from many processes never interleave and logging is
 * safe in a forked child and from any thread. Children inherit the level
 * and the fd (under spawn and forkserver the fd is passed along).
 * The library logs its own events (process start, exit, pool workers) at
 * DEBUG and INFO, as multiprocessing's logger does.
 */
#ifndef MPROC_LOG_H
#define MPROC_LOG_H

#include "common.h"
#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Python's logging levels. */
enum {
    MPROC_LOG_NOTSET = 0,
    MPROC_LOG_SUBDEBUG = 5,
    MPROC_LOG_DEBUG = 10,
    MPROC_LOG_INFO = 20,
    MPROC_LOG_SUBWARNING = 25,
    MPROC_LOG_WARNING = 30,
    MPROC_LOG_ERROR = 40,
    MPROC_LOG_CRITICAL = 50,
    MPROC_LOG_OFF = 1000
};

/* Log to stderr from level up (log_to_stderr). Returns 0. */
MPROC_API int mproc_log_to_stderr(int level);

/* Log to fd (borrowed: the caller keeps it open) from level up. fd < 0
 * turns logging off. Returns 0 or -EINVAL. */
MPROC_API int mproc_log_to_fd(int fd, int level);

/* Sets / returns the threshold; MPROC_LOG_OFF silences. */
MPROC_API int mproc_log_set_level(int level);
MPROC_API int mproc_log_get_level(void);

/* Name of a level ("DEBUG", "INFO"...; "Level N" otherwise). */
MPROC_API const char *mproc_log_level_name(int level);

/*
 * Writes one line when level >= the threshold. Lines longer than 4 KiB are
 * cut. Never blocks on a lock; async-signal-safe apart from formatting.
 */
MPROC_API void mproc_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
MPROC_API void mproc_vlog(int level, const char *fmt, va_list ap);

#define mproc_debug(...)   mproc_log(MPROC_LOG_DEBUG, __VA_ARGS__)
#define mproc_info(...)    mproc_log(MPROC_LOG_INFO, __VA_ARGS__)
#define mproc_warning(...) mproc_log(MPROC_LOG_WARNING, __VA_ARGS__)
#define mproc_error(...)   mproc_log(MPROC_LOG_ERROR, __VA_ARGS__)

#ifdef __cplusplus
}
#endif

#endif
