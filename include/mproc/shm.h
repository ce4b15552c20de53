/*
 * mproc/shm.h - shared memory, as multiprocessing's Value, Array, RawValue,
 * RawArray and shared_memory.SharedMemory.
 *
 *   mproc_value *counter;
 *   mproc_value_new(&counter, MPROC_CTYPE_INT32);   // Value('i', 0)
 *   ... pass it to children with mproc_args_add_value ...
 *   mproc_value_acquire(counter, -1);                // with get_lock():
 *   int64_t x;
 *   mproc_value_get_i64(counter, &x);
 *   mproc_value_set_i64(counter, x + 1);             //     value += 1
 *   mproc_value_release(counter);
 *   mproc_value_free(counter);
 *
 * Values and arrays live in a shared heap: blocks carved out of a few
 * memfd-backed arenas, so creating one costs no new mapping and works after
 * children have started. A Value or Array (not Raw) carries a process-shared
 * recursive lock, like Python's default RLock (it is the sync module's
 * robust mproc_rlock): get/set take it for the one access, acquire/release
 * hold it across several (and nest). Raw objects have no lock; their typed
 * accessors are single atomic loads/stores.
 *
 * Types: an mproc_ctype, whose values are Python's typecodes, so 'i' and
 * MPROC_CTYPE_INT32 are the same argument ('l'/'L' are accepted as the
 * 64-bit types, as on Linux x86-64).
 *
 * SharedMemory: a named POSIX segment (/dev/shm/<name>) that unrelated
 * processes attach to by name, or an anonymous memfd segment for children.
 * Segments a program creates are tracked: if it never unlinks one, a
 * tracker process unlinks it once the program's whole process tree is gone
 * and no live process maps or holds it any more (see docs/shm.md).
 *
 * Passing to children: every object here is a shareable object (see
 * mproc/args.h): the kinds mproc_value_kind, mproc_array_kind and
 * mproc_shm_kind, or the helpers mproc_args_add_value / mproc_args_value and
 * so on. Under fork the child uses the very same object; under spawn and
 * forkserver it re-maps the same memory (an arena is mapped once per child
 * however many objects live in it). An object made with a caller's lock
 * carries that lock: parent and child lock the same lock (mapped once per
 * child, and the very object the child gets if the lock is also passed).
 *
 * Lifetimes: _free in the process that created the object gives its memory
 * back to the heap (Value/Array) or unmaps it (SharedMemory; the name stays
 * until unlinked). _free of a copy a fork child inherited, or of an
 * object imported by a child, only drops that process's reference: it never
 * destroys what the creator and others still use. All _free accept NULL.
 *
 * Threads: every function may be called from any thread; locked objects are
 * safe to share between threads and processes. Fork: a child may use all
 * objects it inherited.
 */
#ifndef MPROC_SHM_H
#define MPROC_SHM_H

#include "args.h"
#include "common.h"
#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

/* C element types; each value is the matching Python typecode. */
typedef enum mproc_ctype {
    MPROC_CTYPE_CHAR = 'c', /* char; Python shows it as bytes b'x' */
    MPROC_CTYPE_INT8 = 'b',
    MPROC_CTYPE_UINT8 = 'B',
    MPROC_CTYPE_INT16 = 'h',
    MPROC_CTYPE_UINT16 = 'H',
    MPROC_CTYPE_INT32 = 'i',
    MPROC_CTYPE_UINT32 = 'I',
    MPROC_CTYPE_INT64 = 'q',
    MPROC_CTYPE_UINT64 = 'Q',
    MPROC_CTYPE_FLOAT = 'f',
    MPROC_CTYPE_DOUBLE = 'd',
    /* A struct of the caller's layout (Python's Value(MyStructure)): its
     * size is given per object; it is copied whole, never converted.
     * 'T' as in PEP 3118's struct format. */
    MPROC_CTYPE_STRUCT = 'T'
} mproc_ctype;

/* Size in bytes of one element of type (a typecode or an mproc_ctype), or
 * 0 when type is not one of them (and for MPROC_CTYPE_STRUCT, whose size
 * is each object's own: mproc_value_size, mproc_array_itemsize). */
MPROC_API size_t mproc_ctype_size(int type);

/* Name of a type ("int32", "double", "char", "struct"...), or NULL. Static
 * storage. */
MPROC_API const char *mproc_ctype_name(int type);

/* ---- Value / RawValue ----------------------------------------------- */

typedef struct mproc_value mproc_value;

/*
 * Creates a zero-initialized shared value of the given type: with a
 * process-shared recursive lock (Python's Value) or without (RawValue).
 * Returns 0 and stores the object in *out, or -EINVAL (NULL out, unknown
 * type), -ENOMEM, -EMFILE/-ENFILE (a new heap arena needs an fd).
 * Never blocks beyond the heap's own short lock.
 */
MPROC_API int mproc_value_new(mproc_value **out, int type);
MPROC_API int mproc_value_new_raw(mproc_value **out, int type);

/*
 * A Value with its initial value in one call (Value('i', 5), Value('d',
 * 2.5)): as mproc_value_new, then mproc_value_set_i64 / _set_double, with
 * their conversions and errors (-ERANGE when x does not fit the type,
 * MPROC_ETYPE for a non-integral double into an integer type); nothing is
 * left behind when they fail.
 */
MPROC_API int mproc_value_new_i64(mproc_value **out, int type, int64_t x);
MPROC_API int mproc_value_new_double(mproc_value **out, int type, double x);

/*
 * A Value holding a struct of the caller's layout (Python's
 * Value(MyStructure)): size bytes (sizeof the struct, at least 1), copied
 * from init (NULL: zeroed), with a lock of its own. mproc_value_get / _set
 * copy it whole under the lock; the typed accessors and format return
 * MPROC_ETYPE. Its storage is 64-byte aligned. Returns as mproc_value_new.
 * The struct should hold plain data: pointers in it mean nothing in
 * another process.
 */
MPROC_API int mproc_value_new_struct(mproc_value **out, size_t size,
                                     const void *init);

/*
 * Everything Python's Value(typecode_or_type, value, lock=...) offers, in
 * one call. Zero-initialize and set what you need:
 *   mproc_value_opts o = {.type = 'i', .lock = shared};
 *   mproc_value_new_opts(&v, &o);          // Value('i', 0, lock=shared)
 */
typedef struct mproc_value_opts {
    int type;         /* an mproc_ctype, or MPROC_CTYPE_STRUCT */
    size_t size;      /* MPROC_CTYPE_STRUCT: its size in bytes (>= 1);
                       * otherwise 0 (or the type's own size) */
    const void *init; /* the initial value, size bytes in native form;
                       * NULL: zeroed */
    int raw;          /* nonzero: no lock at all (RawValue) */
    /* The lock to guard it with, instead of one of its own (Python's
     * lock=some_lock): a caller's Lock or RLock, at most one of the two,
     * borrowed (it must outlive the Value), and possibly shared by several
     * Values and Arrays. See "Locks" below. */
    mproc_lock *lock;
    mproc_rlock *rlock;
} mproc_value_opts;

/* Creates a Value as opts says. Returns 0, -EINVAL (NULL out or opts, an
 * unknown type, a size that does not fit the type, raw together with a
 * lock, both lock and rlock, a lock that is not an initialized Lock /
 * RLock), -ENOMEM, -EMFILE/-ENFILE. */
MPROC_API int mproc_value_new_opts(mproc_value **out,
                                   const mproc_value_opts *opts);

/* Drops this process's reference; the creator's free returns the memory
 * to the heap (other processes that still use it must be done with it, as
 * in Python). NULL ok. */
MPROC_API void mproc_value_free(mproc_value *v);

/* The type (an mproc_ctype, MPROC_CTYPE_STRUCT for a struct), or -EINVAL
 * for NULL. */
MPROC_API int mproc_value_type(const mproc_value *v);

/* Size of the value in bytes (a struct's size, or the type's), 0 for
 * NULL. */
MPROC_API size_t mproc_value_size(const mproc_value *v);

/* 1 for Value (has a lock, its own or a caller's), 0 for RawValue, for
 * mproc_value_get_obj's view, or NULL. */
MPROC_API int mproc_value_has_lock(const mproc_value *v);

/*
 * Python's v.get_obj(): the raw object behind a synchronized Value, the
 * same shared memory with no lock (its accessors are the single atomic
 * loads and stores of a RawValue). Owned by v and valid until v is freed;
 * mproc_value_free on it does nothing. It can be passed to children (they
 * get a RawValue). For a RawValue (or the view itself) returns v. NULL for
 * NULL.
 */
MPROC_API mproc_value *mproc_value_get_obj(const mproc_value *v);

/*
 * Typed accessors. A locked value takes its lock for the access (so they
 * nest inside acquire/release); a raw value is read/written with a single
 * atomic access. Conversions, as Python's ctypes allow them:
 *  - i64: integer types and char. set fails with -ERANGE when x does not
 *    fit the type (Python's ctypes would silently wrap).
 *  - u64: integer types and char; negative stored values fail get with
 *    -ERANGE.
 *  - double: get works for every type; set for float/double only, and for
 *    integer types when x is integral and fits.
 * Return 0, -EINVAL (NULL), MPROC_ETYPE (accessor does not fit the type;
 * always for a struct), -ERANGE, and on a caller's lock -EOWNERDEAD /
 * -ENOTRECOVERABLE (see "Locks" below).
 */
MPROC_API int mproc_value_get_i64(mproc_value *v, int64_t *out);
MPROC_API int mproc_value_set_i64(mproc_value *v, int64_t x);
MPROC_API int mproc_value_get_u64(mproc_value *v, uint64_t *out);
MPROC_API int mproc_value_set_u64(mproc_value *v, uint64_t x);
MPROC_API int mproc_value_get_double(mproc_value *v, double *out);
MPROC_API int mproc_value_set_double(mproc_value *v, double x);

/* Copies the value in its native representation (mproc_value_size bytes:
 * a struct whole) to dst / from src, under the lock. Return 0 or -EINVAL,
 * and on a caller's lock -EOWNERDEAD / -ENOTRECOVERABLE. */
MPROC_API int mproc_value_get(mproc_value *v, void *dst);
MPROC_API int mproc_value_set(mproc_value *v, const void *src);

/* The value's storage in shared memory (valid until free). Accesses
 * through it are not locked: hold acquire/release around them. NULL for
 * NULL. */
MPROC_API void *mproc_value_ptr(const mproc_value *v);

/*
 * get_lock(): acquires the value's recursive lock (timeout in seconds, < 0
 * forever, 0 try). Returns 0; -EOWNERDEAD when a process died holding
 * it (the caller now holds it and the value may be half-updated; the lock
 * is usable again); -ETIMEDOUT; -ENOLCK for a RawValue; -EINVAL.
 * release: 0, MPROC_ENOTOWNER when the calling thread does not hold it,
 * -ENOLCK, -EINVAL. Each successful acquire needs one release.
 *
 * Locks. With a caller's lock (mproc_value_opts.lock / .rlock) acquire and
 * release are that lock's own acquire and release, with its rules: a Lock
 * is not recursive (-EDEADLK for a second acquire with timeout < 0), and
 * an owner-dead state is the caller's to clear: -EOWNERDEAD leaves the
 * lock held and not yet consistent (repair, then mproc_lock_consistent or
 * mproc_rlock_consistent); released without that it becomes
 * -ENOTRECOVERABLE for everyone. The accessors (get/set, typed, slices,
 * format) take the caller's lock for the access unless the calling thread
 * already holds it (through acquire on any object sharing it, or the lock
 * taken directly), so
 *   mproc_lock_acquire(shared, -1);  a += 1; b -= 1;  (get/set on each)
 *   mproc_lock_release(shared);
 * works as Python's `with shared:` block. An accessor that finds the
 * caller's lock owner-dead does not do the access, returns -EOWNERDEAD and
 * leaves the lock as it was (not held, still owner-dead), so that whoever
 * repairs the data learns of it at their acquire.
 */
MPROC_API int mproc_value_acquire(mproc_value *v, double timeout);
MPROC_API int mproc_value_release(mproc_value *v);

/*
 * Python's get_lock() as an object: the value's RLock itself (mproc/sync.h),
 * the same lock acquire/release take, for code that wants the mproc_rlock_*
 * functions: its own (in the value's shared memory, valid until free), or
 * the caller's RLock it was made with. Taken through mproc_rlock_acquire, an
 * owner-dead state of its own lock must be cleared with
 * mproc_rlock_consistent (mproc_value_acquire does that itself). NULL for
 * a RawValue, a Value made with a caller's plain Lock (the caller has it;
 * acquire/release take it), or NULL v.
 */
MPROC_API mproc_rlock *mproc_value_get_lock(const mproc_value *v);

/*
 * Writes the value as Python prints it (repr of .value): 3 for ints,
 * 3.140000104904175 for float 3.14 (shortest round-trip repr of the
 * double), b'a' for char. Returns the length the full text needs
 * (snprintf-style: output is truncated but NUL-terminated when cap is too
 * small) or -EINVAL.
 */
MPROC_API int mproc_value_format(mproc_value *v, char *buf, size_t cap);

/* ---- Array / RawArray ----------------------------------------------- */

typedef struct mproc_array mproc_array;

/*
 * Creates a shared array of n elements, with a lock (Array) or without
 * (RawArray). init, when not NULL, holds n elements in their native type
 * (for example int32_t[n] for MPROC_CTYPE_INT32) to copy in; otherwise the
 * array is zeroed. n may be 0. Returns 0, -EINVAL, -ENOMEM (also when the
 * size overflows), -EMFILE/-ENFILE.
 */
MPROC_API int mproc_array_new(mproc_array **out, int type, size_t n,
                              const void *init);
MPROC_API int mproc_array_new_raw(mproc_array **out, int type, size_t n,
                                  const void *init);

/*
 * Python's Array(typecode_or_type, size_or_initializer, lock=...): n
 * elements of type, or of a struct of size bytes (MPROC_CTYPE_STRUCT), with
 * a lock of its own, none (raw), or a caller's Lock / RLock, as
 * mproc_value_opts. init holds n elements (n * size bytes for structs).
 * Struct elements are copied with the slices; the typed accessors and
 * format return MPROC_ETYPE for them.
 */
typedef struct mproc_array_opts {
    int type;
    size_t size; /* MPROC_CTYPE_STRUCT: bytes per element; else 0 */
    size_t n;    /* number of elements (0 allowed) */
    const void *init;
    int raw;
    mproc_lock *lock;
    mproc_rlock *rlock;
} mproc_array_opts;

/* Returns 0 or the errors of mproc_value_new_opts. */
MPROC_API int mproc_array_new_opts(mproc_array **out,
                                   const mproc_array_opts *opts);

/* As mproc_value_free. NULL ok. */
MPROC_API void mproc_array_free(mproc_array *a);

/* Type, number of elements, bytes per element, 1 if it has a lock (0 for
 * NULL). */
MPROC_API int mproc_array_type(const mproc_array *a);
MPROC_API size_t mproc_array_len(const mproc_array *a);
MPROC_API size_t mproc_array_itemsize(const mproc_array *a);
MPROC_API int mproc_array_has_lock(const mproc_array *a);

/* get_obj(): the unlocked view of the same memory, as mproc_value_get_obj.
 */
MPROC_API mproc_array *mproc_array_get_obj(const mproc_array *a);

/* Element accessors: as the Value ones, plus -ERANGE when i >= len. */
MPROC_API int mproc_array_get_i64(mproc_array *a, size_t i, int64_t *out);
MPROC_API int mproc_array_set_i64(mproc_array *a, size_t i, int64_t x);
MPROC_API int mproc_array_get_u64(mproc_array *a, size_t i, uint64_t *out);
MPROC_API int mproc_array_set_u64(mproc_array *a, size_t i, uint64_t x);
MPROC_API int mproc_array_get_double(mproc_array *a, size_t i, double *out);
MPROC_API int mproc_array_set_double(mproc_array *a, size_t i, double x);

/*
 * Slices, as a[start:stop] and a[start:stop] = src: copy elements
 * [start, stop) in their native type to dst / from src, under the lock
 * held once for the whole range (so readers see all or none of a
 * concurrent set_slice). Returns the number of elements copied,
 * -ERANGE unless start <= stop <= len, -EINVAL (NULL a, or NULL
 * buffer with a non-empty range).
 */
MPROC_API int64_t mproc_array_get_slice(mproc_array *a, size_t start,
                                        size_t stop, void *dst);
MPROC_API int64_t mproc_array_set_slice(mproc_array *a, size_t start,
                                        size_t stop, const void *src);

/* The array's storage (valid until free); not locked, as
 * mproc_value_ptr. */
MPROC_API void *mproc_array_ptr(const mproc_array *a);

/* As mproc_value_acquire / mproc_value_release / mproc_value_get_lock. */
MPROC_API int mproc_array_acquire(mproc_array *a, double timeout);
MPROC_API int mproc_array_release(mproc_array *a);
MPROC_API mproc_rlock *mproc_array_get_lock(const mproc_array *a);

/*
 * Writes a[start:stop] as Python prints it: "[0, 1, 8, 27, 64]", floats in
 * repr form, a char array as b'...'. Takes the lock once. Returns the
 * length the full text needs (snprintf-style), -ERANGE, -EINVAL.
 */
MPROC_API int mproc_array_format(mproc_array *a, size_t start, size_t stop,
                                 char *buf, size_t cap);

/* ---- SharedMemory ---------------------------------------------------- */

typedef struct mproc_shm mproc_shm;

/* Flags for create/attach. */
#define MPROC_SHM_NOTRACK  0x1 /* create: never unlinked by the tracker */
#define MPROC_SHM_READONLY 0x2 /* attach: map read-only */
#define MPROC_SHM_TRACK    0x4 /* attach: this tree's tracker cleans it up */

/* Longest segment name (without the leading '/'). */
#define MPROC_SHM_NAME_MAX 255

/*
 * Creates a named segment of size bytes (zero-filled), mode 0600, and maps
 * it. name: "foo" or "/foo" (the name is "foo" either way; it may not
 * contain any other '/'); NULL generates a free name "psm_" + 10 hex digits,
 * as CPython does. Unless MPROC_SHM_NOTRACK, the segment is registered with
 * this process tree's tracker (started on first use), which unlinks it if
 * the program never does, once the tree has exited and nothing maps it.
 * The memory is reserved at creation: a full /dev/shm is -ENOSPC here,
 * never a SIGBUS later, and a size over RLIMIT_FSIZE is -EFBIG. The name
 * appears only once the tracker knows it (the segment is made unnamed and
 * linked into place), so a creator killed at any instant leaks nothing.
 * Returns 0 and stores the object, or -EINVAL (NULL out, size 0, bad name or
 * flags), -ENAMETOOLONG, -EEXIST (name taken), -ENOMEM, -ENOSPC, -EFBIG,
 * -EMFILE, -EACCES, other -errno. On failure nothing is left.
 */
MPROC_API int mproc_shm_create(mproc_shm **out, const char *name, size_t size,
                               int flags);

/*
 * Attaches to an existing named segment; its size is the segment's size.
 * flags: MPROC_SHM_READONLY and/or MPROC_SHM_TRACK. By default attaching
 * registers nothing (the tracker of its creator sees the mapping and
 * leaves the segment alone while it exists); with MPROC_SHM_TRACK (Python
 * 3.13's track=True) this tree's tracker takes the segment on: once the
 * tree has exited and nothing maps it, it is unlinked. Returns 0, -EINVAL,
 * -ENAMETOOLONG, -ENOENT, -EACCES, -EMFILE, -ENOMEM, or -EINVAL for an
 * empty segment.
 */
MPROC_API int mproc_shm_attach(mproc_shm **out, const char *name, int flags);

/*
 * Creates an anonymous segment (memfd, sealed against resizing): no name,
 * nothing to unlink or track; it lives while any process maps it or holds
 * its fd. Children get it as an argument. Returns 0, -EINVAL (size 0),
 * -ENOMEM, -EMFILE.
 */
MPROC_API int mproc_shm_new_anonymous(mproc_shm **out, size_t size);

/* Name without the leading '/' (NULL for anonymous or NULL s). Valid until
 * free. */
MPROC_API const char *mproc_shm_name(const mproc_shm *s);

/* Size in bytes (0 for NULL). */
MPROC_API size_t mproc_shm_size(const mproc_shm *s);

/* The mapping (NULL after close or for NULL). */
MPROC_API void *mproc_shm_buf(const mproc_shm *s);

/* The segment's fd, owned by s (-EBADF after close, -EINVAL for NULL). */
MPROC_API int mproc_shm_fd(const mproc_shm *s);

/*
 * Python's close(): unmaps the segment and closes its fd in this process;
 * the name and the segment stay (mproc_shm_unlink still works). Pointers
 * into buf become invalid. Returns 0 (idempotent) or -EINVAL.
 */
MPROC_API int mproc_shm_close(mproc_shm *s);

/*
 * Removes the name (shm_unlink) and tells the tracker the segment no
 * longer needs cleaning up. Processes that have it mapped keep using it;
 * the memory goes with the last mapping. Any process may unlink. Returns 0,
 * -ENOENT (already unlinked, by anyone), -EINVAL (anonymous segment, NULL),
 * -EACCES.
 */
MPROC_API int mproc_shm_unlink(mproc_shm *s);

/* Unlinks a segment by name (shm_unlink plus tracker bookkeeping). Returns
 * 0, -EINVAL, -ENAMETOOLONG, -ENOENT, -EACCES. */
MPROC_API int mproc_shm_unlink_name(const char *name);

/* Closes (see mproc_shm_close) and frees the object; never unlinks. NULL
 * ok. */
MPROC_API void mproc_shm_free(mproc_shm *s);

/* Pid of the tracker this process talks to (started by this process or an
 * ancestor it was forked from), 0 when there is none yet. */
MPROC_API pid_t mproc_shm_tracker_pid(void);

/* ---- passing to children --------------------------------------------- */

MPROC_API extern const mproc_kind mproc_value_kind;
MPROC_API extern const mproc_kind mproc_array_kind;
MPROC_API extern const mproc_kind mproc_shm_kind;

/* mproc_args_add_object / mproc_args_object with the kinds above: return 0,
 * -EINVAL, -ENOMEM / the object, or NULL when argument i is not one. */
MPROC_API int mproc_args_add_value(mproc_args *a, mproc_value *v);
MPROC_API int mproc_args_add_array(mproc_args *a, mproc_array *arr);
MPROC_API int mproc_args_add_shm(mproc_args *a, mproc_shm *s);
MPROC_API mproc_value *mproc_args_value(const mproc_args *a, size_t i);
MPROC_API mproc_array *mproc_args_array(const mproc_args *a, size_t i);
MPROC_API mproc_shm *mproc_args_shm(const mproc_args *a, size_t i);

#ifndef MPROC_NO_DEPRECATED
/* Former names (docs/style.md), kept as aliases for now; define
 * MPROC_NO_DEPRECATED to check that a program no longer uses them. */
#define mproc_rawvalue_new  mproc_value_new_raw
#define mproc_rawarray_new  mproc_array_new_raw
#define mproc_shm_anonymous mproc_shm_new_anonymous
#endif

#ifdef __cplusplus
}
#endif

#endif
