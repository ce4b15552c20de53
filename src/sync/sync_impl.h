/*
 * sync/sync_impl.h - internals shared by the sync module's files: the layouts
 * of the shared states, thread identity tokens, the robust mutex, and the table
 * of mappings this process made for sync objects (sync.c).
 */
#ifndef MPROC__SYNC_IMPL_H
#define MPROC__SYNC_IMPL_H

#include "core/core.h"
#include "mproc/sync.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Type tags at offset 0 of every state; zeroed by destroy. */
#define MPROC__SYNC_LOCK    0x6b636f4cu /* "Lock" */
#define MPROC__SYNC_RLOCK   0x6b634c52u /* "RLck" */
#define MPROC__SYNC_SEM     0x216d6553u /* "Sem!" */
#define MPROC__SYNC_COND    0x646e6f43u /* "Cond" */
#define MPROC__SYNC_EVENT   0x746e7645u /* "Evnt" */
#define MPROC__SYNC_BARRIER 0x72726142u /* "Barr" */

/* The robust, owner-tracked mutex under Lock, RLock and a Condition. */
typedef struct mproc__mtx {
    uint64_t owner; /* token of the holding thread, 0 when free */
    int32_t pid;    /* pid of the holder's process (for free) */
    uint32_t count; /* recursion depth (1 for a held Lock) */
    /* The gate contended acquirers sleep on first (see lock.c). */
    uint32_t nsleep;   /* acquirers sleeping on seq (may overcount) */
    uint32_t seq;      /* futex word; bit 0: a wake-up is pending */
    uint32_t deaths;   /* holders that died holding it (under the lock) */
    pthread_mutex_t m; /* PROCESS_SHARED, ROBUST, ERRORCHECK */
} mproc__mtx;

/* Consistency of the data a robust mutex protects. glibc's own
 * not-recoverable state is not used: its trylock leaves such a mutex
 * locked (glibc 2.36), so mproc makes the pthread mutex consistent at once
 * and keeps the user-visible state here. */
enum {
    MPROC__MTX_OK = 0,
    MPROC__MTX_INCONSISTENT = 1,  /* owner died; not yet consistent() */
    MPROC__MTX_NOTRECOVERABLE = 2 /* released while inconsistent */
};

typedef struct mproc__lock_state {
    uint32_t magic;
    uint32_t state; /* MPROC__MTX_* */
    mproc__mtx mtx;
} mproc__lock_state;

typedef struct mproc__sem_state {
    uint32_t magic;
    uint32_t bounded;
    uint32_t value;    /* futex word: the count */
    uint32_t max;      /* bound (MPROC_SEM_VALUE_MAX if unbounded) */
    uint32_t nwaiters; /* sleepers (may overcount after a death) */
} mproc__sem_state;

typedef struct mproc__event_state {
    uint32_t magic;
    uint32_t flags;
    uint32_t word; /* futex word: 0 clear, 1 set, 2 clear with sleepers */
} mproc__event_state;

typedef struct mproc__cond_state {
    uint32_t magic;
    uint32_t recursive;
    mproc__mtx mtx;
    uint32_t state; /* MPROC__MTX_* of mtx */
    /* Waiters form groups. New waiters join group g2; notify grants
     * tokens to g1's waiters and, when g1 has none left, retires it (all
     * its members count as woken) and makes g2 the new g1. Group g sleeps
     * on seq[g & 1]; g1 and g2 always differ in parity. All fields below
     * change only with the lock held. */
    uint32_t g1, g2;
    uint32_t g1_rem;  /* g1 waiters not yet granted */
    uint32_t g1_tok;  /* grants to g1 not yet claimed */
    uint32_t g2_size; /* waiters in g2 */
    uint32_t seq[2];  /* futex words, bumped by each grant */
    /* The lock's mtx.deaths this condition has caught up with: a holder
     * that died may have been in the middle of changing the counts. */
    uint32_t deaths;
    /* A condition on a caller's Lock or RLock (Python's Condition(lock)):
     * ext is that lock's magic (0: the condition's own mtx). The lock is
     * found at lock_ptr by processes of the address-space layout `layout`
     * (its creator and their fork children), elsewhere through the
     * process's links (an import) or its file identity (a mapping of the
     * same file: lock_dev, lock_ino, lock_off; all 0 when it lives in
     * private memory). */
    uint32_t ext;
    uint64_t layout;
    uint64_t lock_ptr;
    uint64_t lock_dev, lock_ino, lock_off;
} mproc__cond_state;

typedef struct mproc__barrier_state {
    uint32_t magic;
    uint32_t parties;
    /* word: low 32 bits (the futex word) gen << 2 | ACTION | BROKEN;
     * high 32 bits: history, bit k = generation gen-1-k ended broken. */
    uint64_t word;
    uint32_t count;     /* arrivals in the current generation */
    uint32_t break_req; /* (gen << 1 | 1): a waiter timed out in action */
    double timeout;     /* default for waits with timeout < 0 */
    mproc_barrier_action action;
    uint64_t layout;    /* layout id of the process that set action */
    mproc__coderef ref; /* action, for processes of another layout */
    pthread_mutex_t m;  /* PROCESS_SHARED, ROBUST, ERRORCHECK */
} mproc__barrier_state;

_Static_assert(sizeof(mproc__lock_state) <= MPROC_LOCK_SIZE, "lock size");
_Static_assert(sizeof(mproc__sem_state) <= MPROC_SEM_SIZE, "sem size");
_Static_assert(sizeof(mproc__event_state) <= MPROC_EVENT_SIZE, "event size");
_Static_assert(sizeof(mproc__cond_state) <= MPROC_COND_SIZE, "cond size");
_Static_assert(sizeof(mproc__barrier_state) <= MPROC_BARRIER_SIZE,
               "barrier size");

/* ---- identity (sync.c) ------------------------------------------------ */

/* A 64-bit token unique to the calling thread of this process (never
 * reused, not inherited by fork children), and that process's pid. */
typedef struct mproc__sync_self {
    uint64_t token;
    int32_t pid;
} mproc__sync_self;

/* Behind mproc__sync_me (sync.c): this process's id (0 in a fork child
 * until it draws one) and the calling thread's cached token with the id
 * it was drawn under. */
struct mproc__sync_proc {
    uint64_t id;
    int32_t pid;
};
struct mproc__sync_tls {
    uint64_t proc;
    mproc__sync_self self;
};
extern struct mproc__sync_proc *mproc__sync_g_proc;
extern __thread struct mproc__sync_tls mproc__sync_t_me
    __attribute__((tls_model("initial-exec")));
const mproc__sync_self *mproc__sync_me_slow(void);

/* The caller's token and pid; inline, as every acquire and release of a
 * lock asks for it. */
static inline const mproc__sync_self *mproc__sync_me(void)
{
    uint64_t id = __atomic_load_n(&mproc__sync_g_proc->id, __ATOMIC_RELAXED);
    if (__builtin_expect(id != 0 && id == mproc__sync_t_me.proc, 1))
        return &mproc__sync_t_me.self;
    return mproc__sync_me_slow();
}

/* Random id of this address-space layout: the same in fork children,
 * different after exec (spawn, forkserver). */
uint64_t mproc__sync_layout(void);

/* Code references (sync.c). write: 0 or MPROC_ERESOLVE. read: 0 and the
 * address in this process, or MPROC_ERESOLVE. */

/* ---- robust mutex (lock.c) -------------------------------------------- */

int mproc__mtx_init(mproc__mtx *m);
/* 0, -EOWNERDEAD, -ETIMEDOUT, -ENOTRECOVERABLE, -EDEADLK,
 * -EOVERFLOW. st is the mutex's MPROC__MTX_* word. */
int mproc__mtx_acquire(mproc__mtx *m, uint32_t *st, bool recursive,
                       double timeout);
int mproc__mtx_release(mproc__mtx *m, uint32_t *st);
bool mproc__mtx_owned(const mproc__mtx *m);
/* Whether some thread of this process holds it. */
bool mproc__mtx_held_here(const mproc__mtx *m);

/* The caller's lock a Condition is built on, as this process maps it
 * (NULL for a condition with its own lock, or when this process cannot
 * find it). */
void *mproc__cond_ext_lock(const void *cond);

/* Releases a Lock or RLock (l) the calling thread took with -EOWNERDEAD
 * without making it unrecoverable: it stays in the owner-dead state and
 * the next acquirer gets -EOWNERDEAD in turn. For callers that cannot
 * repair what the lock protects (a Value's accessors on a caller's lock).
 * Returns 0, MPROC_ENOTOWNER, -EINVAL. */
int mproc__lock_hand_on(void *l);

/* ---- mappings of _new and imported objects (sync.c) -------------------- */

/* Creates a memfd mapping for one state of size bytes; returns the zeroed
 * state in *obj, registered in this process's table. */
int mproc__sync_map_new(const char *name, size_t size, void **obj);
/* Forgets obj's mapping: closes its fd and unmaps it unless keep_mapped.
 * Returns false when obj is not in the table (nothing done). */
bool mproc__sync_map_free(void *obj, bool keep_mapped);
/* Export: the fd of the mapping holding obj (from the table, or found
 * through /proc/self/maps and the open fds) plus magic and offset. */
int mproc__sync_export(const void *obj, size_t size, mproc_export *ex);
/* Import: maps the state described, checks its magic. An object this
 * process already maps through the table (imported before, or its own) is
 * not mapped again: the same pointer comes back, counted, and each import
 * is undone by one mproc__sync_map_free. */
int mproc__sync_import(mproc_import *im, uint32_t magic, size_t size,
                       void **out);

/* The file behind the shared mapping holding [p, p+size): device, inode
 * and the offset of p. Returns 0 or -EINVAL (private memory). */
int mproc__sync_identify(const void *p, size_t size, uint64_t *dev,
                         uint64_t *ino, uint64_t *off);
/* Where this process maps offset off of that file (size bytes), or NULL. */
void *mproc__sync_locate(uint64_t dev, uint64_t ino, uint64_t off, size_t size);

/* ---- links: a condition's lock in this process (sync.c) -------------------
 * For processes of another layout than a condition's creator: cond -> the
 * lock as this process maps it, with the lock's file identity at the time
 * (a link whose identity no longer matches the condition's is not used).
 * An import adds an owned link (the lock imported with the condition);
 * a lookup through the file identity adds a borrowed one. */
int mproc__sync_link_add(const void *cond, void *lock, bool owned, uint64_t dev,
                         uint64_t ino, uint64_t off);
void *mproc__sync_link_find(const void *cond, uint64_t dev, uint64_t ino,
                            uint64_t off);
/* owned: drops one owned link of cond and returns its lock, for the caller
 * to free (NULL when there is none). !owned: drops every borrowed link of
 * cond; returns NULL. */
void *mproc__sync_link_drop(const void *cond, bool owned);

#endif
