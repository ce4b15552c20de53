/*
 * core/error.c - names and messages for every code mproc returns: -errno
 * values through glibc's tables, mproc's own from MPROC_ERRNO_MAP, and the
 * codes programs give their own failures (MPROC_EUSER).
 */
#include "core/core.h"

#include <string.h>

const char *mproc_version(void)
{
    return "0.1.0";
}

const char *mproc_strerror(int code)
{
    if (code == 0)
        return "success";
    switch (code) {
#define MPROC__ERR_MSG(name, value, msg)                                       \
    case value:                                                                \
        return msg;
        MPROC_ERRNO_MAP(MPROC__ERR_MSG)
#undef MPROC__ERR_MSG
    default:
        break;
    }
    if (code < 0 && code > -4096) {
        const char *d = strerrordesc_np(-code);
        if (d)
            return d;
    }
    if (MPROC_IS_EUSER(code))
        return "user-defined failure";
    return "unknown error";
}

const char *mproc_errname(int code)
{
    if (code == 0)
        return "OK";
    switch (code) {
#define MPROC__ERR_NAME(name, value, msg)                                      \
    case value:                                                                \
        return "MPROC_" #name;
        MPROC_ERRNO_MAP(MPROC__ERR_NAME)
#undef MPROC__ERR_NAME
    default:
        break;
    }
    if (code < 0 && code > -4096) {
        const char *n = strerrorname_np(-code);
        if (n)
            return n;
    }
    if (MPROC_IS_EUSER(code))
        return "MPROC_EUSER";
    return "UNKNOWN";
}
