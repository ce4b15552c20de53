/*
 * core/core.h - the layer above the kernel's: what every module builds
 * with and no user sees. Growable byte buffers and arrays and a bounds-
 * checked reader (buf.c); code references that survive exec (resolve.c);
 * argument lists on the wire (args.c); the identity of the current process
 * and the library lock (self.c); logging internals (log.c).
 *
 * It looks down only at os/os.h. Everything is mproc__-prefixed and hidden.
 */
#ifndef MPROC__CORE_H
#define MPROC__CORE_H

#include "mproc.h"
#include "os/os.h"

#define MPROC__NAME_MAX    128
#define MPROC__AUTHKEY_MAX 256

/* ---- growable byte buffer, reader, growable array (buf.c) ------------- */

/* Appends never fail: on out-of-memory the buffer stops growing and sets
 * oom, which the owner checks once at the end. Zero-initialize to start. */
typedef struct mproc__buf {
    unsigned char *p;
    size_t len, cap;
    bool oom;
} mproc__buf;

void mproc__buf_put(mproc__buf *b, const void *p, size_t n);
void mproc__buf_u32(mproc__buf *b, uint32_t v);
void mproc__buf_u64(mproc__buf *b, uint64_t v);
void mproc__buf_str(mproc__buf *b, const char *s);
/* Frees the bytes and zeroes *b (reusable). */
void mproc__buf_free(mproc__buf *b);

/* Reads bytes from a peer or a file: reading past the end sets bad and
 * yields zeroes, so a parser checks bad once after a run of reads. */
typedef struct mproc__reader {
    const unsigned char *p;
    size_t len, pos;
    bool bad;
} mproc__reader;

bool mproc__rd_get(mproc__reader *r, void *p, size_t n);
uint32_t mproc__rd_u32(mproc__reader *r);
uint64_t mproc__rd_u64(mproc__reader *r);
/* Copies a string of at most cap-1 bytes into out (NUL-terminated). */
bool mproc__rd_str(mproc__reader *r, char *out, size_t cap);

/*
 * Makes room for at least need elements of elem bytes in the array whose
 * pointer is at arrp (a T ** passed as void *), of capacity *cap: doubles,
 * starting at 8. Returns 0, or -ENOMEM (or -EINVAL for elem 0) leaving
 * array and *cap as they were.
 * Use it through MPROC__GROW(array, cap, need).
 */
int mproc__grow(void *arrp, size_t *cap, size_t need, size_t elem);
#define MPROC__GROW(arr, cap, need)                                            \
    mproc__grow(&(arr), &(cap), (need), sizeof(__typeof__(*(arr))))

/* ---- code references that survive exec (resolve.c) -------------------- */

/* Writes where addr lives (object file, identity, offset) into b. Returns
 * 0 or MPROC_ERESOLVE when addr is in no loaded object file. */
int mproc__ref_write(mproc__buf *b, const void *addr);
/* Reads a reference and finds the address in this process (loading the
 * object file if needed). Returns 0 or MPROC_ERESOLVE / MPROC_EPROTO. */
int mproc__ref_read(mproc__reader *r, void **addr);
/* Caches the identity of every loaded object file now (fork server). */
void mproc__ref_warm(void);

/* The same as a fixed-size value, for references kept in shared memory
 * (a Barrier's action) or in an environment variable (a helper process's
 * entry): the object file's device and inode and the offset from its load
 * base. Found only among objects already loaded. */
typedef struct mproc__coderef {
    uint64_t dev, ino, off;
} mproc__coderef;

int mproc__coderef_make(const void *addr, mproc__coderef *ref);
int mproc__coderef_find(const mproc__coderef *ref, void **addr);

/* ---- argument lists (args.c) ------------------------------------------ */

/* Serializes args: values inline, objects through their kind's export_fn.
 * fds collected in fds[*nfds] (borrowed from the objects). */
int mproc__args_export(const mproc_args *a, mproc__buf *b, int *fds,
                       size_t *nfds, size_t maxfds);
/* Rebuilds args in a child; fds[] are owned by the child (consumed: each
 * is either taken by an object or closed). On failure all are closed. */
int mproc__args_import(mproc__reader *r, int *fds, size_t nfds,
                       mproc_args **out);
/* Walks a serialized list as import would, resolving object kinds but
 * importing nothing: 0 when import can be expected to work. */
int mproc__args_validate(mproc__reader *r, size_t nfds);
/* Deep copy (objects stay borrowed). */
mproc_args *mproc__args_copy(const mproc_args *a);
/* Releases imported objects and the list. */
void mproc__args_free_imported(mproc_args *a);

/* ---- the current process (self.c) ------------------------------------- */

typedef struct mproc__self {
    char name[MPROC__NAME_MAX];
    char identity[MPROC__NAME_MAX]; /* "" in main, "1", "1:2"... */
    unsigned counter;               /* children created so far */
    unsigned char authkey[MPROC__AUTHKEY_MAX];
    size_t authkey_len;
    int daemon;
    int is_child;
    pid_t pid;
} mproc__self;

extern mproc__self mproc__me;
/* Library lock around process bookkeeping; taken around fork (a fork child
 * gets it fresh). */
void mproc__lock(void);
void mproc__unlock(void);
/* Makes sure the authkey and names are initialized. Thread safe. */
void mproc__self_init(void);
/*
 * Registers the library lock's fork handlers (once): a module whose own
 * prepare handler takes a lock calls this before its pthread_atfork. Then
 * every fork takes the library lock last, after the modules' locks, the
 * order in which the rest of the code nests them (a module holding its
 * lock calls into core, never the other way); taken first, it would
 * deadlock against a thread holding a module's lock. Thread safe.
 */
void mproc__atfork_register(void);

/*
 * Work that mproc_shutdown() does for a module above the process layer
 * (stop the fork server, the shared memory tracker): registered once by
 * that module when it first starts something, run newest first. At most 8
 * hooks; registering the same function twice is a no-op. Returns 0 or
 * -ENOSPC. Thread safe.
 */
int mproc__at_shutdown(void (*fn)(void));
/* Runs the registered hooks (mproc_shutdown). */
void mproc__run_shutdown_hooks(void);

/* ---- finalizers (finalize.c) ------------------------------------------ */

/* Runs (and unregisters) every finalizer of priority >= min_priority,
 * highest first; INT_MIN runs them all. mproc_shutdown's. */
void mproc__run_finalizers(int min_priority);
/* A new child: its parent's finalizers are not its own. */
void mproc__forget_finalizers(void);

/* ---- logging internals (log.c) ---------------------------------------- */

int mproc__log_fd(void);
/* Re-installs inherited log settings in a spawn/forkserver child. */
void mproc__log_restore(int fd, int level);

#endif
