/*
 * sync/lock.c - Lock, RLock and Condition.
 *
 * All three stand on one robust mutex (mproc__mtx): a PROCESS_SHARED,
 * ROBUST pthread mutex, so that glibc and the kernel keep the robust list
 * (a holder's death hands the next acquirer EOWNERDEAD), plus the token of
 * the owning thread and a recursion count. The token, not the tid, says
 * who owns it: tids are recycled and a fork child's first thread would
 * otherwise pass for its parent's forking thread.
 *
 * A Condition cannot use pthread_cond (its state is not robust against a
 * waiter or notifier that dies). Its waiters form groups instead (see
 * mproc__cond_state): notify(n) grants exactly n tokens to the oldest
 * group's waiters and wakes n sleepers on that group's futex word; a woken
 * waiter claims a token with the lock held. Every count changes only under
 * the lock, so a notifier killed half-way is repaired by the next acquirer
 * (it grants everybody: a spurious wake-up, which waiters must tolerate).
 */
#include "sync/sync_impl.h"

#include <limits.h>
#include <string.h>
#include <time.h>

/* ---- the robust mutex ------------------------------------------------- */

/* How long a contended acquirer sleeps on the gate before it falls back
 * to sleeping in the robust mutex itself (where the kernel wakes it if
 * the owner dies). */
#define GATE_SLICE_NS 10000000L
/* How often an acquirer that lost a hand-off retries while the holder keeps
 * the lock busy. */
#define GATE_POLL_NS 30000L

static bool deadline_before(const mproc__deadline *a, const mproc__deadline *b)
{
    return a->at.tv_sec < b->at.tv_sec ||
           (a->at.tv_sec == b->at.tv_sec && a->at.tv_nsec < b->at.tv_nsec);
}

int mproc__mtx_init(mproc__mtx *m)
{
    m->owner = 0;
    m->pid = 0;
    m->count = 0;
    m->nsleep = 0;
    m->seq = 0;
    m->deaths = 0;
    return mproc__robust_init(&m->m, true);
}

static void mtx_take(mproc__mtx *m, const mproc__sync_self *me, uint32_t n)
{
    m->pid = me->pid;
    m->count = n;
    __atomic_store_n(&m->owner, me->token, __ATOMIC_RELAXED);
}

static void mtx_drop(mproc__mtx *m)
{
    __atomic_store_n(&m->owner, 0, __ATOMIC_RELAXED);
    m->pid = 0;
    m->count = 0;
}

/* Wakes one gate sleeper unless a wake-up is already on its way. */
static void gate_wake(mproc__mtx *m)
{
    if (__atomic_load_n(&m->nsleep, __ATOMIC_SEQ_CST) == 0)
        return;
    uint32_t v = __atomic_load_n(&m->seq, __ATOMIC_RELAXED);
    if ((v & 1) == 0 &&
        __atomic_compare_exchange_n(&m->seq, &v, v + 1, false, __ATOMIC_SEQ_CST,
                                    __ATOMIC_RELAXED))
        mproc__futex_wake(&m->seq, 1);
}

/* Finishes an acquire: r is mproc__robust_lock's result. On 0 and 1 the
 * pthread mutex is ours (already consistent again: see MPROC__MTX_*). */
static int mtx_result(mproc__mtx *m, uint32_t *st, const mproc__sync_self *me,
                      int r)
{
    if (r < 0) /* not taken */
        return r == -EBUSY ? -ETIMEDOUT : r;
    uint32_t was = __atomic_load_n(st, __ATOMIC_RELAXED);
    if (was == MPROC__MTX_NOTRECOVERABLE) {
        pthread_mutex_unlock(&m->m);
        gate_wake(m);
        return -ENOTRECOVERABLE;
    }
    mtx_take(m, me, 1);
    if (r == 0) /* still owner-dead: handed on by mproc__lock_hand_on */
        return was == MPROC__MTX_INCONSISTENT ? -EOWNERDEAD : 0;
    m->deaths++;
    __atomic_store_n(st, MPROC__MTX_INCONSISTENT, __ATOMIC_RELAXED);
    return -EOWNERDEAD;
}

/*
 * The contended path. glibc's robust mutex wakes a sleeper on every unlock
 * once its waiters bit is set, and a woken acquirer re-sets it, so two busy
 * processes pay syscalls every few operations. Here acquirers sleep on a
 * gate word first. An unlock wakes one gate sleeper only when no wake-up is
 * pending (bit 0 of seq). A woken acquirer that loses the race to the
 * holder leaves the bit set and polls every GATE_POLL_NS instead, so a
 * busy holder runs on without syscalls; whoever acquires clears the bit.
 * The gate cannot see an owner die (the kernel only wakes sleepers of the
 * mutex itself), so after GATE_SLICE_NS the acquirer blocks in the robust
 * mutex. Returns a pthread result.
 */
static int mtx_gate(mproc__mtx *m, const mproc__deadline *d)
{
    mproc__deadline slice = mproc__deadline_from(GATE_SLICE_NS / 1e9);
    if (!d->infinite && deadline_before(d, &slice))
        slice = *d;
    int r = -EBUSY;
    __atomic_add_fetch(&m->nsleep, 1, __ATOMIC_SEQ_CST);
    for (;;) {
        uint32_t v = __atomic_load_n(&m->seq, __ATOMIC_SEQ_CST);
        r = mproc__robust_trylock(&m->m);
        if (r != -EBUSY) {
            if (v & 1) /* take the pending wake-up: unlocks wake again */
                __atomic_compare_exchange_n(&m->seq, &v, v + 1, false,
                                            __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
            break;
        }
        mproc__deadline until = slice;
        if (v & 1) {
            mproc__deadline poll = mproc__deadline_from(GATE_POLL_NS / 1e9);
            if (deadline_before(&poll, &until))
                until = poll;
        }
        if (mproc__futex_wait_until(&m->seq, v, &until) == -ETIMEDOUT &&
            mproc__deadline_expired(&slice))
            break;
    }
    __atomic_sub_fetch(&m->nsleep, 1, __ATOMIC_SEQ_CST);
    if (r == -EBUSY)
        r = mproc__robust_lock(&m->m, MPROC__UNTIL, d);
    return r;
}

int mproc__mtx_acquire(mproc__mtx *m, uint32_t *st, bool recursive,
                       double timeout)
{
    const mproc__sync_self *me = mproc__sync_me();
    if (__atomic_load_n(&m->owner, __ATOMIC_RELAXED) == me->token) {
        if (recursive) {
            if (m->count == UINT32_MAX)
                return -EOVERFLOW;
            m->count++;
            return 0;
        }
        if (timeout == 0)
            return -ETIMEDOUT;
        mproc__deadline d = mproc__deadline_from(timeout);
        if (d.infinite)
            return -EDEADLK;
        /* Nobody else can release it: wait out the timeout, as Python. */
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &d.at, NULL) ==
               EINTR)
            ;
        return -ETIMEDOUT;
    }
    int r = mproc__robust_trylock(&m->m);
    if (r == -EBUSY && timeout != 0) {
        mproc__deadline d = mproc__deadline_from(timeout);
        r = mtx_gate(m, &d);
    }
    return mtx_result(m, st, me, r);
}

int mproc__mtx_release(mproc__mtx *m, uint32_t *st)
{
    const mproc__sync_self *me = mproc__sync_me();
    if (__atomic_load_n(&m->owner, __ATOMIC_RELAXED) != me->token)
        return MPROC_ENOTOWNER;
    if (m->count > 1) {
        m->count--;
        return 0;
    }
    if (__atomic_load_n(st, __ATOMIC_RELAXED) == MPROC__MTX_INCONSISTENT)
        __atomic_store_n(st, MPROC__MTX_NOTRECOVERABLE, __ATOMIC_RELAXED);
    mtx_drop(m);
    int r = pthread_mutex_unlock(&m->m);
    gate_wake(m);
    return r ? -r : 0;
}

bool mproc__mtx_owned(const mproc__mtx *m)
{
    return __atomic_load_n(&m->owner, __ATOMIC_RELAXED) ==
           mproc__sync_me()->token;
}

bool mproc__mtx_held_here(const mproc__mtx *m)
{
    return __atomic_load_n(&m->owner, __ATOMIC_RELAXED) != 0 &&
           m->pid == mproc__sync_me()->pid;
}

static int mtx_consistent(mproc__mtx *m, uint32_t *st)
{
    if (!mproc__mtx_owned(m))
        return MPROC_ENOTOWNER;
    if (__atomic_load_n(st, __ATOMIC_RELAXED) != MPROC__MTX_INCONSISTENT)
        return -EINVAL;
    __atomic_store_n(st, MPROC__MTX_OK, __ATOMIC_RELAXED);
    return 0;
}

/* Destroys m: releases it if the caller holds it, fails with -EBUSY if
 * someone else does. */
static int mtx_destroy(mproc__mtx *m)
{
    if (mproc__mtx_owned(m)) {
        mtx_drop(m);
        pthread_mutex_unlock(&m->m);
    }
    int r = mproc__robust_trylock(&m->m);
    if (r == -EBUSY)
        return -EBUSY;
    if (r >= 0)
        pthread_mutex_unlock(&m->m);
    pthread_mutex_destroy(&m->m);
    mtx_drop(m);
    return 0;
}

/* ---- Lock and RLock --------------------------------------------------- */

static mproc__lock_state *lock_state(const void *p, uint32_t magic)
{
    const mproc__lock_state *s = p;
    if (!s || __atomic_load_n(&s->magic, __ATOMIC_ACQUIRE) != magic)
        return NULL;
    return (mproc__lock_state *)s;
}

/* A Lock or an RLock, and which. */
static mproc__lock_state *any_lock_state(const void *p)
{
    const mproc__lock_state *s = p;
    uint32_t m = s ? __atomic_load_n(&s->magic, __ATOMIC_ACQUIRE) : 0;
    if (m != MPROC__SYNC_LOCK && m != MPROC__SYNC_RLOCK)
        return NULL;
    return (mproc__lock_state *)s;
}

int mproc__lock_hand_on(void *l)
{
    mproc__lock_state *s = any_lock_state(l);
    if (!s)
        return -EINVAL;
    if (!mproc__mtx_owned(&s->mtx))
        return MPROC_ENOTOWNER;
    if (s->mtx.count > 1) {
        s->mtx.count--;
        return 0;
    }
    mtx_drop(&s->mtx);
    int r = pthread_mutex_unlock(&s->mtx.m);
    gate_wake(&s->mtx);
    return r ? -r : 0;
}

static int lock_init(void *p, uint32_t magic)
{
    mproc__lock_state *s = p;
    if (!s)
        return -EINVAL;
    memset(s, 0, MPROC_LOCK_SIZE);
    int err = mproc__mtx_init(&s->mtx);
    if (err < 0)
        return err;
    __atomic_store_n(&s->magic, magic, __ATOMIC_RELEASE);
    return 0;
}

static int lock_destroy(void *p, uint32_t magic)
{
    mproc__lock_state *s = lock_state(p, magic);
    if (!s)
        return -EINVAL;
    int err = mtx_destroy(&s->mtx);
    if (err == 0)
        __atomic_store_n(&s->magic, 0, __ATOMIC_RELEASE);
    return err;
}

static int lock_new(void **out, uint32_t magic, const char *name)
{
    if (!out)
        return -EINVAL;
    void *p;
    int err = mproc__sync_map_new(name, MPROC_LOCK_SIZE, &p);
    if (err < 0)
        return err;
    err = lock_init(p, magic);
    if (err < 0) {
        mproc__sync_map_free(p, false);
        return err;
    }
    *out = p;
    return 0;
}

static void lock_free(void *p, uint32_t magic)
{
    if (!p)
        return;
    mproc__lock_state *s = lock_state(p, magic);
    /* Unmapping a robust mutex this process holds would leave a dangling
     * robust-list entry: keep the page so a death still marks it. */
    mproc__sync_map_free(p, s && mproc__mtx_held_here(&s->mtx));
}

int mproc_lock_init(mproc_lock *l)
{
    return lock_init(l, MPROC__SYNC_LOCK);
}

int mproc_lock_destroy(mproc_lock *l)
{
    return lock_destroy(l, MPROC__SYNC_LOCK);
}

int mproc_lock_new(mproc_lock **out)
{
    return lock_new((void **)out, MPROC__SYNC_LOCK, "mproc-lock");
}

void mproc_lock_free(mproc_lock *l)
{
    lock_free(l, MPROC__SYNC_LOCK);
}

int mproc_lock_acquire(mproc_lock *l, double timeout)
{
    mproc__lock_state *s = lock_state(l, MPROC__SYNC_LOCK);
    if (!s)
        return -EINVAL;
    return mproc__mtx_acquire(&s->mtx, &s->state, false, timeout);
}

int mproc_lock_release(mproc_lock *l)
{
    mproc__lock_state *s = lock_state(l, MPROC__SYNC_LOCK);
    if (!s)
        return -EINVAL;
    return mproc__mtx_release(&s->mtx, &s->state);
}

int mproc_lock_consistent(mproc_lock *l)
{
    mproc__lock_state *s = lock_state(l, MPROC__SYNC_LOCK);
    if (!s)
        return -EINVAL;
    return mtx_consistent(&s->mtx, &s->state);
}

int mproc_lock_locked(const mproc_lock *l)
{
    mproc__lock_state *s = lock_state(l, MPROC__SYNC_LOCK);
    if (!s)
        return -EINVAL;
    return __atomic_load_n(&s->mtx.owner, __ATOMIC_RELAXED) != 0;
}

int mproc_lock_owned(const mproc_lock *l)
{
    mproc__lock_state *s = lock_state(l, MPROC__SYNC_LOCK);
    if (!s)
        return -EINVAL;
    return mproc__mtx_owned(&s->mtx);
}

int mproc_rlock_init(mproc_rlock *l)
{
    return lock_init(l, MPROC__SYNC_RLOCK);
}

int mproc_rlock_destroy(mproc_rlock *l)
{
    return lock_destroy(l, MPROC__SYNC_RLOCK);
}

int mproc_rlock_new(mproc_rlock **out)
{
    return lock_new((void **)out, MPROC__SYNC_RLOCK, "mproc-rlock");
}

void mproc_rlock_free(mproc_rlock *l)
{
    lock_free(l, MPROC__SYNC_RLOCK);
}

int mproc_rlock_acquire(mproc_rlock *l, double timeout)
{
    mproc__lock_state *s = lock_state(l, MPROC__SYNC_RLOCK);
    if (!s)
        return -EINVAL;
    return mproc__mtx_acquire(&s->mtx, &s->state, true, timeout);
}

int mproc_rlock_release(mproc_rlock *l)
{
    mproc__lock_state *s = lock_state(l, MPROC__SYNC_RLOCK);
    if (!s)
        return -EINVAL;
    return mproc__mtx_release(&s->mtx, &s->state);
}

int mproc_rlock_consistent(mproc_rlock *l)
{
    mproc__lock_state *s = lock_state(l, MPROC__SYNC_RLOCK);
    if (!s)
        return -EINVAL;
    return mtx_consistent(&s->mtx, &s->state);
}

int mproc_rlock_locked(const mproc_rlock *l)
{
    mproc__lock_state *s = lock_state(l, MPROC__SYNC_RLOCK);
    if (!s)
        return -EINVAL;
    return __atomic_load_n(&s->mtx.owner, __ATOMIC_RELAXED) != 0;
}

int mproc_rlock_count(const mproc_rlock *l)
{
    mproc__lock_state *s = lock_state(l, MPROC__SYNC_RLOCK);
    if (!s)
        return -EINVAL;
    if (!mproc__mtx_owned(&s->mtx))
        return 0;
    return s->mtx.count > INT_MAX ? INT_MAX : (int)s->mtx.count;
}

/* ---- Condition -------------------------------------------------------- */

/* Group ids wrap; a is older than b. */
static bool before(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) < 0;
}

static mproc__cond_state *cond_state(const void *p)
{
    const mproc__cond_state *s = p;
    if (!s || __atomic_load_n(&s->magic, __ATOMIC_ACQUIRE) != MPROC__SYNC_COND)
        return NULL;
    return (mproc__cond_state *)s;
}

/* The lock a condition's operations go through: the condition's own mtx,
 * or that of the caller's Lock or RLock it was built on. */
typedef struct cond_lk {
    mproc__mtx *mtx;
    uint32_t *st;
    bool recursive;
} cond_lk;

void *mproc__cond_ext_lock(const void *cond)
{
    const mproc__cond_state *s = cond_state(cond);
    if (!s || !s->ext)
        return NULL;
    void *l;
    if (s->layout == mproc__sync_layout()) {
        l = (void *)(uintptr_t)s->lock_ptr; /* the creator, a fork child */
    } else {
        l = mproc__sync_link_find(s, s->lock_dev, s->lock_ino, s->lock_off);
        if (!l) {
            l = mproc__sync_locate(s->lock_dev, s->lock_ino, s->lock_off,
                                   MPROC_LOCK_SIZE);
            /* Remembered for next time; without memory, found again. */
            if (l)
                (void)mproc__sync_link_add(s, l, false, s->lock_dev,
                                           s->lock_ino, s->lock_off);
        }
    }
    const mproc__lock_state *ls = l;
    if (!ls || __atomic_load_n(&ls->magic, __ATOMIC_ACQUIRE) != s->ext)
        return NULL;
    return l;
}

static mproc__cond_state *cond_bind(const void *c, cond_lk *lk)
{
    mproc__cond_state *s = cond_state(c);
    if (!s)
        return NULL;
    if (!s->ext) {
        lk->mtx = &s->mtx;
        lk->st = &s->state;
        lk->recursive = s->recursive;
        return s;
    }
    mproc__lock_state *ls = mproc__cond_ext_lock(s);
    if (!ls)
        return NULL;
    lk->mtx = &ls->mtx;
    lk->st = &ls->state;
    lk->recursive = s->ext == MPROC__SYNC_RLOCK;
    return s;
}

static void cond_bump(mproc__cond_state *s, uint32_t group, int n)
{
    uint32_t *w = &s->seq[group & 1];
    __atomic_add_fetch(w, 1, __ATOMIC_RELEASE);
    mproc__futex_wake(w, n);
}

/* After a holder died in the middle of changing the counts: count every
 * registered waiter as woken and wake them all. Lock held. */
static void cond_repair(mproc__cond_state *s)
{
    uint32_t top = before(s->g1, s->g2) ? s->g2 : s->g1;
    s->g1 = top + 1;
    s->g2 = top + 2;
    s->g1_rem = 0;
    s->g1_tok = 0;
    s->g2_size = 0;
    cond_bump(s, 0, INT_MAX);
    cond_bump(s, 1, INT_MAX);
}

/* With the lock held: repairs the counts if a holder of the lock died
 * since this condition last looked. On a shared lock the death may have
 * been seen by another condition's or the lock's own acquire. */
static void cond_catch_up(mproc__cond_state *s, const cond_lk *lk)
{
    if (s->deaths != lk->mtx->deaths) {
        cond_repair(s);
        s->deaths = lk->mtx->deaths;
    }
}

static void cond_setup(mproc__cond_state *s)
{
    memset(s, 0, sizeof(mproc_cond));
    s->g1 = 0;
    s->g2 = 1;
}

int mproc_cond_init(mproc_cond *c, mproc_cond_lock_type type)
{
    mproc__cond_state *s = (mproc__cond_state *)c;
    if (!s || (type != MPROC_COND_RLOCK && type != MPROC_COND_LOCK))
        return -EINVAL;
    cond_setup(s);
    int err = mproc__mtx_init(&s->mtx);
    if (err < 0)
        return err;
    s->recursive = type == MPROC_COND_RLOCK;
    __atomic_store_n(&s->magic, MPROC__SYNC_COND, __ATOMIC_RELEASE);
    return 0;
}

static int cond_init_on(mproc_cond *c, void *lock, uint32_t magic)
{
    mproc__cond_state *s = (mproc__cond_state *)c;
    mproc__lock_state *ls = lock_state(lock, magic);
    if (!s || !ls)
        return -EINVAL;
    uint64_t dev = 0, ino = 0, off = 0;
    int err = mproc__sync_identify(lock, MPROC_LOCK_SIZE, &dev, &ino, &off);
    if (err < 0 && err != -EINVAL)
        return err; /* -EINVAL: private memory, for this layout only */
    cond_setup(s);
    s->ext = magic;
    s->recursive = magic == MPROC__SYNC_RLOCK;
    s->deaths = __atomic_load_n(&ls->mtx.deaths, __ATOMIC_RELAXED);
    s->layout = mproc__sync_layout();
    s->lock_ptr = (uint64_t)(uintptr_t)lock;
    s->lock_dev = dev;
    s->lock_ino = ino;
    s->lock_off = off;
    (void)mproc__sync_link_drop(s, false); /* a former condition's here */
    __atomic_store_n(&s->magic, MPROC__SYNC_COND, __ATOMIC_RELEASE);
    return 0;
}

int mproc_cond_init_with_lock(mproc_cond *c, mproc_lock *lock)
{
    return cond_init_on(c, lock, MPROC__SYNC_LOCK);
}

int mproc_cond_init_with_rlock(mproc_cond *c, mproc_rlock *lock)
{
    return cond_init_on(c, lock, MPROC__SYNC_RLOCK);
}

int mproc_cond_destroy(mproc_cond *c)
{
    mproc__cond_state *s = cond_state(c);
    if (!s)
        return -EINVAL;
    if (s->ext) { /* the lock is the caller's: left as it is */
        __atomic_store_n(&s->magic, 0, __ATOMIC_RELEASE);
        (void)mproc__sync_link_drop(s, false);
        return 0;
    }
    int err = mtx_destroy(&s->mtx);
    if (err == 0)
        __atomic_store_n(&s->magic, 0, __ATOMIC_RELEASE);
    return err;
}

static int cond_new(mproc_cond **out, int (*init)(void *c, void *arg),
                    void *arg)
{
    if (!out)
        return -EINVAL;
    void *p;
    int err = mproc__sync_map_new("mproc-cond", sizeof(mproc_cond), &p);
    if (err < 0)
        return err;
    err = init(p, arg);
    if (err < 0) {
        mproc__sync_map_free(p, false);
        return err;
    }
    *out = p;
    return 0;
}

static int init_own(void *c, void *type)
{
    return mproc_cond_init(c, *(mproc_cond_lock_type *)type);
}

static int init_on_lock(void *c, void *lock)
{
    return cond_init_on(c, lock, MPROC__SYNC_LOCK);
}

static int init_on_rlock(void *c, void *lock)
{
    return cond_init_on(c, lock, MPROC__SYNC_RLOCK);
}

int mproc_cond_new(mproc_cond **out, mproc_cond_lock_type type)
{
    if (type != MPROC_COND_RLOCK && type != MPROC_COND_LOCK)
        return -EINVAL;
    return cond_new(out, init_own, &type);
}

int mproc_cond_new_with_lock(mproc_cond **out, mproc_lock *lock)
{
    if (!lock_state(lock, MPROC__SYNC_LOCK))
        return -EINVAL;
    return cond_new(out, init_on_lock, lock);
}

int mproc_cond_new_with_rlock(mproc_cond **out, mproc_rlock *lock)
{
    if (!lock_state(lock, MPROC__SYNC_RLOCK))
        return -EINVAL;
    return cond_new(out, init_on_rlock, lock);
}

void mproc_cond_free(mproc_cond *c)
{
    if (!c)
        return;
    /* A lock imported with the condition goes with it (one per import). */
    void *lock = mproc__sync_link_drop(c, true);
    if (lock) {
        mproc__lock_state *ls = any_lock_state(lock);
        mproc__sync_map_free(lock, ls && mproc__mtx_held_here(&ls->mtx));
    }
    (void)mproc__sync_link_drop(c, false);
    mproc__cond_state *s = cond_state(c);
    mproc__sync_map_free(c, s && !s->ext && mproc__mtx_held_here(&s->mtx));
}

int mproc_cond_acquire(mproc_cond *c, double timeout)
{
    cond_lk lk;
    mproc__cond_state *s = cond_bind(c, &lk);
    if (!s)
        return -EINVAL;
    int r = mproc__mtx_acquire(lk.mtx, lk.st, lk.recursive, timeout);
    if (r == 0 || r == -EOWNERDEAD)
        cond_catch_up(s, &lk);
    return r;
}

int mproc_cond_release(mproc_cond *c)
{
    cond_lk lk;
    if (!cond_bind(c, &lk))
        return -EINVAL;
    return mproc__mtx_release(lk.mtx, lk.st);
}

int mproc_cond_consistent(mproc_cond *c)
{
    cond_lk lk;
    if (!cond_bind(c, &lk))
        return -EINVAL;
    return mtx_consistent(lk.mtx, lk.st);
}

/* Unlocks the condition's lock entirely, whatever its recursion count.
 * Like a release, this makes an inconsistent lock unrecoverable. */
static void cond_unlock_all(const cond_lk *lk)
{
    if (__atomic_load_n(lk->st, __ATOMIC_RELAXED) == MPROC__MTX_INCONSISTENT)
        __atomic_store_n(lk->st, MPROC__MTX_NOTRECOVERABLE, __ATOMIC_RELAXED);
    mtx_drop(lk->mtx);
    pthread_mutex_unlock(&lk->mtx->m);
    gate_wake(lk->mtx);
}

int mproc_cond_wait(mproc_cond *c, double timeout)
{
    cond_lk lk;
    mproc__cond_state *s = cond_bind(c, &lk);
    if (!s)
        return -EINVAL;
    const mproc__sync_self *me = mproc__sync_me();
    if (__atomic_load_n(&lk.mtx->owner, __ATOMIC_RELAXED) != me->token)
        return MPROC_ENOTOWNER;
    cond_catch_up(s, &lk);
    mproc__deadline d = mproc__deadline_from(timeout);
    uint32_t saved = lk.mtx->count;
    uint32_t w = s->g2;
    s->g2_size++;
    uint32_t *word = &s->seq[w & 1];
    uint32_t seen = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    bool ownerdead = false;
    int res;
    cond_unlock_all(&lk);
    for (;;) {
        int fr =
            timeout == 0 ? -ETIMEDOUT : mproc__futex_wait_until(word, seen, &d);
        int lr = mtx_result(lk.mtx, lk.st, me,
                            mproc__robust_lock(&lk.mtx->m, MPROC__UNTIL, NULL));
        if (lr < 0 && lr != -EOWNERDEAD)
            return lr; /* not held */
        lk.mtx->count = saved;
        if (lr == -EOWNERDEAD)
            ownerdead = true;
        cond_catch_up(s, &lk); /* after a death: counts us as woken too */
        bool timed_out = fr == -ETIMEDOUT || mproc__deadline_expired(&d);
        if (before(w, s->g1)) {
            res = 0; /* our group was retired: all its members woken */
            break;
        }
        if (w == s->g1 && s->g1_tok > 0) {
            s->g1_tok--;
            res = 0;
            break;
        }
        if (timed_out) {
            /* Leave without a grant (none was left for our group). */
            if (w == s->g1 && s->g1_rem > 0)
                s->g1_rem--;
            else if (w == s->g2 && s->g2_size > 0)
                s->g2_size--;
            res = -ETIMEDOUT;
            break;
        }
        seen = __atomic_load_n(word, __ATOMIC_ACQUIRE);
        cond_unlock_all(&lk);
    }
    return ownerdead ? -EOWNERDEAD : res;
}

int mproc_cond_wait_for(mproc_cond *c, mproc_cond_pred pred, void *arg,
                        double timeout)
{
    cond_lk lk;
    if (!cond_bind(c, &lk) || !pred)
        return -EINVAL;
    if (!mproc__mtx_owned(lk.mtx))
        return MPROC_ENOTOWNER;
    mproc__deadline d = mproc__deadline_from(timeout);
    while (!pred(arg)) {
        double left = -1;
        if (!d.infinite) {
            struct timespec ts;
            if (!mproc__deadline_left(&d, &ts))
                return -ETIMEDOUT;
            left = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
            if (left <= 0)
                return -ETIMEDOUT;
        }
        int r = mproc_cond_wait(c, left);
        if (r < 0 && r != -ETIMEDOUT)
            return r;
    }
    return 0;
}

static int cond_notify(mproc_cond *c, uint32_t n)
{
    cond_lk lk;
    mproc__cond_state *s = cond_bind(c, &lk);
    if (!s)
        return -EINVAL;
    if (!mproc__mtx_owned(lk.mtx))
        return MPROC_ENOTOWNER;
    cond_catch_up(s, &lk);
    uint32_t sel = 0;
    while (n > 0) {
        if (s->g1_rem > 0) {
            uint32_t k = n < s->g1_rem ? n : s->g1_rem;
            s->g1_rem -= k;
            s->g1_tok += k;
            n -= k;
            sel += k;
            cond_bump(s, s->g1, k > INT_MAX ? INT_MAX : (int)k);
        } else if (s->g2_size > 0) {
            /* Every member of g1 holds a grant: retire it. */
            s->g1_tok = 0;
            s->g1_rem = s->g2_size;
            s->g2_size = 0;
            s->g1 = s->g2;
            s->g2 = s->g1 + 1;
        } else {
            break;
        }
    }
    return sel > INT_MAX ? INT_MAX : (int)sel;
}

int mproc_cond_notify(mproc_cond *c, unsigned n)
{
    return cond_notify(c, n);
}

int mproc_cond_notify_all(mproc_cond *c)
{
    return cond_notify(c, UINT32_MAX);
}
