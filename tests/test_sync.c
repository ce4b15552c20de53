/*
 * test_sync.c - Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event
 * and Barrier across processes: exact counts under contention, timeouts,
 * every misuse error, and the death of a holder or waiter at the worst
 * moment (SIGKILL while holding a lock, while waiting, inside a barrier
 * action). Then the same objects passed to children under fork, spawn and
 * forkserver, and the export of objects living in other mappings.
 */
#include "harness.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

/* ---- shared scratch memory and raw fork helpers ------------------------ */

typedef struct shared {
    mproc_lock lock;
    mproc_rlock rlock;
    mproc_cond cond;
    mproc_barrier bar;
    mproc_sem sem;
    mproc_event ev;
    mproc_event ev2;
    int64_t counter;
    int32_t waiting; /* cond tests: waiters registered (under the lock) */
    int32_t woken;   /* cond tests: waiters that returned 0 */
    int32_t timeouts;
    int32_t inside, max_inside; /* semaphore concurrency */
    int32_t actions;            /* barrier actions run */
    int32_t results[64];
    int32_t flag;
} shared;

static shared *sh;

static void shared_setup(void)
{
    void *p = mmap(NULL, sizeof(shared), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    sh = p;
}

static void shared_teardown(void)
{
    munmap(sh, sizeof(shared));
    sh = NULL;
}

typedef int (*child_fn)(int arg);

static pid_t fork_child(child_fn fn, int arg)
{
    fflush(NULL);
    pid_t p = fork();
    CHECK(p >= 0);
    if (p == 0)
        mproc_test_exit(fn(arg));
    return p;
}

/* Exit code, or -signal. */
static int reap(pid_t p)
{
    int st;
    CHECK_EQ(waitpid(p, &st, 0), p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

static void kill_reap(pid_t p)
{
    kill(p, SIGKILL);
    CHECK_EQ(reap(p), -SIGKILL);
}

static int32_t ld(const int32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

static void inc(int32_t *p)
{
    __atomic_add_fetch(p, 1, __ATOMIC_SEQ_CST);
}

/* Polls until *p >= v (10 s at most). */
static void await_at_least(const int32_t *p, int32_t v)
{
    double t0 = mproc_test_now();
    while (ld(p) < v) {
        CHECK(mproc_test_now() - t0 < 10);
        usleep(1000);
    }
}

static void msleep(int ms)
{
    usleep((useconds_t)ms * 1000);
}

/* ---- Lock ------------------------------------------------------------- */

static int c_hold_lock(int secs)
{
    if (mproc_lock_acquire(&sh->lock, -1) != 0)
        return 10;
    inc(&sh->flag);
    sleep((unsigned)secs);
    return mproc_lock_release(&sh->lock) == 0 ? 0 : 11;
}

static void test_lock_basic(void)
{
    shared_setup();
    mproc_lock *l;
    CHECK_OK(mproc_lock_new(&l));
    CHECK_EQ(mproc_lock_locked(l), 0);
    CHECK_EQ(mproc_lock_owned(l), 0);
    CHECK_OK(mproc_lock_acquire(l, -1));
    CHECK_EQ(mproc_lock_locked(l), 1);
    CHECK_EQ(mproc_lock_owned(l), 1);
    /* Re-acquiring a Lock you hold: EDEADLK forever, a timeout waits. */
    CHECK_ERR(mproc_lock_acquire(l, -1), -EDEADLK);
    CHECK_ERR(mproc_lock_acquire(l, 0), -ETIMEDOUT);
    double t0 = mproc_test_now();
    CHECK_ERR(mproc_lock_acquire(l, 0.1), -ETIMEDOUT);
    CHECK(mproc_test_now() - t0 >= 0.099);
    CHECK_OK(mproc_lock_release(l));
    CHECK_ERR(mproc_lock_release(l), MPROC_ENOTOWNER);
    CHECK_OK(mproc_lock_acquire(l, 0));
    CHECK_OK(mproc_lock_release(l));
    CHECK_OK(mproc_lock_acquire(l, 1.5));
    CHECK_OK(mproc_lock_release(l));
    mproc_lock_free(l);
    mproc_lock_free(NULL);

    /* Held by another process: try fails, a timed acquire times out, and
     * succeeds once it is released. */
    CHECK_OK(mproc_lock_init(&sh->lock));
    pid_t p = fork_child(c_hold_lock, 1);
    await_at_least(&sh->flag, 1);
    CHECK_EQ(mproc_lock_locked(&sh->lock), 1);
    CHECK_EQ(mproc_lock_owned(&sh->lock), 0);
    CHECK_ERR(mproc_lock_acquire(&sh->lock, 0), -ETIMEDOUT);
    CHECK_ERR(mproc_lock_release(&sh->lock), MPROC_ENOTOWNER);
    t0 = mproc_test_now();
    CHECK_ERR(mproc_lock_acquire(&sh->lock, 0.2), -ETIMEDOUT);
    double dt = mproc_test_now() - t0;
    CHECK(dt >= 0.19 && dt < 0.9);
    CHECK_ERR(mproc_lock_destroy(&sh->lock), -EBUSY);
    CHECK_OK(mproc_lock_acquire(&sh->lock, 5));
    CHECK_EQ(reap(p), 0);
    CHECK_OK(mproc_lock_release(&sh->lock));
    CHECK_OK(mproc_lock_destroy(&sh->lock));
    CHECK_ERR(mproc_lock_acquire(&sh->lock, 0), -EINVAL);
    shared_teardown();
}

static void *t_release_other(void *arg)
{
    return (void *)(intptr_t)mproc_lock_release(arg);
}

static void *t_acquire_exit(void *arg)
{
    return (void *)(intptr_t)mproc_lock_acquire(arg, -1);
}

static void test_lock_threads(void)
{
    mproc_lock l;
    CHECK_OK(mproc_lock_init(&l));
    CHECK_OK(mproc_lock_acquire(&l, -1));
    /* Owned per thread: another thread may not release it. */
    pthread_t t;
    void *res;
    CHECK_EQ(pthread_create(&t, NULL, t_release_other, &l), 0);
    CHECK_EQ(pthread_join(t, &res), 0);
    CHECK_EQ((intptr_t)res, MPROC_ENOTOWNER);
    CHECK_OK(mproc_lock_release(&l));
    /* A thread that exits holding it: the next acquirer learns so. */
    CHECK_EQ(pthread_create(&t, NULL, t_acquire_exit, &l), 0);
    CHECK_EQ(pthread_join(t, &res), 0);
    CHECK_EQ((intptr_t)res, 0);
    CHECK_ERR(mproc_lock_acquire(&l, 1), -EOWNERDEAD);
    CHECK_OK(mproc_lock_consistent(&l));
    CHECK_OK(mproc_lock_release(&l));
    CHECK_OK(mproc_lock_destroy(&l));
}

static void test_lock_errors(void)
{
    mproc_lock l;
    mproc_rlock rl;
    memset(&l, 0x5a, sizeof l);
    CHECK_ERR(mproc_lock_acquire(&l, 0), -EINVAL);
    CHECK_ERR(mproc_lock_release(&l), -EINVAL);
    CHECK_ERR(mproc_lock_consistent(&l), -EINVAL);
    CHECK_ERR(mproc_lock_locked(&l), -EINVAL);
    CHECK_ERR(mproc_lock_owned(&l), -EINVAL);
    CHECK_ERR(mproc_lock_destroy(&l), -EINVAL);
    CHECK_ERR(mproc_lock_acquire(NULL, 0), -EINVAL);
    CHECK_ERR(mproc_lock_init(NULL), -EINVAL);
    CHECK_ERR(mproc_lock_new(NULL), -EINVAL);
    CHECK_ERR(mproc_rlock_new(NULL), -EINVAL);
    /* A Lock is not an RLock and vice versa. */
    CHECK_OK(mproc_lock_init(&l));
    CHECK_OK(mproc_rlock_init(&rl));
    CHECK_ERR(mproc_rlock_acquire((mproc_rlock *)&l, 0), -EINVAL);
    CHECK_ERR(mproc_lock_acquire((mproc_lock *)&rl, 0), -EINVAL);
    CHECK_ERR(mproc_sem_acquire((mproc_sem *)&l, 0), -EINVAL);
    /* consistent: only the holder, only after an owner death. */
    CHECK_ERR(mproc_lock_consistent(&l), MPROC_ENOTOWNER);
    CHECK_OK(mproc_lock_acquire(&l, 0));
    CHECK_ERR(mproc_lock_consistent(&l), -EINVAL);
    /* destroy releases a lock the caller holds. */
    CHECK_OK(mproc_lock_destroy(&l));
    CHECK_ERR(mproc_lock_release(&l), -EINVAL);
    CHECK_OK(mproc_rlock_destroy(&rl));
    CHECK_ERR(mproc_rlock_destroy(&rl), -EINVAL);
}

/* Exact counter: N processes increment a plain int64 under the lock with
 * yields inside the critical section to invite races. */
enum { CNT_PROCS = 4, CNT_ITERS = 5000 };

static int c_count(int which)
{
    while (ld(&sh->flag) == 0) /* start together */
        sched_yield();
    for (int i = 0; i < CNT_ITERS; i++) {
        int r = which ? mproc_rlock_acquire(&sh->rlock, -1)
                      : mproc_lock_acquire(&sh->lock, -1);
        if (r != 0)
            return 20;
        int64_t v = sh->counter;
        if (i % 16 == 0)
            sched_yield();
        sh->counter = v + 1;
        r = which ? mproc_rlock_release(&sh->rlock)
                  : mproc_lock_release(&sh->lock);
        if (r != 0)
            return 21;
    }
    return 0;
}

static void test_lock_exact_counter(void)
{
    shared_setup();
    CHECK_OK(mproc_lock_init(&sh->lock));
    CHECK_OK(mproc_rlock_init(&sh->rlock));
    for (int which = 0; which < 2; which++) {
        sh->counter = 0;
        sh->flag = 0;
        pid_t p[CNT_PROCS];
        for (int i = 0; i < CNT_PROCS; i++)
            p[i] = fork_child(c_count, which);
        __atomic_store_n(&sh->flag, 1, __ATOMIC_SEQ_CST);
        for (int i = 0; i < CNT_PROCS; i++)
            CHECK_EQ(reap(p[i]), 0);
        CHECK_EQ(sh->counter, CNT_PROCS * CNT_ITERS);
    }
    CHECK_OK(mproc_lock_destroy(&sh->lock));
    CHECK_OK(mproc_rlock_destroy(&sh->rlock));
    shared_teardown();
}

/* Marks *flag, then waits to be killed holding whatever it took. */
static int hold_until_killed(int32_t *flag)
{
    inc(flag);
    for (;;)
        pause();
    return 0;
}

static int c_hold_forever(int which)
{
    int r = which == 0   ? mproc_lock_acquire(&sh->lock, -1)
            : which == 1 ? mproc_rlock_acquire(&sh->rlock, -1)
                         : mproc_cond_acquire(&sh->cond, -1);
    if (which == 1 && r == 0)
        r = mproc_rlock_acquire(&sh->rlock, -1); /* count 2 */
    return r != 0 ? 30 : hold_until_killed(&sh->flag);
}

/* SIGKILL the holder: the next acquirer gets EOWNERDEAD and may repair;
 * a holder that does not repair makes the lock unrecoverable. */
static void test_lock_owner_killed(void)
{
    shared_setup();
    CHECK_OK(mproc_lock_init(&sh->lock));
    pid_t p = fork_child(c_hold_forever, 0);
    await_at_least(&sh->flag, 1);
    CHECK_ERR(mproc_lock_acquire(&sh->lock, 0), -ETIMEDOUT);
    kill_reap(p);
    CHECK_ERR(mproc_lock_acquire(&sh->lock, 0), -EOWNERDEAD);
    CHECK_EQ(mproc_lock_owned(&sh->lock), 1);
    CHECK_OK(mproc_lock_consistent(&sh->lock));
    CHECK_OK(mproc_lock_release(&sh->lock));
    CHECK_OK(mproc_lock_acquire(&sh->lock, 0));
    CHECK_OK(mproc_lock_release(&sh->lock));

    /* A blocked acquirer is handed the lock as soon as the holder dies. */
    sh->flag = 0;
    p = fork_child(c_hold_forever, 0);
    await_at_least(&sh->flag, 1);
    pid_t killer = fork();
    if (killer == 0) {
        usleep(200000);
        kill(p, SIGKILL);
        mproc_test_exit(0);
    }
    double t0 = mproc_test_now();
    CHECK_ERR(mproc_lock_acquire(&sh->lock, 10), -EOWNERDEAD);
    CHECK(mproc_test_now() - t0 < 5);
    CHECK_EQ(reap(killer), 0);
    CHECK_EQ(reap(p), -SIGKILL);
    /* Not made consistent: unusable for good. */
    CHECK_OK(mproc_lock_release(&sh->lock));
    CHECK_ERR(mproc_lock_acquire(&sh->lock, 0), -ENOTRECOVERABLE);
    CHECK_ERR(mproc_lock_acquire(&sh->lock, -1), -ENOTRECOVERABLE);
    CHECK_ERR(mproc_lock_acquire(&sh->lock, 0.05), -ENOTRECOVERABLE);
    CHECK_OK(mproc_lock_destroy(&sh->lock));
    CHECK_OK(mproc_lock_init(&sh->lock));
    CHECK_OK(mproc_lock_acquire(&sh->lock, 0));
    CHECK_OK(mproc_lock_destroy(&sh->lock));
    shared_teardown();
}

static int c_acquire_report(int slot)
{
    inc(&sh->waiting);
    int r = mproc_lock_acquire(&sh->lock, 10);
    sh->results[slot] = r;
    if (r == -EOWNERDEAD)
        mproc_lock_consistent(&sh->lock);
    if (r == 0 || r == -EOWNERDEAD)
        mproc_lock_release(&sh->lock);
    return 0;
}

/* Several acquirers blocked (in the gate, then in the mutex) when the
 * holder dies: exactly one learns of the death, the others then get the
 * repaired lock normally. */
static void test_lock_owner_killed_many_waiters(void)
{
    shared_setup();
    CHECK_OK(mproc_lock_init(&sh->lock));
    for (int round = 0; round < 2; round++) {
        sh->flag = 0;
        sh->waiting = 0;
        pid_t h = fork_child(c_hold_forever, 0);
        await_at_least(&sh->flag, 1);
        pid_t w[3];
        for (int i = 0; i < 3; i++)
            w[i] = fork_child(c_acquire_report, i);
        await_at_least(&sh->waiting, 3);
        msleep(round == 0 ? 2 : 40); /* in the gate / past it */
        kill_reap(h);
        int dead = 0, ok = 0;
        for (int i = 0; i < 3; i++) {
            CHECK_EQ(reap(w[i]), 0);
            dead += sh->results[i] == -EOWNERDEAD;
            ok += sh->results[i] == 0;
        }
        CHECK_EQ(dead, 1);
        CHECK_EQ(ok, 2);
    }
    CHECK_OK(mproc_lock_destroy(&sh->lock));
    shared_teardown();
}

static void *t_count(void *arg)
{
    (void)arg;
    for (int i = 0; i < CNT_ITERS; i++) {
        if (mproc_lock_acquire(&sh->lock, 5) != 0)
            return (void *)1;
        int64_t v = sh->counter;
        if (i % 32 == 0)
            sched_yield();
        sh->counter = v + 1;
        mproc_lock_release(&sh->lock);
    }
    return NULL;
}

static int c_threads_count(int nthreads)
{
    pthread_t t[4];
    int bad = 0;
    while (ld(&sh->flag) == 0)
        sched_yield();
    for (int i = 0; i < nthreads; i++)
        bad |= pthread_create(&t[i], NULL, t_count, NULL) != 0;
    for (int i = 0; i < nthreads; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad |= r != NULL;
    }
    return bad;
}

/* Threads of two processes contend with finite timeouts: exact count. */
static void test_lock_threads_and_processes(void)
{
    shared_setup();
    CHECK_OK(mproc_lock_init(&sh->lock));
    pid_t p = fork_child(c_threads_count, 3);
    __atomic_store_n(&sh->flag, 1, __ATOMIC_SEQ_CST);
    CHECK_EQ(c_threads_count(2), 0);
    CHECK_EQ(reap(p), 0);
    CHECK_EQ(sh->counter, 5 * CNT_ITERS);
    CHECK_OK(mproc_lock_destroy(&sh->lock));
    shared_teardown();
}

static int c_not_owner(int unused)
{
    if (mproc_lock_owned(&sh->lock) != 0)
        return 40;
    if (mproc_lock_release(&sh->lock) != MPROC_ENOTOWNER)
        return 41;
    if (mproc_lock_acquire(&sh->lock, 0) != -ETIMEDOUT)
        return 42;
    if (mproc_rlock_count(&sh->rlock) != 0)
        return 43;
    if (mproc_rlock_acquire(&sh->rlock, 0) != -ETIMEDOUT)
        return 44;
    return 0;
}

/* A fork child does not inherit its parent's ownership. */
static void test_lock_fork_child_not_owner(void)
{
    shared_setup();
    CHECK_OK(mproc_lock_init(&sh->lock));
    CHECK_OK(mproc_rlock_init(&sh->rlock));
    CHECK_OK(mproc_lock_acquire(&sh->lock, -1));
    CHECK_OK(mproc_rlock_acquire(&sh->rlock, -1));
    CHECK_EQ(reap(fork_child(c_not_owner, 0)), 0);
    CHECK_OK(mproc_lock_release(&sh->lock));
    CHECK_OK(mproc_rlock_release(&sh->rlock));
    CHECK_OK(mproc_lock_destroy(&sh->lock));
    CHECK_OK(mproc_rlock_destroy(&sh->rlock));
    shared_teardown();
}

/* ---- RLock ------------------------------------------------------------ */

static void test_rlock(void)
{
    shared_setup();
    mproc_rlock *l;
    CHECK_OK(mproc_rlock_new(&l));
    CHECK_EQ(mproc_rlock_count(l), 0);
    CHECK_OK(mproc_rlock_acquire(l, -1));
    CHECK_OK(mproc_rlock_acquire(l, 0));
    CHECK_OK(mproc_rlock_acquire(l, 1));
    CHECK_EQ(mproc_rlock_count(l), 3);
    CHECK_EQ(mproc_rlock_locked(l), 1);
    CHECK_OK(mproc_rlock_release(l));
    CHECK_OK(mproc_rlock_release(l));
    CHECK_EQ(mproc_rlock_locked(l), 1);
    CHECK_OK(mproc_rlock_release(l));
    CHECK_EQ(mproc_rlock_locked(l), 0);
    CHECK_ERR(mproc_rlock_release(l), MPROC_ENOTOWNER);
    mproc_rlock_free(l);

    /* Killed holding it twice: the next owner has count 1. */
    CHECK_OK(mproc_rlock_init(&sh->rlock));
    pid_t p = fork_child(c_hold_forever, 1);
    await_at_least(&sh->flag, 1);
    CHECK_ERR(mproc_rlock_acquire(&sh->rlock, 0.05), -ETIMEDOUT);
    kill_reap(p);
    CHECK_ERR(mproc_rlock_acquire(&sh->rlock, 1), -EOWNERDEAD);
    CHECK_EQ(mproc_rlock_count(&sh->rlock), 1);
    CHECK_OK(mproc_rlock_acquire(&sh->rlock, 0));
    CHECK_OK(mproc_rlock_consistent(&sh->rlock));
    CHECK_OK(mproc_rlock_release(&sh->rlock));
    CHECK_OK(mproc_rlock_release(&sh->rlock));
    CHECK_EQ(mproc_rlock_locked(&sh->rlock), 0);
    CHECK_OK(mproc_rlock_destroy(&sh->rlock));
    shared_teardown();
}

/* ---- Semaphore -------------------------------------------------------- */

static void test_sem_basic(void)
{
    mproc_sem *s;
    CHECK_OK(mproc_sem_new(&s, 2));
    CHECK_EQ(mproc_sem_value(s), 2);
    CHECK_EQ(mproc_sem_bounded(s), 0);
    CHECK_OK(mproc_sem_acquire(s, 0));
    CHECK_OK(mproc_sem_acquire(s, -1));
    CHECK_ERR(mproc_sem_acquire(s, 0), -ETIMEDOUT);
    double t0 = mproc_test_now();
    CHECK_ERR(mproc_sem_acquire(s, 0.1), -ETIMEDOUT);
    double dt = mproc_test_now() - t0;
    CHECK(dt >= 0.099 && dt < 1);
    /* Unbounded: releases beyond the start value are fine. */
    for (int i = 0; i < 5; i++)
        CHECK_OK(mproc_sem_release(s));
    CHECK_EQ(mproc_sem_value(s), 5);
    CHECK_OK(mproc_sem_reset(s, 1));
    CHECK_EQ(mproc_sem_value(s), 1);
    CHECK_OK(mproc_sem_reset(s, MPROC_SEM_VALUE_MAX));
    CHECK_ERR(mproc_sem_release(s), -EOVERFLOW);
    mproc_sem_free(s);

    CHECK_OK(mproc_sem_new_bounded(&s, 2));
    CHECK_EQ(mproc_sem_bounded(s), 1);
    CHECK_ERR(mproc_sem_release(s), MPROC_EBOUND);
    CHECK_OK(mproc_sem_acquire(s, 0));
    CHECK_OK(mproc_sem_release(s));
    CHECK_ERR(mproc_sem_release(s), MPROC_EBOUND);
    CHECK_EQ(mproc_sem_value(s), 2);
    CHECK_ERR(mproc_sem_reset(s, 3), MPROC_EBOUND);
    CHECK_OK(mproc_sem_reset(s, 0));
    CHECK_ERR(mproc_sem_acquire(s, 0), -ETIMEDOUT);
    mproc_sem_free(s);

    mproc_sem st;
    CHECK_ERR(mproc_sem_init(&st, MPROC_SEM_VALUE_MAX + 1u), -EINVAL);
    CHECK_ERR(mproc_sem_init(NULL, 1), -EINVAL);
    CHECK_ERR(mproc_sem_new(NULL, 1), -EINVAL);
    CHECK_OK(mproc_sem_init(&st, 0));
    CHECK_OK(mproc_sem_destroy(&st));
    CHECK_ERR(mproc_sem_release(&st), -EINVAL);
    CHECK_ERR(mproc_sem_value(&st), -EINVAL);
    CHECK_ERR(mproc_sem_destroy(&st), -EINVAL);
}

static int c_sem_user(int i)
{
    if (mproc_sem_acquire(&sh->sem, 10) != 0)
        return 50;
    int32_t n = __atomic_add_fetch(&sh->inside, 1, __ATOMIC_SEQ_CST);
    int32_t m = ld(&sh->max_inside);
    while (n > m &&
           !__atomic_compare_exchange_n(&sh->max_inside, &m, n, false,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        ;
    msleep(30);
    __atomic_sub_fetch(&sh->inside, 1, __ATOMIC_SEQ_CST);
    return mproc_sem_release(&sh->sem) == 0 ? 0 : 51;
}

/* Semaphore(3) limits 8 processes to 3 at a time. */
static void test_sem_limits_processes(void)
{
    shared_setup();
    CHECK_OK(mproc_sem_init_bounded(&sh->sem, 3));
    pid_t p[8];
    for (int i = 0; i < 8; i++)
        p[i] = fork_child(c_sem_user, i);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(reap(p[i]), 0);
    CHECK(sh->max_inside <= 3);
    CHECK(sh->max_inside >= 2);
    CHECK_EQ(mproc_sem_value(&sh->sem), 3);
    shared_teardown();
}

static int c_sem_take_and_hang(int n)
{
    for (int i = 0; i < n; i++)
        if (mproc_sem_acquire(&sh->sem, -1) != 0)
            return 60;
    inc(&sh->flag);
    for (;;)
        pause();
    return 0;
}

static int c_sem_wait(int unused)
{
    inc(&sh->waiting);
    int r = mproc_sem_acquire(&sh->sem, 10);
    if (r == 0)
        inc(&sh->woken);
    return r == 0 ? 0 : 61;
}

/* Semaphores have no owner: a killed holder's units are lost (as in
 * Python) until reset; a killed waiter strands nobody. */
static void test_sem_holder_and_waiter_killed(void)
{
    shared_setup();
    CHECK_OK(mproc_sem_init(&sh->sem, 2));
    pid_t p = fork_child(c_sem_take_and_hang, 2);
    await_at_least(&sh->flag, 1);
    kill_reap(p);
    CHECK_EQ(mproc_sem_value(&sh->sem), 0);
    CHECK_ERR(mproc_sem_acquire(&sh->sem, 0.05), -ETIMEDOUT);
    CHECK_OK(mproc_sem_reset(&sh->sem, 2));
    CHECK_OK(mproc_sem_acquire(&sh->sem, 0));
    CHECK_OK(mproc_sem_acquire(&sh->sem, 0));

    /* Two waiters; one is killed while asleep; a release still wakes the
     * other. */
    pid_t w1 = fork_child(c_sem_wait, 0);
    pid_t w2 = fork_child(c_sem_wait, 0);
    await_at_least(&sh->waiting, 2);
    msleep(50);
    kill_reap(w1);
    CHECK_OK(mproc_sem_release(&sh->sem));
    CHECK_EQ(reap(w2), 0);
    CHECK_EQ(sh->woken, 1);
    CHECK_EQ(mproc_sem_value(&sh->sem), 0);
    /* reset wakes every waiter that can now proceed. */
    pid_t w[3];
    for (int i = 0; i < 3; i++)
        w[i] = fork_child(c_sem_wait, 0);
    await_at_least(&sh->waiting, 5);
    msleep(30);
    CHECK_OK(mproc_sem_reset(&sh->sem, 3));
    for (int i = 0; i < 3; i++)
        CHECK_EQ(reap(w[i]), 0);
    CHECK_EQ(sh->woken, 4);
    shared_teardown();
}

/* ---- Event ------------------------------------------------------------ */

static int c_event_wait(int timeout_ms)
{
    inc(&sh->waiting);
    int r = mproc_event_wait(&sh->ev, timeout_ms < 0 ? -1 : timeout_ms / 1e3);
    if (r == 0)
        inc(&sh->woken);
    return r == 0 ? 0 : r == -ETIMEDOUT ? 1 : 2;
}

static void test_event(void)
{
    shared_setup();
    mproc_event *e;
    CHECK_OK(mproc_event_new(&e));
    CHECK_EQ(mproc_event_is_set(e), 0);
    CHECK_ERR(mproc_event_wait(e, 0), -ETIMEDOUT);
    double t0 = mproc_test_now();
    CHECK_ERR(mproc_event_wait(e, 0.1), -ETIMEDOUT);
    CHECK(mproc_test_now() - t0 >= 0.099);
    CHECK_OK(mproc_event_set(e));
    CHECK_OK(mproc_event_set(e));
    CHECK_EQ(mproc_event_is_set(e), 1);
    CHECK_OK(mproc_event_wait(e, 0));
    CHECK_OK(mproc_event_wait(e, -1));
    CHECK_OK(mproc_event_clear(e));
    CHECK_OK(mproc_event_clear(e));
    CHECK_EQ(mproc_event_is_set(e), 0);
    mproc_event_free(e);

    /* set wakes every waiter, including after a waiter was killed. */
    CHECK_OK(mproc_event_init(&sh->ev));
    pid_t w[4];
    for (int i = 0; i < 4; i++)
        w[i] = fork_child(c_event_wait, -1);
    pid_t timed = fork_child(c_event_wait, 100);
    await_at_least(&sh->waiting, 5);
    CHECK_EQ(reap(timed), 1);
    kill_reap(w[0]);
    CHECK_EQ(sh->woken, 0);
    CHECK_OK(mproc_event_set(&sh->ev));
    for (int i = 1; i < 4; i++)
        CHECK_EQ(reap(w[i]), 0);
    CHECK_EQ(sh->woken, 3);
    CHECK_OK(mproc_event_destroy(&sh->ev));
    CHECK_ERR(mproc_event_set(&sh->ev), -EINVAL);
    CHECK_ERR(mproc_event_is_set(&sh->ev), -EINVAL);
    CHECK_ERR(mproc_event_init(NULL), -EINVAL);
    CHECK_ERR(mproc_event_new(NULL), -EINVAL);
    shared_teardown();
}

/* ---- Condition -------------------------------------------------------- */

static int c_cond_waiter(int timeout_ms)
{
    if (mproc_cond_acquire(&sh->cond, -1) != 0)
        return 70;
    sh->waiting++;
    int r = mproc_cond_wait(&sh->cond, timeout_ms < 0 ? -1 : timeout_ms / 1e3);
    if (r == 0)
        sh->woken++;
    else if (r == -ETIMEDOUT)
        sh->timeouts++;
    if (mproc_cond_release(&sh->cond) != 0)
        return 71;
    return r == 0 ? 0 : r == -ETIMEDOUT ? 1 : 72;
}

/* *p read with c's lock held. */
static int32_t locked_read(mproc_cond *c, const int32_t *p)
{
    CHECK_OK(mproc_cond_acquire(c, -1));
    int32_t v = *p;
    CHECK_OK(mproc_cond_release(c));
    return v;
}

static void await_locked(mproc_cond *c, const int32_t *p, int32_t v)
{
    double t0 = mproc_test_now();
    while (locked_read(c, p) < v) {
        CHECK(mproc_test_now() - t0 < 10);
        usleep(1000);
    }
}

/* notify(1) wakes exactly one of many waiters; notify(n) exactly n. */
static void test_cond_notify_exact(void)
{
    enum { W = 10 };
    shared_setup();
    CHECK_OK(mproc_cond_init(&sh->cond, MPROC_COND_LOCK));
    pid_t p[W];
    for (int i = 0; i < W; i++)
        p[i] = fork_child(c_cond_waiter, -1);
    await_locked(&sh->cond, &sh->waiting, W);
    int expect = 0;
    const unsigned steps[] = {1, 1, 3, 1, 2};
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        CHECK_OK(mproc_cond_acquire(&sh->cond, -1));
        CHECK_EQ(mproc_cond_notify(&sh->cond, steps[s]), steps[s]);
        CHECK_OK(mproc_cond_release(&sh->cond));
        expect += (int)steps[s];
        await_locked(&sh->cond, &sh->woken, expect);
        msleep(100); /* would anyone else wake? */
        CHECK_EQ(locked_read(&sh->cond, &sh->woken), expect);
    }
    CHECK_OK(mproc_cond_acquire(&sh->cond, -1));
    CHECK_EQ(mproc_cond_notify_all(&sh->cond), W - expect);
    CHECK_EQ(mproc_cond_notify_all(&sh->cond), 0);
    CHECK_EQ(mproc_cond_notify(&sh->cond, 5), 0);
    CHECK_OK(mproc_cond_release(&sh->cond));
    for (int i = 0; i < W; i++)
        CHECK_EQ(reap(p[i]), 0);
    CHECK_EQ(sh->woken, W);
    CHECK_OK(mproc_cond_destroy(&sh->cond));
    shared_teardown();
}

static int c_cond_racer(int seed)
{
    /* Short random timeouts racing against notifies. */
    unsigned s = (unsigned)seed * 2654435761u;
    for (int i = 0; i < 100; i++) {
        s = s * 1103515245u + 12345u;
        double to = (double)(s >> 16 & 15) * 1e-3;
        if (mproc_cond_acquire(&sh->cond, -1) != 0)
            return 80;
        int r = mproc_cond_wait(&sh->cond, to);
        if (r == 0)
            sh->woken++;
        else if (r != -ETIMEDOUT)
            return 81;
        mproc_cond_release(&sh->cond);
    }
    return 0;
}

/* With timeouts racing notifies, the number of waits that return 0 is
 * exactly the number of waiters notify selected. */
static void test_cond_timeouts_stay_exact(void)
{
    shared_setup();
    CHECK_OK(mproc_cond_init(&sh->cond, MPROC_COND_RLOCK));
    pid_t p[4];
    for (int i = 0; i < 4; i++)
        p[i] = fork_child(c_cond_racer, i + 1);
    int64_t selected = 0;
    int alive = 4;
    while (alive > 0) {
        CHECK_OK(mproc_cond_acquire(&sh->cond, -1));
        int n = mproc_cond_notify(&sh->cond, 1 + (unsigned)(selected % 3));
        CHECK(n >= 0);
        selected += n;
        CHECK_OK(mproc_cond_release(&sh->cond));
        usleep(1000);
        alive = 0;
        for (int i = 0; i < 4; i++) {
            if (p[i] > 0) {
                int st;
                pid_t r = waitpid(p[i], &st, WNOHANG);
                if (r == p[i]) {
                    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
                    p[i] = -1;
                } else {
                    alive++;
                }
            }
        }
    }
    CHECK(selected > 0);
    CHECK_EQ(sh->woken, selected);
    CHECK_OK(mproc_cond_destroy(&sh->cond));
    shared_teardown();
}

static int pred_flag(void *arg)
{
    return *(volatile int32_t *)arg != 0;
}

static int c_set_flag_notify(int delay_ms)
{
    msleep(delay_ms);
    if (mproc_cond_acquire(&sh->cond, -1) != 0)
        return 90;
    sh->flag = 1;
    mproc_cond_notify_all(&sh->cond);
    mproc_cond_release(&sh->cond);
    return 0;
}

static void test_cond_wait_and_errors(void)
{
    shared_setup();
    mproc_cond *c;
    CHECK_ERR(mproc_cond_new(&c, (mproc_cond_lock_type)7), -EINVAL);
    CHECK_ERR(mproc_cond_new(NULL, MPROC_COND_LOCK), -EINVAL);
    CHECK_OK(mproc_cond_new(&c, MPROC_COND_RLOCK));
    /* Without the lock: nothing to wait on or notify. */
    CHECK_ERR(mproc_cond_wait(c, 0), MPROC_ENOTOWNER);
    CHECK_ERR(mproc_cond_notify(c, 1), MPROC_ENOTOWNER);
    CHECK_ERR(mproc_cond_notify_all(c), MPROC_ENOTOWNER);
    CHECK_ERR(mproc_cond_release(c), MPROC_ENOTOWNER);
    CHECK_ERR(mproc_cond_wait_for(c, pred_flag, &sh->flag, 0), MPROC_ENOTOWNER);
    /* RLock: wait releases every level and restores them. */
    CHECK_OK(mproc_cond_acquire(c, -1));
    CHECK_OK(mproc_cond_acquire(c, -1));
    CHECK_ERR(mproc_cond_wait(c, 0), -ETIMEDOUT);
    double t0 = mproc_test_now();
    CHECK_ERR(mproc_cond_wait(c, 0.1), -ETIMEDOUT);
    CHECK(mproc_test_now() - t0 >= 0.099);
    CHECK_ERR(mproc_cond_wait_for(c, NULL, NULL, 0), -EINVAL);
    CHECK_ERR(mproc_cond_wait_for(c, pred_flag, &sh->flag, 0.05), -ETIMEDOUT);
    CHECK_EQ(mproc_cond_notify(c, 1), 0);
    CHECK_OK(mproc_cond_release(c));
    CHECK_OK(mproc_cond_release(c));
    CHECK_ERR(mproc_cond_release(c), MPROC_ENOTOWNER);
    mproc_cond_free(c);

    /* wait_for sees a predicate another process makes true. */
    CHECK_OK(mproc_cond_init(&sh->cond, MPROC_COND_LOCK));
    pid_t p = fork_child(c_set_flag_notify, 100);
    CHECK_OK(mproc_cond_acquire(&sh->cond, -1));
    CHECK_ERR(mproc_cond_acquire(&sh->cond, -1), -EDEADLK);
    CHECK_OK(mproc_cond_wait_for(&sh->cond, pred_flag, &sh->flag, 10));
    CHECK_EQ(sh->flag, 1);
    CHECK_OK(mproc_cond_wait_for(&sh->cond, pred_flag, &sh->flag, 0));
    CHECK_OK(mproc_cond_release(&sh->cond));
    CHECK_EQ(reap(p), 0);
    CHECK_OK(mproc_cond_destroy(&sh->cond));
    CHECK_ERR(mproc_cond_acquire(&sh->cond, 0), -EINVAL);
    shared_teardown();
}

/* The condition's lock holder is killed: the next acquirer gets
 * EOWNERDEAD and sleeping waiters are woken (their state is suspect). */
static void test_cond_lock_owner_killed(void)
{
    shared_setup();
    CHECK_OK(mproc_cond_init(&sh->cond, MPROC_COND_RLOCK));
    pid_t w = fork_child(c_cond_waiter, -1);
    await_locked(&sh->cond, &sh->waiting, 1);
    pid_t h = fork_child(c_hold_forever, 2);
    await_at_least(&sh->flag, 1);
    kill_reap(h);
    CHECK_ERR(mproc_cond_acquire(&sh->cond, 5), -EOWNERDEAD);
    CHECK_OK(mproc_cond_consistent(&sh->cond));
    CHECK_OK(mproc_cond_release(&sh->cond));
    CHECK_EQ(reap(w), 0);
    CHECK_EQ(sh->woken, 1);
    /* Business as usual afterwards. */
    sh->waiting = 0;
    sh->woken = 0;
    w = fork_child(c_cond_waiter, -1);
    await_locked(&sh->cond, &sh->waiting, 1);
    CHECK_OK(mproc_cond_acquire(&sh->cond, -1));
    CHECK_EQ(mproc_cond_notify(&sh->cond, 1), 1);
    CHECK_OK(mproc_cond_release(&sh->cond));
    CHECK_EQ(reap(w), 0);
    CHECK_OK(mproc_cond_destroy(&sh->cond));
    shared_teardown();
}

/* A waiter killed while waiting: notify_all still reaches every live one,
 * and the condition keeps working. */
static void test_cond_waiter_killed(void)
{
    shared_setup();
    CHECK_OK(mproc_cond_init(&sh->cond, MPROC_COND_LOCK));
    pid_t w[3];
    for (int i = 0; i < 3; i++)
        w[i] = fork_child(c_cond_waiter, -1);
    await_locked(&sh->cond, &sh->waiting, 3);
    kill_reap(w[1]);
    CHECK_OK(mproc_cond_acquire(&sh->cond, -1));
    CHECK_EQ(mproc_cond_notify_all(&sh->cond), 3); /* dead one included */
    CHECK_OK(mproc_cond_release(&sh->cond));
    CHECK_EQ(reap(w[0]), 0);
    CHECK_EQ(reap(w[2]), 0);
    CHECK_EQ(sh->woken, 2);
    pid_t x = fork_child(c_cond_waiter, -1);
    await_locked(&sh->cond, &sh->waiting, 4);
    CHECK_OK(mproc_cond_acquire(&sh->cond, -1));
    CHECK_EQ(mproc_cond_notify(&sh->cond, 1), 1);
    CHECK_OK(mproc_cond_release(&sh->cond));
    CHECK_EQ(reap(x), 0);
    CHECK_OK(mproc_cond_destroy(&sh->cond));
    shared_teardown();
}

/* ---- Condition on a caller's lock ------------------------------------- */

/* Lives in anonymous shared memory, for fork children. */
typedef struct shared_cv {
    mproc_lock lock;
    mproc_rlock rlock;
    mproc_cond c1, c2; /* both on lock */
    mproc_cond rc;     /* on rlock */
    int32_t waiting[2], woken[2], results[2];
    int32_t flag;
} shared_cv;

static shared_cv *cv;

/* Waits on c1 (which 0) or c2 (1) until flag says so; records the result
 * and that the lock was held on return. */
static int c_cv_waiter(int which)
{
    mproc_cond *c = which ? &cv->c2 : &cv->c1;
    if (mproc_cond_acquire(c, -1) != 0)
        return 40;
    cv->waiting[which]++;
    int r = mproc_cond_wait(c, -1);
    cv->results[which] = r;
    if (r == 0 || r == -EOWNERDEAD)
        cv->woken[which]++;
    if (r == 0 && mproc_lock_owned(&cv->lock) != 1)
        return 41;
    if (r == 0 || r == -EOWNERDEAD)
        mproc_lock_release(&cv->lock); /* the same lock */
    return 0;
}

static int c_rlock_then_notify(int unused)
{
    (void)unused;
    /* Only possible if the parent's wait let go of all three levels. */
    if (mproc_rlock_acquire(&cv->rlock, 5) != 0)
        return 50;
    cv->flag = 1;
    int n = mproc_cond_notify(&cv->rc, 1);
    mproc_rlock_release(&cv->rlock);
    return n == 1 ? 0 : 51;
}

/* Python's Condition(lock): acquire/release are the lock's, a wait lets
 * the lock go and takes it back, several conditions share one lock and a
 * notify reaches only its own condition's waiters. */
static void test_cond_shared_lock(void)
{
    cv = mmap(NULL, sizeof *cv, PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(cv != MAP_FAILED);
    CHECK_OK(mproc_lock_init(&cv->lock));
    CHECK_OK(mproc_rlock_init(&cv->rlock));
    /* Bad arguments. */
    mproc_cond *c = NULL;
    CHECK_ERR(mproc_cond_init_with_lock(NULL, &cv->lock), -EINVAL);
    CHECK_ERR(mproc_cond_init_with_lock(&cv->c1, NULL), -EINVAL);
    CHECK_ERR(mproc_cond_init_with_lock(&cv->c1, (mproc_lock *)&cv->rlock),
              -EINVAL);
    CHECK_ERR(mproc_cond_init_with_rlock(&cv->c1, (mproc_rlock *)&cv->lock),
              -EINVAL);
    CHECK_ERR(mproc_cond_new_with_lock(&c, (mproc_lock *)&cv->rlock), -EINVAL);
    CHECK_ERR(mproc_cond_new_with_rlock(NULL, &cv->rlock), -EINVAL);
    CHECK(c == NULL);
    CHECK_ERR(mproc_cond_acquire(&cv->c1, 0), -EINVAL); /* not initialized */

    CHECK_OK(mproc_cond_init_with_lock(&cv->c1, &cv->lock));
    CHECK_OK(mproc_cond_init_with_lock(&cv->c2, &cv->lock));
    CHECK_OK(mproc_cond_init_with_rlock(&cv->rc, &cv->rlock));
    CHECK_ERR(mproc_cond_wait(&cv->c1, 0), MPROC_ENOTOWNER);
    CHECK_ERR(mproc_cond_notify(&cv->c2, 1), MPROC_ENOTOWNER);
    /* One lock, whichever way it is taken. */
    CHECK_OK(mproc_cond_acquire(&cv->c1, -1));
    CHECK_EQ(mproc_lock_owned(&cv->lock), 1);
    CHECK_ERR(mproc_cond_acquire(&cv->c2, -1), -EDEADLK); /* a plain Lock */
    CHECK_ERR(mproc_lock_acquire(&cv->lock, 0), -ETIMEDOUT);
    CHECK_EQ(mproc_cond_notify_all(&cv->c2), 0);
    CHECK_OK(mproc_cond_release(&cv->c2));
    CHECK_EQ(mproc_lock_locked(&cv->lock), 0);
    CHECK_ERR(mproc_cond_release(&cv->c1), MPROC_ENOTOWNER);
    CHECK_OK(mproc_lock_acquire(&cv->lock, -1));
    CHECK_ERR(mproc_cond_wait(&cv->c1, 0.05), -ETIMEDOUT);
    CHECK_EQ(mproc_lock_owned(&cv->lock), 1); /* taken back */
    CHECK_OK(mproc_lock_release(&cv->lock));

    /* A waiter on each condition; while they wait the lock is free. */
    pid_t w0 = fork_child(c_cv_waiter, 0);
    pid_t w1 = fork_child(c_cv_waiter, 1);
    await_locked(&cv->c2, &cv->waiting[0], 1);
    await_locked(&cv->c2, &cv->waiting[1], 1);
    CHECK_OK(mproc_lock_acquire(&cv->lock, 5));
    CHECK_EQ(mproc_cond_notify_all(&cv->c2), 1); /* c2's waiter only */
    CHECK_OK(mproc_lock_release(&cv->lock));
    await_locked(&cv->c2, &cv->woken[1], 1);
    CHECK_EQ(reap(w1), 0);
    msleep(50);
    CHECK_EQ(locked_read(&cv->c2, &cv->woken[0]), 0);
    CHECK_OK(mproc_cond_acquire(&cv->c2, -1));
    CHECK_EQ(mproc_cond_notify(&cv->c1, 1), 1); /* holding it through c2 */
    CHECK_OK(mproc_cond_release(&cv->c1));
    CHECK_EQ(reap(w0), 0);
    CHECK_EQ(cv->results[0], 0);
    CHECK_EQ(cv->results[1], 0);

    /* On an RLock a wait lets go of every level and restores them. */
    CHECK_OK(mproc_cond_acquire(&cv->rc, -1));
    CHECK_OK(mproc_rlock_acquire(&cv->rlock, -1));
    CHECK_OK(mproc_cond_acquire(&cv->rc, -1));
    CHECK_EQ(mproc_rlock_count(&cv->rlock), 3);
    pid_t n = fork_child(c_rlock_then_notify, 0);
    double t0 = mproc_test_now();
    while (!cv->flag && mproc_test_now() - t0 < 10)
        CHECK(mproc_cond_wait(&cv->rc, 10) >= 0);
    CHECK_EQ(cv->flag, 1);
    CHECK_EQ(mproc_rlock_count(&cv->rlock), 3);
    CHECK_EQ(reap(n), 0);
    for (int i = 0; i < 3; i++)
        CHECK_OK(mproc_rlock_release(&cv->rlock));
    CHECK_EQ(mproc_rlock_locked(&cv->rlock), 0);

    /* Destroying a condition leaves its lock alone, held or not. */
    CHECK_OK(mproc_lock_acquire(&cv->lock, -1));
    CHECK_OK(mproc_cond_destroy(&cv->c1));
    CHECK_EQ(mproc_lock_owned(&cv->lock), 1);
    CHECK_ERR(mproc_cond_acquire(&cv->c1, 0), -EINVAL);
    CHECK_OK(mproc_cond_notify(&cv->c2, 1));
    CHECK_OK(mproc_lock_release(&cv->lock));
    CHECK_OK(mproc_cond_destroy(&cv->c2));
    CHECK_OK(mproc_cond_destroy(&cv->rc));
    CHECK_OK(mproc_lock_destroy(&cv->lock));
    CHECK_OK(mproc_rlock_destroy(&cv->rlock));

    /* _new: a mapping of its own for the condition, the lock borrowed. */
    mproc_lock *l;
    CHECK_OK(mproc_lock_new(&l));
    CHECK_OK(mproc_cond_new_with_lock(&c, l));
    CHECK_OK(mproc_lock_acquire(l, -1));
    CHECK_ERR(mproc_cond_wait(c, 0), -ETIMEDOUT);
    CHECK_OK(mproc_cond_release(c));
    mproc_cond_free(c);
    CHECK_OK(mproc_lock_acquire(l, 0)); /* untouched by the free */
    CHECK_OK(mproc_lock_release(l));
    mproc_lock_free(l);
    munmap(cv, sizeof *cv);

    /* Condition(v.get_lock()): on a Value's own lock. */
    mproc_value *v;
    CHECK_OK(mproc_value_new(&v, 'i'));
    CHECK_OK(mproc_cond_new_with_rlock(&c, mproc_value_get_lock(v)));
    CHECK_OK(mproc_value_acquire(v, -1));
    CHECK_OK(mproc_value_acquire(v, -1));
    CHECK_ERR(mproc_cond_wait(c, 0.01), -ETIMEDOUT);
    CHECK_EQ(mproc_rlock_count(mproc_value_get_lock(v)), 2);
    CHECK_OK(mproc_value_set_i64(v, 3));
    CHECK_OK(mproc_value_release(v)); /* released as it was taken */
    CHECK_OK(mproc_value_release(v));
    CHECK_ERR(mproc_cond_release(c), MPROC_ENOTOWNER);
    mproc_cond_free(c);
    mproc_value_free(v);
}

static int c_cv_hold_forever(int through_c1)
{
    int r = through_c1 ? mproc_cond_acquire(&cv->c1, -1)
                       : mproc_lock_acquire(&cv->lock, -1);
    return r != 0 ? 30 : hold_until_killed(&cv->flag);
}

/* A holder of the shared lock SIGKILLed: the next acquirer, whichever way
 * it comes, gets -EOWNERDEAD; consistent through any of them repairs the
 * lock; each condition wakes its waiters (a spurious wake-up) at its next
 * use. Released without repair, the lock is unrecoverable for all. */
static void test_cond_shared_lock_owner_killed(void)
{
    cv = mmap(NULL, sizeof *cv, PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(cv != MAP_FAILED);
    CHECK_OK(mproc_lock_init(&cv->lock));
    CHECK_OK(mproc_cond_init_with_lock(&cv->c1, &cv->lock));
    CHECK_OK(mproc_cond_init_with_lock(&cv->c2, &cv->lock));
    pid_t w0 = fork_child(c_cv_waiter, 0);
    pid_t w1 = fork_child(c_cv_waiter, 1);
    await_locked(&cv->c2, &cv->waiting[0], 1);
    await_locked(&cv->c2, &cv->waiting[1], 1);
    pid_t h = fork_child(c_cv_hold_forever, 1); /* through c1 */
    await_at_least(&cv->flag, 1);
    CHECK_ERR(mproc_cond_acquire(&cv->c2, 0), -ETIMEDOUT);
    kill_reap(h);
    /* The next acquirer, through c2, learns of it and holds the lock. */
    CHECK_ERR(mproc_cond_acquire(&cv->c2, 5), -EOWNERDEAD);
    CHECK_EQ(mproc_lock_owned(&cv->lock), 1);
    CHECK_OK(mproc_cond_consistent(&cv->c2));
    CHECK_ERR(mproc_lock_consistent(&cv->lock), -EINVAL); /* done */
    CHECK_OK(mproc_cond_release(&cv->c2));
    /* c2 caught up at that acquire: its waiter is woken. */
    CHECK_EQ(reap(w1), 0);
    CHECK_EQ(cv->results[1], 0);
    /* c1's waiter wakes at c1's next use, here a plain acquire. */
    CHECK_OK(mproc_lock_acquire(&cv->lock, 0));
    CHECK_OK(mproc_lock_release(&cv->lock));
    msleep(50);
    CHECK_EQ(locked_read(&cv->c2, &cv->woken[0]), 0);
    CHECK_OK(mproc_cond_acquire(&cv->c1, 5));
    CHECK_OK(mproc_cond_release(&cv->c1));
    CHECK_EQ(reap(w0), 0);
    CHECK_EQ(cv->results[0], 0);

    /* Business as usual afterwards. */
    memset(cv->waiting, 0, sizeof cv->waiting);
    memset(cv->woken, 0, sizeof cv->woken);
    w0 = fork_child(c_cv_waiter, 0);
    await_locked(&cv->c2, &cv->waiting[0], 1);
    CHECK_OK(mproc_lock_acquire(&cv->lock, -1));
    CHECK_EQ(mproc_cond_notify(&cv->c1, 1), 1);
    CHECK_OK(mproc_lock_release(&cv->lock));
    CHECK_EQ(reap(w0), 0);

    /* Killed holding it through the bare lock; not repaired this time. */
    cv->flag = 0;
    h = fork_child(c_cv_hold_forever, 0);
    await_at_least(&cv->flag, 1);
    kill_reap(h);
    CHECK_ERR(mproc_lock_acquire(&cv->lock, 5), -EOWNERDEAD);
    CHECK_OK(mproc_lock_release(&cv->lock));
    CHECK_ERR(mproc_cond_acquire(&cv->c1, 0), -ENOTRECOVERABLE);
    CHECK_ERR(mproc_cond_acquire(&cv->c2, -1), -ENOTRECOVERABLE);
    CHECK_ERR(mproc_lock_acquire(&cv->lock, 0), -ENOTRECOVERABLE);
    CHECK_OK(mproc_cond_destroy(&cv->c1));
    CHECK_OK(mproc_cond_destroy(&cv->c2));
    CHECK_OK(mproc_lock_destroy(&cv->lock));
    munmap(cv, sizeof *cv);
}

/* args: cond on a Lock, that Lock, the cond again, a sem, a SharedMemory
 * segment holding an RLock at offset 0 and a condition on it at 128. */
static int t_cond_shared(const mproc_args *a)
{
    mproc_cond *c = mproc_args_cond(a, 0);
    mproc_lock *l = mproc_args_lock(a, 1);
    mproc_cond *c_again = mproc_args_cond(a, 2);
    mproc_sem *s = mproc_args_sem(a, 3);
    mproc_shm *seg = mproc_args_shm(a, 4);
    if (!c || !l || !c_again || !s || !seg)
        return 1;
    /* The lock that came with the condition is the lock argument. */
    if (mproc_cond_acquire(c, 10) != 0 || mproc_lock_owned(l) != 1 ||
        mproc_lock_acquire(l, 0) != -ETIMEDOUT)
        return 2;
    if (mproc_sem_release(s) != 0)
        return 3;
    /* The parent takes the lock while we wait, then notifies. */
    int r = mproc_cond_wait(c_again, 10);
    if (r != 0 || mproc_lock_owned(l) != 1)
        return 4;
    if (mproc_lock_release(l) != 0)
        return 5;
    /* A condition found in shared memory: its lock is located there. */
    unsigned char *m = mproc_shm_buf(seg);
    mproc_rlock *rl = (mproc_rlock *)m;
    mproc_cond *rc = (mproc_cond *)(m + 128);
    if (mproc_cond_acquire(rc, 10) != 0 || mproc_rlock_count(rl) != 1)
        return 6;
    if (mproc_sem_release(s) != 0)
        return 7;
    r = mproc_cond_wait(rc, 10);
    if (r != 0 || mproc_rlock_count(rl) != 1)
        return 8;
    return mproc_cond_release(rc) == 0 ? 0 : 9;
}

static void test_cond_shared_lock_methods(void)
{
    mproc_lock *l;
    mproc_cond *c;
    mproc_sem *s;
    mproc_shm *seg;
    CHECK_OK(mproc_lock_new(&l));
    CHECK_OK(mproc_cond_new_with_lock(&c, l));
    CHECK_OK(mproc_sem_new(&s, 0));
    CHECK_OK(mproc_shm_new_anonymous(&seg, 4096));
    unsigned char *m = mproc_shm_buf(seg);
    mproc_rlock *rl = (mproc_rlock *)m;
    mproc_cond *rc = (mproc_cond *)(m + 128);
    CHECK_OK(mproc_rlock_init(rl));
    CHECK_OK(mproc_cond_init_with_rlock(rc, rl));
    for (int i = 0; i < 3; i++) {
        mproc_args *a = mproc_args_new();
        CHECK_OK(mproc_args_add_cond(a, c));
        CHECK_OK(mproc_args_add_lock(a, l));
        CHECK_OK(mproc_args_add_cond(a, c));
        CHECK_OK(mproc_args_add_sem(a, s));
        CHECK_OK(mproc_args_add_shm(a, seg));
        mproc_process *p;
        CHECK_OK(mproc_process_new(&p, t_cond_shared, a));
        CHECK_OK(mproc_process_set_start_method(p, mproc_test_methods[i]));
        CHECK_OK(mproc_process_start(p));
        mproc_args_free(a);
        CHECK_OK(mproc_sem_acquire(s, 10));
        CHECK_OK(mproc_lock_acquire(l, 10)); /* the child's wait let go */
        CHECK_EQ(mproc_cond_notify(c, 1), 1);
        CHECK_OK(mproc_lock_release(l));
        CHECK_OK(mproc_sem_acquire(s, 10));
        CHECK_OK(mproc_rlock_acquire(rl, 10));
        CHECK_EQ(mproc_cond_notify_all(rc), 1);
        CHECK_OK(mproc_rlock_release(rl));
        CHECK_OK(mproc_process_join(p, 20));
        CHECK_EQ(mproc_process_exitcode(p), 0);
        mproc_process_free(p);
    }
    /* A lock in private memory: fork children only. */
    mproc_lock *priv = malloc(sizeof *priv);
    mproc_cond *pc;
    CHECK_OK(mproc_lock_init(priv));
    CHECK_OK(mproc_cond_new_with_lock(&pc, priv));
    mproc_args *a = mproc_args_new();
    CHECK_OK(mproc_args_add_cond(a, pc));
    mproc_process *p;
    CHECK_OK(mproc_process_new(&p, t_cond_shared, a));
    CHECK_OK(mproc_process_set_start_method(p, MPROC_START_SPAWN));
    CHECK_ERR(mproc_process_start(p), -EINVAL);
    mproc_process_free(p);
    mproc_args_free(a);
    mproc_cond_free(pc);
    CHECK_OK(mproc_lock_destroy(priv));
    free(priv);

    CHECK_OK(mproc_cond_destroy(rc));
    CHECK_OK(mproc_rlock_destroy(rl));
    mproc_shm_free(seg);
    mproc_cond_free(c);
    mproc_lock_free(l);
    mproc_sem_free(s);
}

/* ---- Barrier ---------------------------------------------------------- */

static int count_action(void)
{
    inc(&sh->actions);
    return 0;
}

static int failing_action(void)
{
    return 1;
}

static int sleepy_action(void)
{
    inc(&sh->flag);
    for (;;)
        pause();
    return 0;
}

static int reentrant_action(void)
{
    sh->results[63] = mproc_barrier_wait(&sh->bar, 0);
    return 0;
}

enum { B_ROUNDS = 30 };

static int c_barrier_rounds(int who)
{
    for (int r = 0; r < B_ROUNDS; r++) {
        int idx = mproc_barrier_wait(&sh->bar, 10);
        if (idx < 0 || idx > 2)
            return 100;
        __atomic_or_fetch(&sh->results[r], 1 << idx, __ATOMIC_SEQ_CST);
    }
    return who;
}

static void test_barrier_rounds(void)
{
    shared_setup();
    CHECK_OK(mproc_barrier_init(&sh->bar, 3, count_action, -1));
    CHECK_EQ(mproc_barrier_parties(&sh->bar), 3);
    CHECK_EQ(mproc_barrier_n_waiting(&sh->bar), 0);
    CHECK_EQ(mproc_barrier_broken(&sh->bar), 0);
    pid_t a = fork_child(c_barrier_rounds, 0);
    pid_t b = fork_child(c_barrier_rounds, 0);
    CHECK_EQ(c_barrier_rounds(0), 0);
    CHECK_EQ(reap(a), 0);
    CHECK_EQ(reap(b), 0);
    /* Every round handed out indices 0, 1, 2 and ran the action once. */
    for (int r = 0; r < B_ROUNDS; r++)
        CHECK_EQ(sh->results[r], 7);
    CHECK_EQ(sh->actions, B_ROUNDS);
    CHECK_OK(mproc_barrier_destroy(&sh->bar));
    CHECK_ERR(mproc_barrier_wait(&sh->bar, 0), -EINVAL);

    /* One party: never waits. */
    mproc_barrier *one;
    CHECK_OK(mproc_barrier_new(&one, 1, NULL, -1));
    CHECK_EQ(mproc_barrier_wait(one, -1), 0);
    CHECK_EQ(mproc_barrier_wait(one, 0), 0);
    mproc_barrier_free(one);
    CHECK_ERR(mproc_barrier_new(&one, 0, NULL, -1), -EINVAL);
    CHECK_ERR(mproc_barrier_new(&one, 70000, NULL, -1), -EINVAL);
    CHECK_ERR(mproc_barrier_init(NULL, 2, NULL, -1), -EINVAL);
    shared_teardown();
}

static int c_barrier_wait(int timeout_ms)
{
    inc(&sh->waiting);
    int r =
        mproc_barrier_wait(&sh->bar, timeout_ms < 0 ? -1 : timeout_ms / 1e3);
    return r == MPROC_EBROKEN ? 1 : r == -ETIMEDOUT ? 2 : r >= 0 ? 0 : 3;
}

static void await_n_waiting(int n)
{
    double t0 = mproc_test_now();
    while (mproc_barrier_n_waiting(&sh->bar) < n) {
        CHECK(mproc_test_now() - t0 < 10);
        usleep(1000);
    }
}

static void test_barrier_abort_reset(void)
{
    shared_setup();
    CHECK_OK(mproc_barrier_init(&sh->bar, 3, NULL, -1));
    pid_t w = fork_child(c_barrier_wait, -1);
    await_n_waiting(1);
    CHECK_OK(mproc_barrier_abort(&sh->bar));
    CHECK_EQ(reap(w), 1);
    CHECK_EQ(mproc_barrier_broken(&sh->bar), 1);
    CHECK_EQ(mproc_barrier_n_waiting(&sh->bar), 0);
    CHECK_ERR(mproc_barrier_wait(&sh->bar, 1), MPROC_EBROKEN);
    CHECK_OK(mproc_barrier_reset(&sh->bar));
    CHECK_EQ(mproc_barrier_broken(&sh->bar), 0);

    /* reset while someone waits: the waiter gets EBROKEN, the barrier is
     * usable right away. */
    w = fork_child(c_barrier_wait, -1);
    await_n_waiting(1);
    CHECK_OK(mproc_barrier_reset(&sh->bar));
    CHECK_EQ(reap(w), 1);
    CHECK_EQ(mproc_barrier_broken(&sh->bar), 0);
    pid_t a = fork_child(c_barrier_wait, -1);
    pid_t b = fork_child(c_barrier_wait, -1);
    int idx = mproc_barrier_wait(&sh->bar, 10);
    CHECK(idx >= 0 && idx <= 2);
    CHECK_EQ(reap(a), 0);
    CHECK_EQ(reap(b), 0);
    CHECK_OK(mproc_barrier_destroy(&sh->bar));
    shared_teardown();
}

static void test_barrier_timeout(void)
{
    shared_setup();
    /* The default timeout applies to waits with a negative timeout. */
    CHECK_OK(mproc_barrier_init(&sh->bar, 3, NULL, 0.15));
    pid_t w = fork_child(c_barrier_wait, 10000);
    await_n_waiting(1);
    double t0 = mproc_test_now();
    CHECK_ERR(mproc_barrier_wait(&sh->bar, -1), -ETIMEDOUT);
    double dt = mproc_test_now() - t0;
    CHECK(dt >= 0.14 && dt < 2);
    CHECK_EQ(reap(w), 1); /* the other waiter: broken */
    CHECK_EQ(mproc_barrier_broken(&sh->bar), 1);
    CHECK_ERR(mproc_barrier_wait(&sh->bar, 0), MPROC_EBROKEN);
    CHECK_OK(mproc_barrier_reset(&sh->bar));
    CHECK_ERR(mproc_barrier_wait(&sh->bar, 0), -ETIMEDOUT);
    CHECK_EQ(mproc_barrier_broken(&sh->bar), 1);
    CHECK_OK(mproc_barrier_destroy(&sh->bar));
    shared_teardown();
}

static void test_barrier_action_failures(void)
{
    shared_setup();
    /* An action returning nonzero breaks the barrier for everyone. */
    CHECK_OK(mproc_barrier_init(&sh->bar, 2, failing_action, -1));
    pid_t w = fork_child(c_barrier_wait, -1);
    await_n_waiting(1);
    CHECK_ERR(mproc_barrier_wait(&sh->bar, 5), MPROC_EBROKEN);
    CHECK_EQ(reap(w), 1);
    CHECK_OK(mproc_barrier_destroy(&sh->bar));

    /* The action may not use its own barrier. */
    CHECK_OK(mproc_barrier_init(&sh->bar, 1, reentrant_action, -1));
    CHECK_EQ(mproc_barrier_wait(&sh->bar, 5), 0);
    CHECK_EQ(sh->results[63], -EDEADLK);
    CHECK_OK(mproc_barrier_destroy(&sh->bar));

    /* The process running the action is killed: the waiters learn it
     * from the robust mutex at once (no timeout needed). */
    CHECK_OK(mproc_barrier_init(&sh->bar, 3, sleepy_action, -1));
    pid_t a = fork_child(c_barrier_wait, -1);
    pid_t b = fork_child(c_barrier_wait, -1);
    await_n_waiting(2);
    pid_t runner = fork_child(c_barrier_wait, -1);
    await_at_least(&sh->flag, 1);
    msleep(50);
    kill_reap(runner);
    CHECK_EQ(reap(a), 1);
    CHECK_EQ(reap(b), 1);
    CHECK_EQ(mproc_barrier_broken(&sh->bar), 1);
    CHECK_OK(mproc_barrier_reset(&sh->bar));
    CHECK_EQ(mproc_barrier_broken(&sh->bar), 0);

    /* A waiter's timeout expires while the action runs: it returns
     * -ETIMEDOUT and the generation breaks. */
    sh->flag = 0;
    a = fork_child(c_barrier_wait, 300);
    b = fork_child(c_barrier_wait, -1);
    await_n_waiting(2);
    runner = fork_child(c_barrier_wait, -1);
    CHECK_EQ(reap(a), 2);
    kill_reap(runner);
    CHECK_EQ(reap(b), 1);
    CHECK_OK(mproc_barrier_destroy(&sh->bar));
    shared_teardown();
}

/* A waiter killed while waiting counts as arrived: the others complete
 * the generation; nobody is stranded. */
/* Waits until pid sleeps on a futex: a barrier waiter that counted itself
 * in has also let the barrier's mutex go then (killed before that, it
 * would break the barrier, as it should). */
static void await_futex_sleep(pid_t pid)
{
    char path[64], buf[64];
    snprintf(path, sizeof path, "/proc/%d/wchan", (int)pid);
    double t0 = mproc_test_now();
    for (;;) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? 0 : read(fd, buf, sizeof buf - 1);
        if (fd >= 0)
            close(fd);
        buf[n > 0 ? n : 0] = 0;
        if (strstr(buf, "futex"))
            return;
        CHECK(mproc_test_now() - t0 < 10);
        usleep(1000);
    }
}

static void test_barrier_waiter_killed(void)
{
    shared_setup();
    CHECK_OK(mproc_barrier_init(&sh->bar, 3, count_action, -1));
    pid_t dead = fork_child(c_barrier_wait, -1);
    await_n_waiting(1);
    await_futex_sleep(dead);
    kill_reap(dead);
    CHECK_EQ(mproc_barrier_n_waiting(&sh->bar), 1);
    pid_t w = fork_child(c_barrier_wait, -1);
    await_n_waiting(2);
    CHECK_EQ(mproc_barrier_wait(&sh->bar, 5), 2);
    CHECK_EQ(reap(w), 0);
    CHECK_EQ(sh->actions, 1);
    CHECK_EQ(mproc_barrier_n_waiting(&sh->bar), 0);
    CHECK_OK(mproc_barrier_destroy(&sh->bar));
    shared_teardown();
}

/* ---- across start methods --------------------------------------------- */

/* The action of barriers passed to children: runs in whichever process
 * arrives last, found again by code reference after exec. It counts on a
 * semaphore each process points g_action_sem at. */
static mproc_sem *g_action_sem;

static int sem_action(void)
{
    return g_action_sem ? mproc_sem_release(g_action_sem) : 1;
}

/* args: lock, rlock, sem, cond, event, barrier. Parent holds the lock. */
static int t_use_all(const mproc_args *a)
{
    mproc_lock *l = mproc_args_lock(a, 0);
    mproc_rlock *rl = mproc_args_rlock(a, 1);
    mproc_sem *s = mproc_args_sem(a, 2);
    mproc_cond *c = mproc_args_cond(a, 3);
    mproc_event *e = mproc_args_event(a, 4);
    mproc_barrier *b = mproc_args_barrier(a, 5);
    if (!l || !rl || !s || !c || !e || !b)
        return 1;
    if (mproc_args_lock(a, 1) || mproc_args_sem(a, 0))
        return 2;                               /* wrong kinds must not match */
    if (mproc_lock_acquire(l, 0) != -ETIMEDOUT) /* parent holds it */
        return 3;
    if (mproc_rlock_acquire(rl, 0) != 0 || mproc_rlock_acquire(rl, 0) != 0 ||
        mproc_rlock_release(rl) != 0 || mproc_rlock_release(rl) != 0)
        return 4;
    if (mproc_sem_release(s) != 0)
        return 5;
    if (mproc_event_set(e) != 0)
        return 6;
    /* Meet the parent at the barrier (the last one runs the action). */
    if (mproc_barrier_wait(b, 10) < 0)
        return 7;
    /* Wait for the parent's notify. */
    if (mproc_cond_acquire(c, 10) != 0)
        return 8;
    if (mproc_sem_release(s) != 0)
        return 9;
    int r = mproc_cond_wait(c, 10);
    mproc_cond_release(c);
    if (r != 0)
        return 10;
    /* Now the parent waits for the lock we take and keep: leaving the
     * target while holding it must hand the parent EOWNERDEAD. */
    if (mproc_lock_acquire(l, 10) != 0)
        return 11;
    return 0;
}

static void test_objects_under_all_methods(void)
{
    mproc_lock *l;
    mproc_rlock *rl;
    mproc_sem *s;
    mproc_cond *c;
    mproc_event *e;
    mproc_barrier *b;
    CHECK_OK(mproc_lock_new(&l));
    CHECK_OK(mproc_rlock_new(&rl));
    CHECK_OK(mproc_sem_new(&s, 0));
    CHECK_OK(mproc_cond_new(&c, MPROC_COND_LOCK));
    CHECK_OK(mproc_event_new(&e));
    CHECK_OK(mproc_barrier_new(&b, 2, NULL, -1));
    for (int m = 0; m < 3; m++) {
        mproc_args *a = mproc_args_new();
        CHECK(a);
        CHECK_OK(mproc_args_add_lock(a, l));
        CHECK_OK(mproc_args_add_rlock(a, rl));
        CHECK_OK(mproc_args_add_sem(a, s));
        CHECK_OK(mproc_args_add_cond(a, c));
        CHECK_OK(mproc_args_add_event(a, e));
        CHECK_OK(mproc_args_add_barrier(a, b));
        CHECK_ERR(mproc_args_add_lock(a, NULL), -EINVAL);
        CHECK_OK(mproc_lock_acquire(l, -1));
        mproc_process *p;
        CHECK_OK(mproc_process_new(&p, t_use_all, a));
        CHECK_OK(mproc_process_set_start_method(p, mproc_test_methods[m]));
        CHECK_OK(mproc_process_start(p));
        mproc_args_free(a);
        CHECK_OK(mproc_event_wait(e, 10));
        CHECK_OK(mproc_sem_acquire(s, 10));
        CHECK(mproc_barrier_wait(b, 10) >= 0);
        CHECK_OK(mproc_sem_acquire(s, 10));  /* child is about to wait */
        CHECK_OK(mproc_cond_acquire(c, 10)); /* ... and now waits */
        CHECK_EQ(mproc_cond_notify(c, 1), 1);
        CHECK_OK(mproc_cond_release(c));
        CHECK_OK(mproc_lock_release(l));
        CHECK_OK(mproc_process_join(p, 20));
        CHECK_EQ(mproc_process_exitcode(p), 0);
        mproc_process_free(p);
        CHECK_ERR(mproc_lock_acquire(l, 5), -EOWNERDEAD);
        CHECK_OK(mproc_lock_consistent(l));
        CHECK_OK(mproc_lock_release(l));
        CHECK_OK(mproc_event_clear(e));
    }
    mproc_lock_free(l);
    mproc_rlock_free(rl);
    mproc_sem_free(s);
    mproc_cond_free(c);
    mproc_event_free(e);
    mproc_barrier_free(b);
}

static int t_barrier_last(const mproc_args *a)
{
    mproc_barrier *b = mproc_args_barrier(a, 0);
    mproc_sem *s = mproc_args_sem(a, 1);
    if (!b || !s)
        return 1;
    g_action_sem = s;
    if (mproc_sem_release(s) != 0)
        return 2;
    int r = mproc_barrier_wait(b, 10);
    return r >= 0 ? 0 : 3;
}

static int t_try_lock(const mproc_args *a)
{
    mproc_lock *l = mproc_args_lock(a, 0);
    if (!l)
        return 1;
    return mproc_lock_acquire(l, 0) == -ETIMEDOUT ? 0 : 2;
}

/* Objects initialized inside a memfd mapping this process made (as a
 * Value or SharedMemory holds them) are exported through that fd; objects
 * in anonymous shared memory can only go to fork children. */
static void test_export_embedded(void)
{
    int fd = memfd_create("sync-test", MFD_CLOEXEC);
    CHECK(fd >= 0);
    CHECK_EQ(ftruncate(fd, 3 * 4096), 0);
    unsigned char *base =
        mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(base != MAP_FAILED);
    mproc_lock *l = (mproc_lock *)(base + 4096 + 128);
    CHECK_OK(mproc_lock_init(l));
    CHECK_OK(mproc_lock_acquire(l, 0));
    mproc_barrier *b = (mproc_barrier *)(base + 8192 - 64); /* spans pages */
    CHECK_OK(mproc_barrier_init(b, 2, sem_action, -1));
    mproc_sem *s;
    CHECK_OK(mproc_sem_new(&s, 0));
    g_action_sem = s;
    for (int m = 0; m < 3; m++) {
        mproc_args *a = mproc_args_new();
        CHECK_OK(mproc_args_add_lock(a, l));
        mproc_process *p;
        CHECK_OK(mproc_process_new(&p, t_try_lock, a));
        CHECK_OK(mproc_process_set_start_method(p, mproc_test_methods[m]));
        CHECK_OK(mproc_process_start(p));
        mproc_args_free(a);
        CHECK_OK(mproc_process_join(p, 20));
        CHECK_EQ(mproc_process_exitcode(p), 0);
        mproc_process_free(p);

        a = mproc_args_new();
        CHECK_OK(mproc_args_add_barrier(a, b));
        CHECK_OK(mproc_args_add_sem(a, s));
        CHECK_OK(mproc_process_new(&p, t_barrier_last, a));
        CHECK_OK(mproc_process_set_start_method(p, mproc_test_methods[m]));
        CHECK_OK(mproc_process_start(p));
        mproc_args_free(a);
        CHECK_OK(mproc_sem_acquire(s, 10));
        /* Whoever arrives last runs the action (in the child: found again
         * after exec), which releases s once. */
        int idx = mproc_barrier_wait(b, 10);
        CHECK(idx == 0 || idx == 1);
        CHECK_OK(mproc_process_join(p, 20));
        CHECK_EQ(mproc_process_exitcode(p), 0);
        mproc_process_free(p);
        CHECK_OK(mproc_sem_acquire(s, 0));
        CHECK_ERR(mproc_sem_acquire(s, 0), -ETIMEDOUT);
    }
    CHECK_OK(mproc_lock_release(l));
    CHECK_OK(mproc_lock_destroy(l));
    CHECK_OK(mproc_barrier_destroy(b));
    mproc_sem_free(s);
    g_action_sem = NULL;
    munmap(base, 3 * 4096);
    close(fd);

    /* Anonymous shared memory has no fd to pass. */
    shared_setup();
    CHECK_OK(mproc_lock_init(&sh->lock));
    mproc_args *a = mproc_args_new();
    CHECK_OK(mproc_args_add_lock(a, &sh->lock));
    mproc_process *p;
    CHECK_OK(mproc_process_new(&p, t_try_lock, a));
    CHECK_OK(mproc_process_set_start_method(p, MPROC_START_SPAWN));
    CHECK_ERR(mproc_process_start(p), -EINVAL);
    mproc_process_free(p);
    /* A destroyed object cannot be passed either. */
    mproc_event *ev;
    CHECK_OK(mproc_event_new(&ev));
    CHECK_OK(mproc_event_destroy(ev));
    mproc_args *ea = mproc_args_new();
    CHECK_OK(mproc_args_add_event(ea, ev));
    CHECK_OK(mproc_process_new(&p, t_try_lock, ea));
    CHECK_OK(mproc_process_set_start_method(p, MPROC_START_FORKSERVER));
    CHECK_ERR(mproc_process_start(p), -EINVAL);
    mproc_process_free(p);
    mproc_args_free(ea);
    mproc_event_free(ev);
    /* ... but fork children share it. */
    CHECK_OK(mproc_lock_acquire(&sh->lock, 0));
    CHECK_OK(mproc_process_new(&p, t_try_lock, a));
    CHECK_OK(mproc_process_set_start_method(p, MPROC_START_FORK));
    CHECK_OK(mproc_process_start(p));
    CHECK_OK(mproc_process_join(p, 20));
    CHECK_EQ(mproc_process_exitcode(p), 0);
    mproc_process_free(p);
    mproc_args_free(a);
    CHECK_OK(mproc_lock_destroy(&sh->lock));
    shared_teardown();
}

/* ---- resource failures ------------------------------------------------ */

static void test_new_fails_cleanly_without_fds(void)
{
    struct rlimit old, lim;
    CHECK_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
    int n = mproc_test_count_fds();
    CHECK(n > 0);
    lim = old;
    lim.rlim_cur = (rlim_t)n + 2;
    CHECK_EQ(setrlimit(RLIMIT_NOFILE, &lim), 0);
    /* Use the two fds left, then every constructor must fail cleanly. */
    int hog[64], nh = 0;
    while (nh < 64 && (hog[nh] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        nh++;
    CHECK(nh < 64);
    mproc_lock *l = NULL;
    mproc_rlock *rl = NULL;
    mproc_sem *s = NULL;
    mproc_cond *c = NULL;
    mproc_event *e = NULL;
    mproc_barrier *b = NULL;
    CHECK_ERR(mproc_lock_new(&l), -EMFILE);
    CHECK_ERR(mproc_rlock_new(&rl), -EMFILE);
    CHECK_ERR(mproc_sem_new(&s, 1), -EMFILE);
    CHECK_ERR(mproc_cond_new(&c, MPROC_COND_LOCK), -EMFILE);
    CHECK_ERR(mproc_event_new(&e), -EMFILE);
    CHECK_ERR(mproc_barrier_new(&b, 2, NULL, -1), -EMFILE);
    CHECK(!l && !rl && !s && !c && !e && !b);
    for (int i = 0; i < nh; i++)
        close(hog[i]);
    CHECK_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
    CHECK_OK(mproc_lock_new(&l));
    mproc_lock_free(l);
}

/* Freeing a lock the caller still holds keeps its page mapped, so the
 * kernel can still mark it owner-dead when this process dies. */
static void test_free_while_held(void)
{
    mproc_lock *l;
    CHECK_OK(mproc_lock_new(&l));
    pid_t p = fork();
    CHECK(p >= 0);
    if (p == 0) {
        if (mproc_lock_acquire(l, -1) != 0)
            mproc_test_exit(1);
        mproc_lock_free(l); /* page kept: we hold it */
        mproc_test_exit(0); /* dies holding it */
    }
    CHECK_EQ(reap(p), 0);
    CHECK_ERR(mproc_lock_acquire(l, 5), -EOWNERDEAD);
    CHECK_OK(mproc_lock_consistent(l));
    CHECK_OK(mproc_lock_release(l));
    mproc_lock_free(l);
}

static const mproc_test tests[] = {
    {"lock_basic", test_lock_basic, 20},
    {"lock_threads", test_lock_threads, 10},
    {"lock_errors", test_lock_errors, 10},
    {"lock_exact_counter", test_lock_exact_counter, 60},
    {"lock_owner_killed", test_lock_owner_killed, 20},
    {"lock_owner_killed_many_waiters", test_lock_owner_killed_many_waiters, 30},
    {"lock_threads_and_processes", test_lock_threads_and_processes, 60},
    {"lock_fork_child_not_owner", test_lock_fork_child_not_owner, 10},
    {"lock_free_while_held", test_free_while_held, 10},
    {"rlock", test_rlock, 10},
    {"sem_basic", test_sem_basic, 10},
    {"sem_limits_processes", test_sem_limits_processes, 20},
    {"sem_holder_and_waiter_killed", test_sem_holder_and_waiter_killed, 20},
    {"event", test_event, 20},
    {"cond_notify_exact", test_cond_notify_exact, 30},
    {"cond_timeouts_stay_exact", test_cond_timeouts_stay_exact, 60},
    {"cond_wait_and_errors", test_cond_wait_and_errors, 20},
    {"cond_lock_owner_killed", test_cond_lock_owner_killed, 20},
    {"cond_waiter_killed", test_cond_waiter_killed, 20},
    {"cond_shared_lock", test_cond_shared_lock, 20},
    {"cond_shared_lock_owner_killed", test_cond_shared_lock_owner_killed, 20},
    {"cond_shared_lock_methods", test_cond_shared_lock_methods, 60},
    {"barrier_rounds", test_barrier_rounds, 30},
    {"barrier_abort_reset", test_barrier_abort_reset, 20},
    {"barrier_timeout", test_barrier_timeout, 20},
    {"barrier_action_failures", test_barrier_action_failures, 20},
    {"barrier_waiter_killed", test_barrier_waiter_killed, 20},
    {"objects_under_all_methods", test_objects_under_all_methods, 60},
    {"export_embedded", test_export_embedded, 60},
    {"new_fails_cleanly_without_fds", test_new_fails_cleanly_without_fds, 10},
};

MPROC_TEST_MAIN(tests)
