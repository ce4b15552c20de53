/*
 * mproc/args.h - arguments for process targets, and shareable objects.
 *
 * A target receives an argument list of typed values (int, double, string,
 * bytes) and shareable objects (connections, queues, locks, shared memory,
 * or a kind of your own). Values are copied into the list. Objects are
 * borrowed: the object must stay alive until the process has started.
 *
 * How objects reach the child:
 *  - fork: the child inherits the parent's memory; the target is handed the
 *    very same object pointer.
 *  - spawn and forkserver: at start the object's kind exports it as a list
 *    of file descriptors plus a byte description; the child receives
 *    duplicates of those fds and the kind's import function rebuilds an
 *    equivalent object (re-mapping shared memory, re-wrapping sockets).
 * Either way the target sees an object that behaves the same. Objects the
 * target receives are owned by the library: do not free them.
 *
 * A kind is a static, constant mproc_kind. Across exec it is found again
 * the same way a target function is (object file + offset), so kinds may be
 * defined by programs and libraries, not only by mproc.
 */
#ifndef MPROC_ARGS_H
#define MPROC_ARGS_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mproc_args mproc_args;
typedef struct mproc_export mproc_export;
typedef struct mproc_import mproc_import;

/* Most fds one process start may carry (SCM_RIGHTS limit, less room). */
#define MPROC_ARGS_MAX_FDS 240

typedef enum mproc_arg_type {
    MPROC_ARG_NONE = 0, /* index out of range */
    MPROC_ARG_INT = 1,
    MPROC_ARG_DOUBLE = 2,
    MPROC_ARG_STR = 3,
    MPROC_ARG_BYTES = 4,
    MPROC_ARG_OBJECT = 5
} mproc_arg_type;

/*
 * A kind of shareable object.
 *  export_fn: describe obj for a child: add its fds (borrowed: the exporter
 *    keeps them; the child gets duplicates) and bytes. Runs in the parent,
 *    in start(). Returns 0 or a negative code (start then fails with it).
 *  import_fn: rebuild the object in the child from what export_fn wrote, in
 *    the same order. fds taken with mproc_import_fd belong to the new
 *    object. On success stores the object in *out and returns 0.
 *  free_fn: release an object import_fn made (called when the child's
 *    target returns). Must not destroy shared state other processes use.
 */
typedef struct mproc_kind {
    const char *name;
    int (*export_fn)(const void *obj, mproc_export *ex);
    int (*import_fn)(mproc_import *im, void **out);
    void (*free_fn)(void *obj);
} mproc_kind;

/* Creates an empty argument list. Returns NULL when out of memory. */
MPROC_API mproc_args *mproc_args_new(void);

/* Frees a list and the values it copied (objects are borrowed). NULL ok. */
MPROC_API void mproc_args_free(mproc_args *a);

/*
 * Builds a list from a format: i int, l int64_t, d double, s string
 * (NUL-terminated; NULL is an error), b bytes (const void *, size_t), o
 * object (const mproc_kind *, void *). Example:
 *   mproc_args_of("sid", "bob", 3, 2.5)
 * Returns NULL on out of memory or a bad format.
 */
MPROC_API mproc_args *mproc_args_of(const char *fmt, ...);

/* Appenders. Return 0, -EINVAL (NULL list/pointer), -ENOMEM. Values are
 * copied; an object is borrowed and must outlive the process start. */
MPROC_API int mproc_args_add_int(mproc_args *a, int64_t v);
MPROC_API int mproc_args_add_double(mproc_args *a, double v);
MPROC_API int mproc_args_add_str(mproc_args *a, const char *s);
MPROC_API int mproc_args_add_bytes(mproc_args *a, const void *p, size_t n);
MPROC_API int mproc_args_add_object(mproc_args *a, const mproc_kind *kind,
                                    void *obj);

/* Number of arguments (0 for NULL). */
MPROC_API size_t mproc_args_count(const mproc_args *a);

/* Type of argument i, MPROC_ARG_NONE when out of range. */
MPROC_API mproc_arg_type mproc_args_type(const mproc_args *a, size_t i);

/* Accessors; a wrong type or index yields 0 / 0.0 / NULL. Pointers returned
 * stay valid as long as the list. mproc_args_bytes stores the length in
 * *len when len is not NULL. mproc_args_object returns NULL unless
 * argument i is an object of exactly that kind. */
MPROC_API int64_t mproc_args_int(const mproc_args *a, size_t i);
MPROC_API double mproc_args_double(const mproc_args *a, size_t i);
MPROC_API const char *mproc_args_str(const mproc_args *a, size_t i);
MPROC_API const void *mproc_args_bytes(const mproc_args *a, size_t i,
                                       size_t *len);
MPROC_API void *mproc_args_object(const mproc_args *a, size_t i,
                                  const mproc_kind *kind);

/* For export_fn: add an fd (borrowed) / bytes to the description.
 * Return 0, -EINVAL, -ENOMEM, or -EMFILE past MPROC_ARGS_MAX_FDS fds. */
MPROC_API int mproc_export_fd(mproc_export *ex, int fd);
MPROC_API int mproc_export_bytes(mproc_export *ex, const void *p, size_t n);

/* For import_fn: take the next fd (the caller owns it: close it or keep it
 * in the object) / the next n bytes. Return the fd or 0, or MPROC_EPROTO
 * when the description has no more fds/bytes. */
MPROC_API int mproc_import_fd(mproc_import *im);
MPROC_API int mproc_import_bytes(mproc_import *im, void *p, size_t n);

#ifdef __cplusplus
}
#endif

#endif
