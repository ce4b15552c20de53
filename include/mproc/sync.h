/*
 * mproc/sync.h - process-shared synchronization, as multiprocessing's Lock,
 * RLock, Semaphore, BoundedSemaphore, Condition, Event and Barrier.
 *
 *   mproc_lock *lock;
 *   mproc_lock_new(&lock);                  // its own shared mapping
 *   ... pass it to children: mproc_args_add_lock(args, lock) ...
 *   if (mproc_lock_acquire(lock, -1) >= 0) { ...; mproc_lock_release(lock); }
 *   mproc_lock_free(lock);
 *
 * Where the objects live. Every primitive is plain shared state of a fixed
 * size (the mproc_X types below). Two ways to get one:
 *  - mproc_X_new / mproc_X_free: the object gets its own MAP_SHARED memfd
 *    mapping; it can be passed to children under every start method.
 *  - mproc_X_init / mproc_X_destroy on storage you provide, which must be
 *    shared memory (a struct in a mproc Value/SharedMemory/heap block, your
 *    own MAP_SHARED mapping) and suitably aligned (8 bytes). Fork children
 *    see it wherever it is shared; to pass such an object to spawn and
 *    forkserver children its mapping must be backed by a file this process
 *    still holds open (memfd, /dev/shm): the export finds that fd. Objects
 *    in private memory (malloc, the stack) are not shared at all.
 *
 * Passing to children. Each type is a shareable object (mproc_X_kind, see
 * mproc/args.h); mproc_args_add_X / mproc_args_X are shorthands. A child
 * started by spawn or forkserver maps the same pages again; the target gets
 * a pointer it must not free (the library does).
 *
 * Blocking and timeouts. Blocking is done with futexes on the shared words
 * (process-shared, never FUTEX_PRIVATE). Every wait takes a timeout in
 * seconds: negative waits forever, 0 polls (a non-blocking try), otherwise
 * an absolute CLOCK_MONOTONIC deadline is computed once. A wait that does
 * not succeed in time returns -ETIMEDOUT (also for a failed try).
 *
 * Owner death (robust locks). Lock, RLock and a Condition's lock are owned
 * by the acquiring thread. If the owner dies (its process is killed, or the
 * thread exits) while holding one, the next acquirer gets the lock together
 * with -EOWNERDEAD; it may repair the protected data and call
 * mproc_X_consistent(), after which the lock is normal again. If it releases
 * without doing so, the lock becomes unusable: every later acquire returns
 * -ENOTRECOVERABLE (as POSIX robust mutexes; built on them).
 * Semaphores have no owner (as in Python): units held by a dead process are
 * lost; mproc_sem_reset() restores a count. See docs/sync.md for the
 * death semantics of Condition, Event and Barrier.
 *
 * Differences from Python, on purpose: a Lock may only be released by the
 * thread that acquired it (MPROC_ENOTOWNER otherwise), and re-acquiring a
 * Lock you hold with an infinite timeout returns -EDEADLK instead of
 * hanging forever. Releasing a BoundedSemaphore past its initial value
 * returns MPROC_EBOUND (Python's ValueError).
 *
 * Threads: every function may be called from any thread; ownership of
 * locks is per thread. Fork: a forked child never owns locks its parent
 * holds (the parent's ownership is not inherited); Free in a child only
 * unmaps the child's view, shared state is never destroyed for others.
 * Functions are not async-signal-safe.
 *
 * Errors common to all functions: -EINVAL for a NULL pointer or storage
 * that does not hold an initialized object of the right type.
 */
#ifndef MPROC_SYNC_H
#define MPROC_SYNC_H

#include "args.h"
#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sizes of the shared states (bytes; stable ABI for a given platform). */
#define MPROC_LOCK_SIZE    128
#define MPROC_SEM_SIZE     32
#define MPROC_COND_SIZE    192
#define MPROC_EVENT_SIZE   16
#define MPROC_BARRIER_SIZE 128

/* Shared-state storage. Treat as opaque; copying one is meaningless. */
typedef struct mproc_lock {
    uint64_t opaque_[MPROC_LOCK_SIZE / 8];
} mproc_lock;
typedef struct mproc_rlock {
    uint64_t opaque_[MPROC_LOCK_SIZE / 8];
} mproc_rlock;
typedef struct mproc_sem {
    uint64_t opaque_[MPROC_SEM_SIZE / 8];
} mproc_sem;
typedef struct mproc_cond {
    uint64_t opaque_[MPROC_COND_SIZE / 8];
} mproc_cond;
typedef struct mproc_event {
    uint64_t opaque_[MPROC_EVENT_SIZE / 8];
} mproc_event;
typedef struct mproc_barrier {
    uint64_t opaque_[MPROC_BARRIER_SIZE / 8];
} mproc_barrier;

/* Shareable kinds (mproc/args.h). A kind only accepts its own type. */
MPROC_API extern const mproc_kind mproc_lock_kind;
MPROC_API extern const mproc_kind mproc_rlock_kind;
MPROC_API extern const mproc_kind mproc_sem_kind; /* both semaphores */
MPROC_API extern const mproc_kind mproc_cond_kind;
MPROC_API extern const mproc_kind mproc_event_kind;
MPROC_API extern const mproc_kind mproc_barrier_kind;

/* ==== Lock ============================================================= */

/*
 * Initializes a Lock in caller storage (unlocked). Returns 0, -EINVAL, or
 * -errno from pthread (-ENOMEM, -EAGAIN). Do not init a lock in use.
 */
MPROC_API int mproc_lock_init(mproc_lock *l);

/*
 * Destroys a lock initialized with mproc_lock_init. A lock the calling
 * thread holds is released first. Returns 0, -EBUSY (another thread or
 * process holds it: nothing is changed), -EINVAL. Waiters must be gone.
 */
MPROC_API int mproc_lock_destroy(mproc_lock *l);

/*
 * Creates an unlocked Lock in its own shared mapping (one memfd). Stores it
 * in *out. Returns 0, -EINVAL, -ENOMEM, -EMFILE and other -errno of
 * memfd_create/mmap. Nothing is left behind on failure.
 */
MPROC_API int mproc_lock_new(mproc_lock **out);

/*
 * Releases this process's view of a lock from mproc_lock_new (or one the
 * library imported). Other processes keep theirs; the shared state dies
 * with the last mapping. If the calling thread still holds the lock its
 * page stays mapped, so that the kernel can still mark the lock owner-dead
 * if this thread dies: release before free. NULL and objects not created
 * by _new are ignored.
 */
MPROC_API void mproc_lock_free(mproc_lock *l);

/*
 * Acquires the lock. Blocks up to timeout seconds (<0 forever, 0 try).
 * Returns 0; -EOWNERDEAD: acquired, but the previous owner died while
 * holding it (call mproc_lock_consistent once the protected state is
 * repaired); -ETIMEDOUT: not acquired in time; -ENOTRECOVERABLE: a
 * previous owner-dead state was never made consistent; -EDEADLK: the
 * calling thread already holds it and timeout < 0 (with a finite timeout
 * the call waits out the timeout and returns -ETIMEDOUT, as Python does).
 */
MPROC_API int mproc_lock_acquire(mproc_lock *l, double timeout);

/* Releases the lock. Returns 0 or MPROC_ENOTOWNER (the calling thread does
 * not hold it). Never blocks. */
MPROC_API int mproc_lock_release(mproc_lock *l);

/*
 * After -EOWNERDEAD: marks the lock's state consistent again. Must be
 * called by the holder. Returns 0, MPROC_ENOTOWNER, -EINVAL (not in the
 * owner-dead state).
 */
MPROC_API int mproc_lock_consistent(mproc_lock *l);

/* 1 if some thread holds the lock, else 0 (a snapshot; a lock whose owner
 * died reads as held until it is next acquired). -EINVAL. */
MPROC_API int mproc_lock_locked(const mproc_lock *l);

/* 1 if the calling thread holds the lock, else 0; -EINVAL. */
MPROC_API int mproc_lock_owned(const mproc_lock *l);

/* ==== RLock (recursive) ================================================ */

/* As the Lock functions. acquire by the holder increments a count (no
 * -EDEADLK; -EOVERFLOW past 2^32-1) and release decrements it; the
 * lock is free when the count reaches 0. After -EOWNERDEAD the count
 * is 1. */
MPROC_API int mproc_rlock_init(mproc_rlock *l);
MPROC_API int mproc_rlock_destroy(mproc_rlock *l);
MPROC_API int mproc_rlock_new(mproc_rlock **out);
MPROC_API void mproc_rlock_free(mproc_rlock *l);
MPROC_API int mproc_rlock_acquire(mproc_rlock *l, double timeout);
MPROC_API int mproc_rlock_release(mproc_rlock *l);
MPROC_API int mproc_rlock_consistent(mproc_rlock *l);
MPROC_API int mproc_rlock_locked(const mproc_rlock *l);
/* Recursion count held by the calling thread (0 if it does not hold it),
 * or -EINVAL. */
MPROC_API int mproc_rlock_count(const mproc_rlock *l);

/* ==== Semaphore and BoundedSemaphore =================================== */

/* Largest count a semaphore holds (SEM_VALUE_MAX). */
#define MPROC_SEM_VALUE_MAX 2147483647u

/*
 * Initializes a Semaphore with the given count / a BoundedSemaphore whose
 * bound is its initial count (as Python). Returns 0, -EINVAL (value above
 * MPROC_SEM_VALUE_MAX).
 */
MPROC_API int mproc_sem_init(mproc_sem *s, unsigned value);
MPROC_API int mproc_sem_init_bounded(mproc_sem *s, unsigned value);

/* Destroys; waiters must be gone. Returns 0 or -EINVAL. */
MPROC_API int mproc_sem_destroy(mproc_sem *s);

/* Create in / free an own shared mapping (see mproc_lock_new/free). */
MPROC_API int mproc_sem_new(mproc_sem **out, unsigned value);
MPROC_API int mproc_sem_new_bounded(mproc_sem **out, unsigned value);
MPROC_API void mproc_sem_free(mproc_sem *s);

/* Takes one unit: 0, or -ETIMEDOUT when none became available in time. */
MPROC_API int mproc_sem_acquire(mproc_sem *s, double timeout);

/*
 * Returns one unit (any thread or process may release: no owner). Wakes one
 * waiter. Returns 0, MPROC_EBOUND (bounded and already at its bound),
 * -EOVERFLOW (at MPROC_SEM_VALUE_MAX).
 */
MPROC_API int mproc_sem_release(mproc_sem *s);

/* The current count (a snapshot; Python's get_value), or -EINVAL. */
MPROC_API int mproc_sem_value(const mproc_sem *s);

/* 1 for a BoundedSemaphore, 0 for a Semaphore, or -EINVAL. */
MPROC_API int mproc_sem_bounded(const mproc_sem *s);

/*
 * Recovery: sets the count to value and wakes every waiter, e.g. after a
 * holder died with units taken. Returns 0, MPROC_EBOUND (value above the
 * bound), -EINVAL. Racing acquires/releases are not lost or doubled, but
 * the caller decides what the right count is.
 */
MPROC_API int mproc_sem_reset(mproc_sem *s, unsigned value);

/* ==== Condition ======================================================== */

/* The lock a Condition embeds: an RLock (Python's default) or a Lock. */
typedef enum mproc_cond_lock_type {
    MPROC_COND_RLOCK = 0,
    MPROC_COND_LOCK = 1
} mproc_cond_lock_type;

/* Predicate for mproc_cond_wait_for: nonzero when the awaited state holds.
 * Called with the condition's lock held. */
typedef int (*mproc_cond_pred)(void *arg);

/*
 * Initializes a Condition with its own lock of the given type (a Condition
 * always owns its lock: use mproc_cond_acquire/release as that lock).
 * Returns 0, -EINVAL, -errno from pthread.
 */
MPROC_API int mproc_cond_init(mproc_cond *c, mproc_cond_lock_type type);

/* Destroys (releasing the lock if the caller holds it). 0, -EBUSY (held by
 * another thread), -EINVAL. Waiters must be gone. A condition built on a
 * caller's lock leaves that lock as it is (held or not) and returns 0. */
MPROC_API int mproc_cond_destroy(mproc_cond *c);

/* Create in / free an own shared mapping (see mproc_lock_new/free). */
MPROC_API int mproc_cond_new(mproc_cond **out, mproc_cond_lock_type type);
MPROC_API void mproc_cond_free(mproc_cond *c);

/*
 * A Condition built on an existing Lock or RLock (Python's
 * Condition(lock)): the condition's acquire/release/consistent are that
 * lock's, and its waits release the lock (every recursion level of an
 * RLock) and take it back. Several conditions may share one lock; the
 * lock may still be used on its own (mproc_lock_acquire...) and holding
 * it that way is holding it for the conditions too. The lock stays the
 * caller's: it is borrowed, must stay valid (and mapped) as long as the
 * condition is used, and destroying or freeing the condition leaves it
 * untouched.
 *
 * Owner death: a holder of the lock that dies hands the next acquirer
 * -EOWNERDEAD, whichever way it acquires (through any of the conditions
 * or the lock itself); mproc_X_consistent on the lock or on any of its
 * conditions clears it. Each condition on the lock then wakes all its
 * waiters once, at its next operation (acquire, wait or notify), since
 * the dead holder may have been in the middle of a notify.
 *
 * Passing to children: the condition carries its lock (mproc_cond_kind);
 * in a spawn or forkserver child the lock is mapped with it (and is the
 * very object the child gets when the lock is also passed as an argument).
 * A condition reached otherwise (in shared memory a child attached) finds
 * its lock when the process maps the memory holding it.
 *
 * init: c is caller storage as for mproc_cond_init. Return 0, -EINVAL (NULL,
 * or lock is not an initialized Lock / RLock), -ENOMEM, -EMFILE (new: the
 * condition's mapping, or reading /proc/self/maps to place the lock).
 */
MPROC_API int mproc_cond_init_with_lock(mproc_cond *c, mproc_lock *lock);
MPROC_API int mproc_cond_init_with_rlock(mproc_cond *c, mproc_rlock *lock);
MPROC_API int mproc_cond_new_with_lock(mproc_cond **out, mproc_lock *lock);
MPROC_API int mproc_cond_new_with_rlock(mproc_cond **out, mproc_rlock *lock);

/* The condition's lock: as mproc_lock_/mproc_rlock_ acquire, release and
 * consistent. After -EOWNERDEAD every current waiter is woken (a
 * spurious wake-up for them), since a notify may have been cut short. */
MPROC_API int mproc_cond_acquire(mproc_cond *c, double timeout);
MPROC_API int mproc_cond_release(mproc_cond *c);
MPROC_API int mproc_cond_consistent(mproc_cond *c);

/*
 * Releases the lock (all recursion levels), waits until notified or the
 * timeout expires, and re-acquires the lock (blocking without limit, as
 * Python) with its count restored. Returns 0 when notified, -ETIMEDOUT,
 * MPROC_ENOTOWNER (caller does not hold the lock; nothing waited),
 * -EOWNERDEAD (the lock was re-acquired from a dead owner: held,
 * state suspect), -ENOTRECOVERABLE (lock is unusable; not held).
 * Wake-ups may be spurious only after an owner death; callers should
 * still re-check their predicate (or use mproc_cond_wait_for).
 */
MPROC_API int mproc_cond_wait(mproc_cond *c, double timeout);

/*
 * Waits until pred(arg) is nonzero, re-checking after every wake-up, for at
 * most timeout seconds in total. Called with the lock held; returns with
 * it held. Returns 0 (predicate true), -ETIMEDOUT (still false),
 * -EINVAL (pred NULL), and mproc_cond_wait's errors.
 */
MPROC_API int mproc_cond_wait_for(mproc_cond *c, mproc_cond_pred pred,
                                  void *arg, double timeout);

/*
 * Wakes up to n waiters (the longest-waiting ones first, in groups), each
 * exactly once: n waiters blocked at the time return 0 from wait, no more.
 * The caller must hold the lock. Returns the number of waiters selected
 * (a waiter killed while waiting may be among them and its wake-up is
 * lost), or MPROC_ENOTOWNER.
 */
MPROC_API int mproc_cond_notify(mproc_cond *c, unsigned n);

/* Wakes every waiter. Returns the count selected, or MPROC_ENOTOWNER. */
MPROC_API int mproc_cond_notify_all(mproc_cond *c);

/* ==== Event ============================================================ */

/* Initializes an Event (clear). Returns 0 or -EINVAL. */
MPROC_API int mproc_event_init(mproc_event *e);
MPROC_API int mproc_event_destroy(mproc_event *e);
MPROC_API int mproc_event_new(mproc_event **out);
MPROC_API void mproc_event_free(mproc_event *e);

/* Sets the flag and wakes every waiter. 0 or -EINVAL. */
MPROC_API int mproc_event_set(mproc_event *e);
/* Clears the flag. 0 or -EINVAL. */
MPROC_API int mproc_event_clear(mproc_event *e);
/* 1 if set, 0 if clear, -EINVAL. */
MPROC_API int mproc_event_is_set(const mproc_event *e);
/* Waits until the flag is set: 0, or -ETIMEDOUT. */
MPROC_API int mproc_event_wait(mproc_event *e, double timeout);

/* ==== Barrier ========================================================== */

/*
 * A barrier action: run by exactly one process (the last to arrive) before
 * the others are released, with the barrier's internal lock held (it must
 * not use the same barrier). A nonzero return breaks the barrier. In a
 * process started by spawn/forkserver the function is found again by
 * object file and offset, like a process target.
 */
typedef int (*mproc_barrier_action)(void);

/*
 * Initializes a Barrier for parties (1..65535) with an optional action
 * (NULL for none) and a default timeout (seconds, <0 none) used by waits
 * that pass a negative timeout. Returns 0, -EINVAL, -errno from pthread.
 */
MPROC_API int mproc_barrier_init(mproc_barrier *b, unsigned parties,
                                 mproc_barrier_action action, double timeout);
MPROC_API int mproc_barrier_destroy(mproc_barrier *b);
MPROC_API int mproc_barrier_new(mproc_barrier **out, unsigned parties,
                                mproc_barrier_action action, double timeout);
MPROC_API void mproc_barrier_free(mproc_barrier *b);

/*
 * Waits until parties callers have arrived, then releases them all.
 * timeout < 0 uses the barrier's default. Returns the arrival index
 * (0 for the first, parties-1 for the last, which ran the action), or:
 * MPROC_EBROKEN: the barrier is broken or was broken/reset while waiting;
 * -ETIMEDOUT: this caller's timeout expired - the barrier is now broken
 *   (the others get MPROC_EBROKEN), as Python's wait;
 * MPROC_ERESOLVE: this caller had to run the action but could not find it
 *   (barrier broken); a failing action returns MPROC_EBROKEN;
 * -EDEADLK: called from the barrier's own action.
 */
MPROC_API int mproc_barrier_wait(mproc_barrier *b, double timeout);

/* Breaks the barrier: current and future waiters get MPROC_EBROKEN until
 * reset. Returns 0 or -EINVAL. */
MPROC_API int mproc_barrier_abort(mproc_barrier *b);

/* Returns the barrier to its empty, unbroken state; callers waiting get
 * MPROC_EBROKEN. Returns 0 or -EINVAL. */
MPROC_API int mproc_barrier_reset(mproc_barrier *b);

/* Number of parties, or -EINVAL. */
MPROC_API int mproc_barrier_parties(const mproc_barrier *b);
/* Callers currently waiting (0 when broken), or -EINVAL. A snapshot; a
 * waiter killed while waiting still counts as arrived. */
MPROC_API int mproc_barrier_n_waiting(const mproc_barrier *b);
/* 1 if broken, 0 if not, -EINVAL. */
MPROC_API int mproc_barrier_broken(const mproc_barrier *b);

/* ==== Passing to children (mproc/args.h shorthands) ==================== */

/* Append an object (borrowed until the process has started): 0, -EINVAL,
 * -ENOMEM. */
MPROC_API int mproc_args_add_lock(mproc_args *a, mproc_lock *l);
MPROC_API int mproc_args_add_rlock(mproc_args *a, mproc_rlock *l);
MPROC_API int mproc_args_add_sem(mproc_args *a, mproc_sem *s);
MPROC_API int mproc_args_add_cond(mproc_args *a, mproc_cond *c);
MPROC_API int mproc_args_add_event(mproc_args *a, mproc_event *e);
MPROC_API int mproc_args_add_barrier(mproc_args *a, mproc_barrier *b);

/* Argument i as that type, NULL when it is something else. Owned by the
 * args list (do not free). */
MPROC_API mproc_lock *mproc_args_lock(const mproc_args *a, size_t i);
MPROC_API mproc_rlock *mproc_args_rlock(const mproc_args *a, size_t i);
MPROC_API mproc_sem *mproc_args_sem(const mproc_args *a, size_t i);
MPROC_API mproc_cond *mproc_args_cond(const mproc_args *a, size_t i);
MPROC_API mproc_event *mproc_args_event(const mproc_args *a, size_t i);
MPROC_API mproc_barrier *mproc_args_barrier(const mproc_args *a, size_t i);

#ifdef __cplusplus
}
#endif

#endif
