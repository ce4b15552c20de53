/*
 * sync/wait.c - Semaphore, BoundedSemaphore, Event and Barrier.
 *
 * Semaphore and Event are lock-free words with futex sleeps, so there is
 * nothing a dying process can leave locked: a dead semaphore holder only
 * loses its units, a dead waiter at worst costs one extra wake syscall.
 *
 * The Barrier keeps its counts under a robust mutex and its state in one
 * 64-bit word: the low half (the futex word waiters sleep on) holds the
 * generation and the BROKEN / ACTION flags, the high half a history of how
 * the last 32 generations ended, so a waiter that wakes late still learns
 * whether its own generation completed or broke. Generations replace
 * Python's "draining" phase: nobody ever waits for others to leave, so a
 * waiter killed inside wait() cannot block later generations. The action
 * runs with the mutex held; waiters then sleep on the mutex, so if the
 * action's process dies the kernel hands one of them EOWNERDEAD and it
 * breaks the barrier.
 */
#include "sync/sync_impl.h"

#include <limits.h>
#include <string.h>
#include <time.h>

/* ---- Semaphore -------------------------------------------------------- */

static mproc__sem_state *sem_state(const void *p)
{
    const mproc__sem_state *s = p;
    if (!s || __atomic_load_n(&s->magic, __ATOMIC_ACQUIRE) != MPROC__SYNC_SEM)
        return NULL;
    return (mproc__sem_state *)s;
}

static int sem_init(mproc_sem *sem, unsigned value, bool bounded)
{
    mproc__sem_state *s = (mproc__sem_state *)sem;
    if (!s || value > MPROC_SEM_VALUE_MAX)
        return -EINVAL;
    memset(s, 0, sizeof(mproc_sem));
    s->bounded = bounded;
    s->value = value;
    s->max = bounded ? value : MPROC_SEM_VALUE_MAX;
    __atomic_store_n(&s->magic, MPROC__SYNC_SEM, __ATOMIC_RELEASE);
    return 0;
}

int mproc_sem_init(mproc_sem *s, unsigned value)
{
    return sem_init(s, value, false);
}

int mproc_sem_init_bounded(mproc_sem *s, unsigned value)
{
    return sem_init(s, value, true);
}

int mproc_sem_destroy(mproc_sem *sem)
{
    mproc__sem_state *s = sem_state(sem);
    if (!s)
        return -EINVAL;
    __atomic_store_n(&s->magic, 0, __ATOMIC_RELEASE);
    return 0;
}

static int sem_new(mproc_sem **out, unsigned value, bool bounded)
{
    if (!out || value > MPROC_SEM_VALUE_MAX)
        return -EINVAL;
    void *p;
    int err = mproc__sync_map_new("mproc-sem", sizeof(mproc_sem), &p);
    if (err < 0)
        return err;
    sem_init(p, value, bounded);
    *out = p;
    return 0;
}

int mproc_sem_new(mproc_sem **out, unsigned value)
{
    return sem_new(out, value, false);
}

int mproc_sem_new_bounded(mproc_sem **out, unsigned value)
{
    return sem_new(out, value, true);
}

void mproc_sem_free(mproc_sem *s)
{
    if (s)
        mproc__sync_map_free(s, false);
}

static bool sem_try(mproc__sem_state *s)
{
    uint32_t v = __atomic_load_n(&s->value, __ATOMIC_RELAXED);
    while (v > 0) {
        if (__atomic_compare_exchange_n(&s->value, &v, v - 1, true,
                                        __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return true;
    }
    return false;
}

int mproc_sem_acquire(mproc_sem *sem, double timeout)
{
    mproc__sem_state *s = sem_state(sem);
    if (!s)
        return -EINVAL;
    if (sem_try(s))
        return 0;
    if (timeout == 0)
        return -ETIMEDOUT;
    mproc__deadline d = mproc__deadline_from(timeout);
    for (;;) {
        /* Announce ourselves before the kernel re-checks the count; a
         * releaser increments first and reads nwaiters after (both are
         * sequentially consistent read-modify-writes / loads). */
        __atomic_add_fetch(&s->nwaiters, 1, __ATOMIC_SEQ_CST);
        int r = mproc__futex_wait_until(&s->value, 0, &d);
        __atomic_sub_fetch(&s->nwaiters, 1, __ATOMIC_SEQ_CST);
        if (sem_try(s))
            return 0;
        if (r == -ETIMEDOUT || mproc__deadline_expired(&d))
            return -ETIMEDOUT;
    }
}

int mproc_sem_release(mproc_sem *sem)
{
    mproc__sem_state *s = sem_state(sem);
    if (!s)
        return -EINVAL;
    uint32_t v = __atomic_load_n(&s->value, __ATOMIC_RELAXED);
    do {
        if (v >= s->max)
            return s->bounded ? MPROC_EBOUND : -EOVERFLOW;
    } while (!__atomic_compare_exchange_n(&s->value, &v, v + 1, true,
                                          __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
    if (__atomic_load_n(&s->nwaiters, __ATOMIC_SEQ_CST) > 0)
        mproc__futex_wake(&s->value, 1);
    return 0;
}

int mproc_sem_value(const mproc_sem *sem)
{
    mproc__sem_state *s = sem_state(sem);
    if (!s)
        return -EINVAL;
    return (int)__atomic_load_n(&s->value, __ATOMIC_RELAXED);
}

int mproc_sem_bounded(const mproc_sem *sem)
{
    mproc__sem_state *s = sem_state(sem);
    if (!s)
        return -EINVAL;
    return s->bounded ? 1 : 0;
}

int mproc_sem_reset(mproc_sem *sem, unsigned value)
{
    mproc__sem_state *s = sem_state(sem);
    if (!s)
        return -EINVAL;
    if (value > s->max)
        return s->bounded ? MPROC_EBOUND : -EINVAL;
    __atomic_store_n(&s->value, value, __ATOMIC_SEQ_CST);
    mproc__futex_wake(&s->value, INT_MAX);
    return 0;
}

/* ---- Event ------------------------------------------------------------ */

enum { EV_CLEAR = 0, EV_SET = 1, EV_SLEEPERS = 2 };

static mproc__event_state *event_state(const void *p)
{
    const mproc__event_state *s = p;
    if (!s || __atomic_load_n(&s->magic, __ATOMIC_ACQUIRE) != MPROC__SYNC_EVENT)
        return NULL;
    return (mproc__event_state *)s;
}

int mproc_event_init(mproc_event *e)
{
    mproc__event_state *s = (mproc__event_state *)e;
    if (!s)
        return -EINVAL;
    memset(s, 0, sizeof(mproc_event));
    __atomic_store_n(&s->magic, MPROC__SYNC_EVENT, __ATOMIC_RELEASE);
    return 0;
}

int mproc_event_destroy(mproc_event *e)
{
    mproc__event_state *s = event_state(e);
    if (!s)
        return -EINVAL;
    __atomic_store_n(&s->magic, 0, __ATOMIC_RELEASE);
    return 0;
}

int mproc_event_new(mproc_event **out)
{
    if (!out)
        return -EINVAL;
    void *p;
    int err = mproc__sync_map_new("mproc-event", sizeof(mproc_event), &p);
    if (err < 0)
        return err;
    mproc_event_init(p);
    *out = p;
    return 0;
}

void mproc_event_free(mproc_event *e)
{
    if (e)
        mproc__sync_map_free(e, false);
}

int mproc_event_set(mproc_event *e)
{
    mproc__event_state *s = event_state(e);
    if (!s)
        return -EINVAL;
    if (__atomic_exchange_n(&s->word, EV_SET, __ATOMIC_SEQ_CST) == EV_SLEEPERS)
        mproc__futex_wake(&s->word, INT_MAX);
    return 0;
}

int mproc_event_clear(mproc_event *e)
{
    mproc__event_state *s = event_state(e);
    if (!s)
        return -EINVAL;
    uint32_t v = EV_SET;
    /* A word of EV_SLEEPERS is clear already and must keep its mark. */
    __atomic_compare_exchange_n(&s->word, &v, EV_CLEAR, false, __ATOMIC_SEQ_CST,
                                __ATOMIC_RELAXED);
    return 0;
}

int mproc_event_is_set(const mproc_event *e)
{
    mproc__event_state *s = event_state(e);
    if (!s)
        return -EINVAL;
    return __atomic_load_n(&s->word, __ATOMIC_ACQUIRE) == EV_SET;
}

int mproc_event_wait(mproc_event *e, double timeout)
{
    mproc__event_state *s = event_state(e);
    if (!s)
        return -EINVAL;
    uint32_t v = __atomic_load_n(&s->word, __ATOMIC_ACQUIRE);
    if (v == EV_SET)
        return 0;
    if (timeout == 0)
        return -ETIMEDOUT;
    mproc__deadline d = mproc__deadline_from(timeout);
    for (;;) {
        if (v == EV_CLEAR &&
            !__atomic_compare_exchange_n(&s->word, &v, EV_SLEEPERS, false,
                                         __ATOMIC_SEQ_CST, __ATOMIC_ACQUIRE)) {
            if (v == EV_SET)
                return 0;
            continue;
        }
        int r = mproc__futex_wait_until(&s->word, EV_SLEEPERS, &d);
        v = __atomic_load_n(&s->word, __ATOMIC_ACQUIRE);
        if (v == EV_SET)
            return 0;
        if (r == -ETIMEDOUT || mproc__deadline_expired(&d))
            return -ETIMEDOUT;
    }
}

/* ---- Barrier ---------------------------------------------------------- */

#define B_BROKEN  1u
#define B_ACTION  2u
#define B_GENMASK 0x3fffffffu

static mproc__barrier_state *barrier_state(const void *p)
{
    const mproc__barrier_state *s = p;
    if (!s ||
        __atomic_load_n(&s->magic, __ATOMIC_ACQUIRE) != MPROC__SYNC_BARRIER)
        return NULL;
    return (mproc__barrier_state *)s;
}

/* The futex half of the word. */
static uint32_t *b_futex(mproc__barrier_state *s)
{
    return (uint32_t *)&s->word +
           (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__ ? 1 : 0);
}

static uint64_t b_load(const mproc__barrier_state *s)
{
    return __atomic_load_n(&s->word, __ATOMIC_ACQUIRE);
}

static uint32_t b_lo(uint64_t w)
{
    return (uint32_t)w;
}

static uint32_t b_gen(uint64_t w)
{
    return (b_lo(w) >> 2) & B_GENMASK;
}

static void b_store(mproc__barrier_state *s, uint32_t lo, uint32_t hist)
{
    __atomic_store_n(&s->word, (uint64_t)hist << 32 | lo, __ATOMIC_RELEASE);
    mproc__futex_wake(b_futex(s), INT_MAX);
}

/* Marks the current generation broken. Mutex held. */
static void b_break(mproc__barrier_state *s)
{
    uint64_t w = b_load(s);
    if (b_lo(w) & B_BROKEN)
        return;
    b_store(s, (b_lo(w) & ~B_ACTION) | B_BROKEN, (uint32_t)(w >> 32));
}

/* Locks the mutex (until d, or forever when d is NULL). A dead previous
 * holder breaks the barrier. Returns 0, -ETIMEDOUT, -EBUSY (try and
 * held), -EDEADLK (from the barrier's own action). */
static int b_lock(mproc__barrier_state *s, const mproc__deadline *d,
                  bool try_only)
{
    int r = mproc__robust_lock(&s->m, try_only ? MPROC__TRY : MPROC__UNTIL, d);
    if (r == 1) { /* its holder died: the barrier's state is unknown */
        b_break(s);
        r = 0;
    }
    return r;
}

static void b_unlock(mproc__barrier_state *s)
{
    pthread_mutex_unlock(&s->m);
}

/* How generation g ended, seen from word w (whose generation is past g). */
static int b_outcome(uint64_t w, uint32_t g, int idx)
{
    uint32_t d = (b_gen(w) - g) & B_GENMASK;
    uint32_t hist = (uint32_t)(w >> 32);
    if (d >= 1 && d <= 32 && (hist >> (d - 1)) & 1)
        return MPROC_EBROKEN;
    return idx;
}

static mproc_barrier_action b_find_action(const mproc__barrier_state *s)
{
    if (s->layout == mproc__sync_layout())
        return s->action;
    void *p;
    if (mproc__coderef_find(&s->ref, &p) < 0)
        return NULL;
    mproc_barrier_action a;
    memcpy(&a, &p, sizeof a);
    return a;
}

int mproc_barrier_init(mproc_barrier *b, unsigned parties,
                       mproc_barrier_action action, double timeout)
{
    mproc__barrier_state *s = (mproc__barrier_state *)b;
    if (!s || parties < 1 || parties > 65535)
        return -EINVAL;
    memset(s, 0, sizeof(mproc_barrier));
    int e = mproc__robust_init(&s->m, true);
    if (e < 0)
        return e;
    s->parties = parties;
    s->timeout = timeout;
    s->action = action;
    s->layout = mproc__sync_layout();
    if (action) {
        void *p;
        memcpy(&p, &action, sizeof p);
        if (mproc__coderef_make(p, &s->ref) < 0)
            memset(&s->ref, 0, sizeof s->ref); /* usable by forks only */
    }
    __atomic_store_n(&s->magic, MPROC__SYNC_BARRIER, __ATOMIC_RELEASE);
    return 0;
}

int mproc_barrier_destroy(mproc_barrier *b)
{
    mproc__barrier_state *s = barrier_state(b);
    if (!s)
        return -EINVAL;
    int r = b_lock(s, NULL, true);
    if (r == -EBUSY || r == -EDEADLK)
        return -EBUSY;
    if (r == 0)
        b_unlock(s);
    pthread_mutex_destroy(&s->m);
    __atomic_store_n(&s->magic, 0, __ATOMIC_RELEASE);
    return 0;
}

int mproc_barrier_new(mproc_barrier **out, unsigned parties,
                      mproc_barrier_action action, double timeout)
{
    if (!out || parties < 1 || parties > 65535)
        return -EINVAL;
    void *p;
    int err = mproc__sync_map_new("mproc-barrier", sizeof(mproc_barrier), &p);
    if (err < 0)
        return err;
    err = mproc_barrier_init(p, parties, action, timeout);
    if (err < 0) {
        mproc__sync_map_free(p, false);
        return err;
    }
    *out = p;
    return 0;
}

void mproc_barrier_free(mproc_barrier *b)
{
    if (b)
        mproc__sync_map_free(b, false);
}

/* The last arrival of generation g: runs the action and opens the next
 * generation, or breaks this one. Mutex held; released on return. */
static int b_release_all(mproc__barrier_state *s, uint32_t g, int idx)
{
    uint64_t w = b_load(s);
    int err = 0;
    if (s->action) {
        /* Waiters move from the futex to the mutex we hold, so our death
         * reaches them as EOWNERDEAD. */
        b_store(s, b_lo(w) | B_ACTION, (uint32_t)(w >> 32));
        mproc_barrier_action fn = b_find_action(s);
        if (!fn)
            err = MPROC_ERESOLVE;
        else if (fn() != 0)
            err = MPROC_EBROKEN;
        if (!err &&
            __atomic_load_n(&s->break_req, __ATOMIC_ACQUIRE) == ((g << 1) | 1))
            err = MPROC_EBROKEN;
    }
    if (err) {
        b_break(s);
    } else {
        w = b_load(s);
        s->count = 0;
        b_store(s, ((g + 1) & B_GENMASK) << 2, (uint32_t)(w >> 32) << 1);
    }
    b_unlock(s);
    return err ? err : idx;
}

int mproc_barrier_wait(mproc_barrier *b, double timeout)
{
    mproc__barrier_state *s = barrier_state(b);
    if (!s)
        return -EINVAL;
    if (timeout < 0)
        timeout = s->timeout;
    mproc__deadline d = mproc__deadline_from(timeout);
    int r = b_lock(s, &d, false);
    if (r < 0)
        return r;
    uint64_t w = b_load(s);
    if (b_lo(w) & B_BROKEN) {
        b_unlock(s);
        return MPROC_EBROKEN;
    }
    uint32_t g = b_gen(w);
    int idx = (int)s->count++;
    if (s->count >= s->parties)
        return b_release_all(s, g, idx);
    b_unlock(s);

    for (;;) {
        w = b_load(s);
        if (b_gen(w) != g)
            return b_outcome(w, g, idx);
        if (b_lo(w) & B_BROKEN)
            return MPROC_EBROKEN;
        if (b_lo(w) & B_ACTION) {
            /* Wait for the action's process on the mutex it holds. */
            r = b_lock(s, &d, false);
            if (r == -ETIMEDOUT) {
                __atomic_store_n(&s->break_req, (g << 1) | 1, __ATOMIC_RELEASE);
                w = b_load(s);
                return b_gen(w) != g ? b_outcome(w, g, idx) : -ETIMEDOUT;
            }
            if (r < 0)
                return r;
            b_unlock(s);
            continue;
        }
        int fr = mproc__futex_wait_until(b_futex(s), b_lo(w), &d);
        if (fr != -ETIMEDOUT && !mproc__deadline_expired(&d))
            continue;
        /* Timed out: break the barrier, unless the generation is over. */
        for (;;) {
            r = b_lock(s, NULL, true);
            if (r != -EBUSY)
                break;
            w = b_load(s);
            if (b_gen(w) != g)
                return b_outcome(w, g, idx);
            if (b_lo(w) & B_BROKEN)
                return MPROC_EBROKEN;
            if (b_lo(w) & B_ACTION) {
                __atomic_store_n(&s->break_req, (g << 1) | 1, __ATOMIC_RELEASE);
                return -ETIMEDOUT;
            }
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        }
        if (r < 0)
            return r;
        w = b_load(s);
        if (b_gen(w) != g) {
            b_unlock(s);
            return b_outcome(w, g, idx);
        }
        bool was_broken = b_lo(w) & B_BROKEN;
        b_break(s);
        b_unlock(s);
        return was_broken ? MPROC_EBROKEN : -ETIMEDOUT;
    }
}

int mproc_barrier_abort(mproc_barrier *b)
{
    mproc__barrier_state *s = barrier_state(b);
    if (!s)
        return -EINVAL;
    int r = b_lock(s, NULL, false);
    if (r < 0)
        return r;
    b_break(s);
    b_unlock(s);
    return 0;
}

int mproc_barrier_reset(mproc_barrier *b)
{
    mproc__barrier_state *s = barrier_state(b);
    if (!s)
        return -EINVAL;
    int r = b_lock(s, NULL, false);
    if (r < 0)
        return r;
    uint64_t w = b_load(s);
    if (s->count > 0 || (b_lo(w) & B_BROKEN)) {
        /* End this generation as broken; start a clean one. */
        s->count = 0;
        b_store(s, ((b_gen(w) + 1) & B_GENMASK) << 2,
                (uint32_t)(w >> 32) << 1 | 1);
    }
    b_unlock(s);
    return 0;
}

int mproc_barrier_parties(const mproc_barrier *b)
{
    mproc__barrier_state *s = barrier_state(b);
    if (!s)
        return -EINVAL;
    return (int)s->parties;
}

int mproc_barrier_n_waiting(const mproc_barrier *b)
{
    mproc__barrier_state *s = barrier_state(b);
    if (!s)
        return -EINVAL;
    if (b_lo(b_load(s)) & B_BROKEN)
        return 0;
    return (int)__atomic_load_n(&s->count, __ATOMIC_RELAXED);
}

int mproc_barrier_broken(const mproc_barrier *b)
{
    mproc__barrier_state *s = barrier_state(b);
    if (!s)
        return -EINVAL;
    return (b_lo(b_load(s)) & B_BROKEN) ? 1 : 0;
}
