/*
 * os/futex.c - sleeping on shared memory: futex waits and wake-ups, and
 * the robust process-shared pthread mutexes that every primitive living in
 * shared memory (queue rings, locks, barriers, heap arenas) is built on.
 *
 * A robust mutex survives its holder: when the holder dies, the kernel
 * hands the next locker EOWNERDEAD. mproc__robust_lock makes the mutex
 * consistent at once and reports 1, so that each caller decides what the
 * death means for the data the mutex guards (repair a ring, break a
 * barrier, report MPROC's owner-died to the user) in one place of its own.
 */
#include "os/os.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

int mproc__futex_wait(uint32_t *w, uint32_t val, const struct timespec *rel)
{
    long r = syscall(SYS_futex, w, FUTEX_WAIT, val, rel, NULL, 0);
    if (r == 0 || errno == EAGAIN)
        return 0;
    return -errno;
}

int mproc__futex_wait_until(uint32_t *w, uint32_t val, const mproc__deadline *d)
{
    long r = syscall(SYS_futex, w, FUTEX_WAIT_BITSET, val,
                     !d || d->infinite ? NULL : &d->at, NULL,
                     FUTEX_BITSET_MATCH_ANY);
    if (r == 0 || errno == EAGAIN)
        return 0;
    return -errno;
}

void mproc__futex_wake(uint32_t *w, int n)
{
    syscall(SYS_futex, w, FUTEX_WAKE, n, NULL, NULL, 0);
}

int mproc__robust_init(pthread_mutex_t *m, bool errorcheck)
{
    pthread_mutexattr_t a;
    int e = pthread_mutexattr_init(&a);
    if (e)
        return -e;
    if ((!errorcheck ||
         !(e = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK))) &&
        !(e = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED)) &&
        !(e = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST)))
        e = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return -e;
}

/* pthread_mutex_clocklock on CLOCK_MONOTONIC. ThreadSanitizer intercepts
 * neither clocklock nor an EOWNERDEAD from timedlock (it would report the
 * lock as never taken): under it, poll with trylock, which it models. */
static int lock_until(pthread_mutex_t *m, const struct timespec *at)
{
#ifdef __SANITIZE_THREAD__
    for (;;) {
        int rc = pthread_mutex_trylock(m);
        if (rc != EBUSY)
            return rc;
        struct timespec now = mproc__now();
        if (now.tv_sec > at->tv_sec ||
            (now.tv_sec == at->tv_sec && now.tv_nsec >= at->tv_nsec))
            return ETIMEDOUT;
        struct timespec nap = {0, 50000};
        nanosleep(&nap, NULL);
    }
#else
    return pthread_mutex_clocklock(m, CLOCK_MONOTONIC, at);
#endif
}

int mproc__robust_lock(pthread_mutex_t *m, int how, const mproc__deadline *d)
{
    int r;
    if (how == MPROC__TRY)
        return mproc__robust_trylock(m);
    if (!d || d->infinite)
        r = pthread_mutex_lock(m);
    else
        r = lock_until(m, &d->at);
    if (r == EOWNERDEAD) {
        pthread_mutex_consistent(m);
        return 1;
    }
    return -r;
}
