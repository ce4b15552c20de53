/*
 * core/log.c - multiprocessing-style logging: "[LEVEL/ProcessName] message",
 * off by default, one write(2) per line so concurrent processes never
 * interleave and a forked child can log without any lock.
 */
#include "core/core.h"

#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

static _Atomic int log_level = MPROC_LOG_OFF;
static _Atomic int log_fd = -1;

int mproc_log_to_stderr(int level)
{
    atomic_store(&log_fd, STDERR_FILENO);
    atomic_store(&log_level, level);
    return 0;
}

int mproc_log_to_fd(int fd, int level)
{
    if (fd < 0) {
        atomic_store(&log_level, MPROC_LOG_OFF);
        atomic_store(&log_fd, -1);
        return 0;
    }
    atomic_store(&log_fd, fd);
    atomic_store(&log_level, level);
    return 0;
}

int mproc_log_set_level(int level)
{
    atomic_store(&log_level, level);
    return 0;
}

int mproc_log_get_level(void)
{
    return atomic_load(&log_level);
}

int mproc__log_fd(void)
{
    return atomic_load(&log_fd);
}

void mproc__log_restore(int fd, int level)
{
    atomic_store(&log_fd, fd);
    atomic_store(&log_level, fd >= 0 ? level : MPROC_LOG_OFF);
}

const char *mproc_log_level_name(int level)
{
    switch (level) {
    case MPROC_LOG_NOTSET:
        return "NOTSET";
    case MPROC_LOG_SUBDEBUG:
        return "SUBDEBUG";
    case MPROC_LOG_DEBUG:
        return "DEBUG";
    case MPROC_LOG_INFO:
        return "INFO";
    case MPROC_LOG_SUBWARNING:
        return "SUBWARNING";
    case MPROC_LOG_WARNING:
        return "WARNING";
    case MPROC_LOG_ERROR:
        return "ERROR";
    case MPROC_LOG_CRITICAL:
        return "CRITICAL";
    default:
        return "Level";
    }
}

void mproc_vlog(int level, const char *fmt, va_list ap)
{
    int fd = atomic_load(&log_fd);
    if (level < atomic_load(&log_level) || fd < 0 || !fmt)
        return;
    mproc__self_init(); /* the process's name, even in its first line */
    char line[4096];
    const char *lname = mproc_log_level_name(level);
    int n;
    if (lname[0] == 'L' && lname[1] == 'e')
        n = snprintf(line, sizeof line, "[Level %d/%s] ", level,
                     mproc__me.name);
    else
        n = snprintf(line, sizeof line, "[%s/%s] ", lname, mproc__me.name);
    if (n < 0)
        return;
    if ((size_t)n < sizeof line - 1) {
        int m = vsnprintf(line + n, sizeof line - 1 - (size_t)n, fmt, ap);
        if (m > 0)
            n += m;
    }
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    (void)mproc__write_all(fd, line, (size_t)n);
}

void mproc_log(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mproc_vlog(level, fmt, ap);
    va_end(ap);
}
