/*
 * os/os.h - the bottom layer: everything mproc asks of the Linux kernel
 * that is more than one plain call. Deadlines on CLOCK_MONOTONIC, poll with
 * EINTR retries, pidfds, exact reads and writes, memfds, random bytes, fd
 * passing over Unix sockets (os.c); futex sleeps and wake-ups, and
 * process-shared robust mutexes (futex.c).
 *
 * This header includes nothing of mproc's but the public error codes: the
 * layers above (core/, process/, the primitives, the pool) look down at
 * it, never the other way. Everything is mproc__-prefixed and hidden.
 */
#ifndef MPROC__OS_H
#define MPROC__OS_H

#include "mproc/common.h"
#include "mproc/error.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define MPROC__ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* errno as a return code: -errno, or -EIO should a call have failed
 * without setting it. Read it right after the failing call. */
static inline int mproc__neg_errno(void)
{
    return errno > 0 ? -errno : -EIO;
}

/* ---- deadlines (os.c) ------------------------------------------------- */

/* An absolute CLOCK_MONOTONIC deadline; infinite when timeout < 0. */
typedef struct mproc__deadline {
    struct timespec at;
    bool infinite;
} mproc__deadline;

/* Turns a timeout in seconds (< 0, NaN or > 1e9: forever; 0: poll) into a
 * deadline, once, so that retries never stretch it. */
mproc__deadline mproc__deadline_from(double timeout);
/* Milliseconds left for poll(2): -1 infinite, 0 expired, rounded up. */
int mproc__deadline_poll_ms(const mproc__deadline *d);
/* True when a finite deadline has passed. */
bool mproc__deadline_expired(const mproc__deadline *d);
/* Time left as a relative timespec for futex waits (NULL when infinite);
 * returns false when expired. */
bool mproc__deadline_left(const mproc__deadline *d, struct timespec *ts);
struct timespec mproc__now(void);

/*
 * poll(2) one fd for events until the deadline, retrying EINTR. Returns 1
 * when ready (revents stored when not NULL), 0 on timeout, -errno.
 */
int mproc__poll_fd(int fd, short events, const mproc__deadline *d,
                   short *revents);

/* ---- fds and syscalls (os.c) ------------------------------------------ */

/*
 * Whether this process uses pidfds (pidfd_open, pidfd_send_signal,
 * waitid(P_PIDFD)). Decided once, at the first call: false when the
 * environment has MPROC_NO_PIDFD set to anything but "" or "0" (read at
 * library load, or then), or when a probe finds the kernel (or valgrind,
 * or a seccomp filter) without them: ENOSYS, EPERM, or a waitid that does
 * not know P_PIDFD. The layers above then take their pid-based paths.
 * Thread safe; a fork child inherits the answer.
 */
bool mproc__have_pidfd(void);
/* pidfd_open(pid, 0) / pidfd_send_signal(pidfd, sig, NULL, 0): the fd or
 * 0, else -errno; -ENOSYS without pidfds (mproc__have_pidfd false). */
int mproc__pidfd_open(pid_t pid);
int mproc__pidfd_send_signal(int pidfd, int sig);
/* Writes/reads exactly n bytes, retrying EINTR and short counts. Returns 0,
 * -errno, or MPROC_EEOF when read hits end of file first. */
int mproc__write_all(int fd, const void *p, size_t n);
int mproc__read_all(int fd, void *p, size_t n);
/* Closes fd if >= 0, preserving errno. */
void mproc__close(int fd);
/* Fill buf with n cryptographically random bytes. Returns 0 or -errno. */
int mproc__random(void *buf, size_t n);
/* memfd with the given name holding n bytes of data; returns fd or a
 * negative code (-EFBIG past RLIMIT_FSIZE: never SIGXFSZ). */
int mproc__memfd_with(const char *name, const void *data, size_t n);

/*
 * Gives a fresh memfd or tmpfs fd its size: a size over RLIMIT_FSIZE is
 * -EFBIG instead of a SIGXFSZ (the program's signal dispositions are left
 * alone). With allocate, also reserves the pages, so that a full tmpfs
 * (a /dev/shm of limited size) is -ENOSPC here and never a SIGBUS at the
 * first touch of a page. Returns 0 or a negative code.
 */
int mproc__fd_reserve(int fd, size_t size, bool allocate);
/*
 * A memfd (close-on-exec; sealable when asked) of size bytes, sized as by
 * fd_reserve without allocating: memfds live on the kernel's internal shm
 * mount, which has no size limit to run into; the memory itself is the
 * only limit, as for any anonymous memory. Returns the fd or a negative
 * code.
 */
int mproc__memfd_new(const char *name, size_t size, bool sealable);

/*
 * Ends this process at once, as _exit(code): no atexit handlers, no stdio
 * flush. In a coverage build (MPROC_COVERAGE) the counters are written
 * first, which _exit alone would lose. Every _exit of mproc's goes through
 * here: forked children, the fork server and its children, the tracker,
 * spawn helpers.
 */
void mproc__exit(int code) __attribute__((noreturn));

/* SCM_RIGHTS over a Unix socket: send bytes plus fds / receive them.
 * recv returns bytes read (0 = EOF) and stores up to *nfds fds. */
int mproc__send_fds(int sock, const void *p, size_t n, const int *fds,
                    size_t nfds);
int mproc__recv_fds(int sock, void *p, size_t n, int *fds, size_t *nfds);
/* As send_fds with the bytes gathered from iov[0..niov) (niov <= 8) and
 * extra send flags (MSG_DONTWAIT: -EAGAIN when it would block). */
struct iovec;
int mproc__sendv_fds(int sock, struct iovec *iov, size_t niov, const int *fds,
                     size_t nfds, int flags);
/* As recv_fds with extra recv flags; a truncated datagram or more fds
 * than *nfds is MPROC_EPROTO (nothing kept). */
ssize_t mproc__recv_fds_flags(int sock, void *p, size_t n, int *fds,
                              size_t *nfds, int flags);

/* ---- futexes (futex.c) ------------------------------------------------ */

/*
 * Every futex mproc uses lives in shared memory (a memfd or a MAP_SHARED
 * mapping), so none of these is FUTEX_PRIVATE. The word is a plain
 * uint32_t; callers holding an _Atomic uint32_t pass (uint32_t *)&word.
 */

/* Sleeps while *w == val, at most rel (NULL: no limit). Returns 0 (woken,
 * or *w already differed: re-check either way), -ETIMEDOUT or -EINTR. */
int mproc__futex_wait(uint32_t *w, uint32_t val, const struct timespec *rel);
/* As futex_wait, until the absolute deadline d. */
int mproc__futex_wait_until(uint32_t *w, uint32_t val,
                            const mproc__deadline *d);
/* Wakes up to n sleepers on w (INT_MAX: all). */
void mproc__futex_wake(uint32_t *w, int n);

/* ---- robust process-shared mutexes (futex.c) -------------------------- */

/* Initializes *m as a process-shared, robust mutex; error-checking when
 * errorcheck (a relock by the holder is -EDEADLK instead of a hang).
 * Returns 0 or -errno. */
int mproc__robust_init(pthread_mutex_t *m, bool errorcheck);

/* How mproc__robust_lock waits. */
enum { MPROC__TRY = 0, MPROC__UNTIL = 1 };

/*
 * Locks *m: when how is MPROC__TRY, only if it is free now; otherwise
 * until d (NULL or infinite: forever). Returns
 *   0                 taken;
 *   1                 taken from a holder that died: the mutex is made
 *                     consistent again at once, the caller repairs (or
 *                     marks broken) what it guards;
 *   -EBUSY            (MPROC__TRY) held by someone else;
 *   -ETIMEDOUT        d passed;
 *   -EDEADLK          error-checking and the caller holds it;
 *   -ENOTRECOVERABLE  a holder died and no one made it consistent;
 *   -errno            anything else pthread reports.
 */
int mproc__robust_lock(pthread_mutex_t *m, int how, const mproc__deadline *d);

/* mproc__robust_lock(m, MPROC__TRY, NULL), inline for the hot paths of
 * locks and queues (an uncontended lock is a few nanoseconds: a call into
 * another file would be a tenth of it). */
static inline int mproc__robust_trylock(pthread_mutex_t *m)
{
    int r = pthread_mutex_trylock(m);
    if (__builtin_expect(r == 0, 1))
        return 0;
    if (r == EOWNERDEAD) {
        pthread_mutex_consistent(m);
        return 1;
    }
    return -r;
}

/*
 * True while a thread (of any process) holds the robust mutex *m: glibc
 * keeps the owner's TID in its futex word (the robust-futex ABI), and the
 * kernel clears it when the owner dies. A snapshot, for heuristics only
 * (a queue's producer asks whether a consumer is inside a get).
 */
static inline bool mproc__robust_held(pthread_mutex_t *m)
{
    return (__atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED) &
            0x3fffffff /* FUTEX_TID_MASK */) != 0;
}

#endif
