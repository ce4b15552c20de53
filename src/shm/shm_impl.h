/*
 * shm/shm_impl.h - internals of the shared memory module. Its files:
 *   heap.c     the shared heap Values and Arrays live in, and their lock
 *   ctype.c    element types, conversions and Python-style reprs
 *   value.c    Value and Array
 *   segment.c  SharedMemory (named segments and anonymous memfds)
 *   tracker.c  the helper process that unlinks leaked segments
 */
#ifndef MPROC__SHM_IMPL_H
#define MPROC__SHM_IMPL_H

#include "process/process.h"
#include "mproc/shm.h"
#include "mproc/sync.h"

#include <stdbool.h>
#include <sys/types.h>

/* ---- shared heap (heap.c) ---------------------------------------------
 *
 * Arenas are memfd mappings shared by every process that maps them; their
 * allocation bitmap and its robust process-shared mutex live inside them,
 * so any process may allocate from or free into an arena it has mapped.
 * Each process keeps its own list of the arenas it maps, with a count of
 * the blocks it references in each; an arena is unmapped and its fd closed
 * when that count drops to zero.
 */
typedef struct mproc__arena mproc__arena;

typedef struct mproc__block {
    mproc__arena *arena;
    size_t off; /* offset of the block in the arena */
    size_t len; /* bytes asked for */
    unsigned char *p;
} mproc__block;

/* Allocates n zeroed bytes (64-byte aligned). Returns 0, -ENOMEM,
 * -EMFILE... */
int mproc__heap_alloc(size_t n, mproc__block *b);
/* Returns the block's memory to its arena (creator only) and drops the
 * reference. */
void mproc__heap_free(mproc__block *b);
/* Drops this process's reference without freeing the memory. */
void mproc__heap_release(mproc__block *b);
/* Describes b for a child: the arena's fd plus offset and length. */
int mproc__heap_export(const mproc__block *b, mproc_export *ex);
/* Maps (or finds already mapped) the arena and rebuilds the block. */
int mproc__heap_import(mproc_import *im, mproc__block *b);

/* ---- lock seam (heap.c) -----------------------------------------------
 *
 * The lock a Value or Array carries: recursive, process-shared, robust
 * (the sync module's RLock). Lives in caller storage of MPROC__VLOCK_SIZE
 * bytes at the start of the block, whole cache lines, so that the data
 * that follows sits on a line of its own.
 */
#define MPROC__VLOCK_SIZE ((sizeof(mproc_rlock) + 63) / 64 * 64)
int mproc__vlock_init(void *storage);
/* 0, -EOWNERDEAD (held, made consistent), -ETIMEDOUT. */
int mproc__vlock_acquire(void *storage, double timeout);
/* 0 or MPROC_ENOTOWNER. */
int mproc__vlock_release(void *storage);

/* ---- element types (ctype.c) ------------------------------------------- */

/* One element of a Value or Array in native form. */
typedef union elem {
    int8_t i8;
    uint8_t u8;
    int16_t i16;
    uint16_t u16;
    int32_t i32;
    uint32_t u32;
    int64_t i64;
    uint64_t u64;
    float f;
    double d;
    unsigned char raw[8];
} elem;

/* A growing string for Python-style reprs (formatting never fails: a
 * full buffer truncates). */
typedef struct sbuf {
    char *p;
    size_t cap, len;
} sbuf;

int shm__norm_type(int t);
bool shm__is_float(int t);
void shm__int_range(int t, int64_t *lo, uint64_t *hi);
void shm__elem_int(int t, const elem *e, bool *neg, uint64_t *mag, int64_t *sv);
void shm__elem_from_int(int t, elem *e, int64_t s, uint64_t u, bool use_u);
double shm__elem_double(int t, const elem *e);
void shm__sb_str(sbuf *b, const char *s);
void shm__sb_bytes(sbuf *b, const unsigned char *p, size_t n);
void shm__sb_elem(sbuf *b, int t, const elem *e);

/* ---- tracker (tracker.c) ---------------------------------------------- */

/* Registers a named segment created by this process (dev/ino identify it so
 * a later segment of the same name is never removed). Starts the tracker on
 * first use. Returns 0 or -errno. */
int mproc__tracker_register(const char *name, dev_t dev, ino_t ino);
/* Tells the tracker a segment was unlinked or never got its name: the
 * entry for name and dev/ino, or with ino 0 every entry for name. No-op
 * without a tracker. */
void mproc__tracker_unregister(const char *name, dev_t dev, ino_t ino);
/* Pid of the tracker this process talks to, 0 if none. */
pid_t mproc__tracker_pid(void);

/* Checks a segment name; returns 0 and the name without its leading '/'
 * in out (MPROC_SHM_NAME_MAX + 1 bytes), or -EINVAL / -ENAMETOOLONG. */
int mproc__shm_check_name(const char *name, char *out);

#endif
